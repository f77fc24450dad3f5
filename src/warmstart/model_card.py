"""The model card every artifact carries: README.md with Hugging Face metadata (YAML front matter) and what a
reader needs before using the model: labels, backbone, technique, test metrics with a 95% interval, training
rows and cost, intended use and limits.

The accuracy interval is Wilson's score interval for a proportion over the test rows: it covers the sampling of
the test set, not the variation between training seeds (``warmstart study`` measures that).
"""

from __future__ import annotations

import json
import math
from typing import Any

PIPELINE = {"text": "text-classification", "image": "image-classification"}


def wilson_interval(correct: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of the proportion ``correct / n``.

    Example:
        >>> [round(v, 3) for v in wilson_interval(45, 50)]
        [0.786, 0.957]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _registered(backbone: dict) -> Any:
    """The registry entry of the backbone (of the pretrained one it started from, for a trained backbone)."""
    from .backbones.registry import available_backbones

    return available_backbones().get(backbone.get("base", backbone).get("name", ""))


def base_model(backbone: dict) -> str | None:
    """The Hugging Face hub id of the backbone's weights, where known."""
    spec = _registered(backbone)
    if spec is not None and spec.hub_id:
        return spec.hub_id
    source = str(backbone.get("base", backbone).get("source", ""))
    source = source.removeprefix("hf:")
    looks_like_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
    return source if looks_like_hub_id else None


def _front_matter(
    meta: dict, backbone: dict, hub: str | None, metrics: dict | None, config: dict | None
) -> str:
    lines = ["---", "library_name: warmstart", f"pipeline_tag: {PIPELINE.get(meta['modality'], 'other')}"]
    spec = _registered(backbone)
    if spec is not None and spec.licence:
        lines.append(f"license: {spec.licence.lower()}")
    if hub:
        lines.append(f"base_model: {hub}")
    lines += ["tags:", "- warmstart", "- transfer-learning", f"- {meta['technique']}"]
    if metrics and "accuracy" in metrics:
        data = (config or {}).get("data", "unknown")
        lines += [
            "model-index:",
            f"- name: {json.dumps(meta['technique'] + ' on ' + backbone.get('name', '?'))}",
            "  results:",
            f"  - task: {{type: {PIPELINE.get(meta['modality'], 'other')}}}",
            f"    dataset: {{name: {json.dumps(str(data))}, type: {json.dumps(str(data))}}}",
            "    metrics:",
            f"    - {{type: accuracy, value: {metrics['accuracy']:.4f}}}",
            f"    - {{type: f1, name: macro-F1, value: {metrics.get('macro_f1', float('nan')):.4f}}}",
        ]
    return "\n".join(lines + ["---", ""])


def render(meta: dict, classes: list[Any], backbone: dict, metrics: dict | None, config: dict | None) -> str:
    """README.md for an artifact: ``meta`` is its warmstart.json, ``backbone`` its backbone.json."""
    config = config or {}
    name = backbone.get("name", "?")
    kind = "texts" if meta["modality"] == "text" else "images"
    hub = base_model(backbone)
    out = [_front_matter(meta, backbone, hub, metrics, config)]
    out.append(f"# {meta['technique']} on {name}\n")
    out.append(
        f"Classifies {kind} into {len(classes)} classes. Trained with warmstart's `{meta['technique']}` technique "
        f"on the `{name}` backbone" + (f" (base model: `{hub}`)" if hub else "") + ".\n"
    )
    out.append("## Labels\n\n" + ", ".join(f"`{c}`" for c in classes) + "\n")
    out.append(_evaluation(metrics, config))
    if metrics and metrics.get("distillation"):
        out.append(_distillation(metrics["distillation"], config))
    out.append(_training(meta, config, metrics))
    out.append(
        "## How to use\n\n```bash\nwarmstart predict THIS_FOLDER inputs.csv --output predictions.csv\n"
        "warmstart serve THIS_FOLDER --port 8000\n```\n\n```python\nfrom warmstart.artifact import load_artifact\n"
        f'model = load_artifact("THIS_FOLDER")\nmodel.predict([...])  # a list of {kind}\n```\n'
    )
    out.append(
        "## Intended use and limits\n\n"
        f"- Made for {kind} like the training data described above, into exactly these classes: any input gets one of them, "
        "even one that belongs to none.\n"
        "- The test figures come from one test set; on data from another source (domain, period, language, "
        "camera) accuracy can be much lower. Check it on your own labelled rows before relying on it.\n"
        "- It inherits the backbone's biases and limits (see the base model's own card).\n"
        "- Not for decisions about people without human review.\n"
    )
    return "\n".join(out)


def _evaluation(metrics: dict | None, config: dict) -> str:
    if not metrics or "accuracy" not in metrics:
        return "## Evaluation\n\nNo test metrics were recorded with this model.\n"
    n = int(metrics.get("n", config.get("n_test", 0)) or 0)
    lo, hi = wilson_interval(metrics["accuracy"] * n, n)
    rows = [
        "## Evaluation\n",
        f"On {n} test rows ({config.get('test_data', 'held-out rows')}):\n",
        "| metric | value | 95% interval |",
        "|---|---|---|",
        f"| accuracy | {metrics['accuracy']:.4f} | [{lo:.4f}, {hi:.4f}] (Wilson, test-set sampling only) |",
        f"| macro-F1 | {metrics.get('macro_f1', float('nan')):.4f} | |",
        *(
            [f"| expected calibration error (top class, 15 bins; lower is better) | {metrics['ece']:.4f} | |"]
            if metrics.get("ece") is not None
            else []
        ),
        "",
        "The interval covers the sampling of the test rows, not the spread between training seeds; "
        "`warmstart study` measures that.",
        "",
    ]
    return "\n".join(rows)


def _training(meta: dict, config: dict, metrics: dict | None) -> str:
    rows = ["## Training\n"]
    for key, label in (
        ("data", "data"),
        ("n_train", "training rows"),
        ("n_val", "validation rows"),
        ("shots", "examples per class"),
        ("seed", "seed"),
    ):
        if config.get(key) is not None:
            rows.append(f"- {label}: {config[key]}")
    rt = config.get("runtime") or {}
    if rt:
        where = (
            f"{rt.get('device', '?')} ({rt['device_name']})"
            if rt.get("device_name")
            else rt.get("device", "?")
        )
        rows.append(f"- device and precision: {where}, {rt.get('precision', '?')}")
    temperature = (meta.get("fitted") or {}).get("temperature")
    if temperature is not None:
        rows.append(
            f"- probabilities calibrated: temperature {temperature:.3f} fitted on the validation rows (the "
            "logits are divided by it; predictions are unchanged)"
        )
    cost = (metrics or {}).get("cost", {})
    for key, label, fmt in (
        ("fit_wall_seconds", "fit time", "{:,.1f} s"),
        ("fit_cpu_seconds", "fit CPU time", "{:,.1f} CPU-s"),
        ("fit_peak_rss_mb", "peak memory of the process", "{:,.0f} MB"),
        ("fit_energy_joules", "energy (estimate)", "{:,.0f} J"),
        ("trainable_params", "trainable parameters", "{:,}"),
    ):
        if cost.get(key) is not None:
            rows.append(f"- {label}: {fmt.format(cost[key])}")
    shown = {
        k: v for k, v in meta.get("params", {}).items() if k not in ("progress", "cache_dir", "use_cache")
    }
    rows.append(f"- technique parameters: `{json.dumps(shown, sort_keys=True, default=str)}`")
    return "\n".join(rows) + "\n"


def _distillation(d: dict, config: dict) -> str:
    """Teacher against this (student) model on the same test rows."""
    summary = comparison_summary(d)
    source = config.get("distilled_from", {})
    rows = [
        "## Distillation\n",
        f"A student distilled from a `{source.get('technique', '?')}` teacher on "
        f"`{source.get('backbone', {}).get('name', '?')}`"
        + (f" (`{source['artifact']}`)" if source.get("artifact") else "")
        + f": {student_description(config)}, over {d['transfer_rows']} rows "
        f"({d['labelled_rows']} of them labelled; temperature {config.get('temperature')}, weight of the true "
        f"labels {config.get('hard_weight')}). Both measured on the same {d['test_rows']} test rows, in one process:\n",
        "| " + " | ".join(["model", *COMPARISON_HEAD[1:]]) + " |",
        "|" + "---|" * len(COMPARISON_HEAD),
        *("| " + " | ".join(r) + " |" for r in comparison_rows(d)),
        "",
        summary[0].upper() + summary[1:] + ".",
        "",
    ]
    if method := energy_method(d):
        rows += [f"Energy: {method}.", ""]
    return "\n".join(rows)


def student_description(config: dict) -> str:
    """What the student is, in words: its kind and how it learned (``config``: a distillation's config)."""
    student, technique = config.get("student", "?"), config.get("technique", "?")
    if technique == "probe+finetune":
        return (
            f"{student} (a probe on its vectors with TF-IDF of its token ids, on the teacher's top class, joined "
            f"to a fine-tuned copy of the vectors, on the teacher's probabilities)"
        )
    if technique != "probe":
        return f"{student} ({technique} on the teacher's probabilities)"
    lexical = (config.get("params") or {}).get("lexical", "none")
    words = {"pieces": "TF-IDF of its token ids", "tfidf": "TF-IDF of the words"}.get(lexical)
    if words is None:
        return f"{student} (probe on the teacher's top class)"
    return f"{student} (a probe on its vectors with {words}, on the teacher's top class)"


def energy_method(c: dict) -> str | None:
    """How a distillation block's energy figures were reached (RAPL, or an estimate), where speed was measured."""
    return ((c.get("student") or {}).get("speed") or {}).get("energy_method")


def _joules(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def comparison_rows(c: dict) -> list[list[str]]:
    """Teacher and student, one row each: accuracy with its 95% interval over the test rows, macro-F1, size,
    rows/s, one-row latency, energy per 1,000 predictions (what the terminal, the model card and the report
    show)."""
    out = []
    for who in ("teacher", "student"):
        m, sp = c[who], c[who].get("speed") or {}
        ci = m.get("accuracy_ci")
        out.append(
            [
                who,
                f"{m['accuracy']:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                f"{m['macro_f1']:.4f}",
                f"{m['parameters']:,}",
                f"{m['fp32_mb']:,.1f}" if "fp32_mb" in m else "",
                f"{sp['rows_per_s']:,.0f}" if "rows_per_s" in sp else "not measured",
                f"{sp['single_row_ms']:.2f}" if "single_row_ms" in sp else "not measured",
                _joules(sp["joules_per_1000"]) if "joules_per_1000" in sp else "not measured",
            ]
        )
    return out


COMPARISON_HEAD = [
    "",
    "accuracy [95% CI]",
    "macro-F1",
    "parameters",
    "fp32 MB",
    "rows/s",
    "1 row, ms",
    "J / 1,000",
]


def comparison_summary(c: dict) -> str:
    """One sentence: what the student kept, with the paired interval of the difference, and what it saves."""
    d = c.get("accuracy_difference")
    diff = (
        f" (student minus teacher {100 * d['difference']:+.1f} points, 95% CI [{100 * d['low']:+.1f}, "
        f"{100 * d['high']:+.1f}] paired over the rows)"
        if d
        else ""
    )
    speedup = f", at {c['speedup']}x the teacher's rows/s" if "speedup" in c else ""
    energy = ""
    t, st = (c.get("teacher") or {}).get("speed") or {}, (c.get("student") or {}).get("speed") or {}
    if t.get("joules_per_1000") and st.get("joules_per_1000"):
        energy = f" and {t['joules_per_1000'] / st['joules_per_1000']:.0f}x less energy per prediction"
    return (
        f"student keeps {100 * c['accuracy_kept']:.1f}% of the teacher's accuracy{diff} and agrees with it on "
        f"{100 * c['agreement']:.1f}% of {c['test_rows']} test rows{speedup}{energy}"
    )
