"""Self-contained HTML reports (Jinja2, matplotlib PNGs embedded as data URIs, no JavaScript).

``write_study_report(STUDY)`` reads only the study folder's files (study.json, results, summary.json and the
cells), so ``warmstart report STUDY`` rebuilds the same report from saved results without training anything.
``write_artifact_report(ARTIFACT)`` does the same for one trained model from its metrics.json and config.json.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes
from .errors import DataError

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.ns { color: #999; } .sig { font-weight: 600; } .note { color: #555; font-size: 13px; }
img { max-width: 100%; } pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: 12px; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; } .figs figure { margin: 0; flex: 1 1 480px; }
figcaption { font-size: 13px; color: #555; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="note">{{ subtitle }}</p>
{% for section in sections %}
<h2>{{ section.title }}</h2>
{% if section.text %}<p>{{ section.text }}</p>{% endif %}
{% if section.figures %}<div class="figs">{% for f in section.figures %}
<figure><img alt="{{ f.caption }}" src="data:image/png;base64,{{ f.png }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}</div>{% endif %}
{% for table in section.tables %}
{% if table.caption %}<p class="note">{{ table.caption }}</p>{% endif %}
<table><tr>{% for h in table.head %}<th class="{{ 'l' if loop.first else '' }}">{{ h }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for cell in row %}<td class="{{ 'l' if loop.first else '' }}{% if cell is mapping %} {{ cell.cls }}{% endif %}">{% if cell is mapping %}{{ cell.text }}{% else %}{{ cell }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
{% if section.pre %}<pre>{{ section.pre }}</pre>{% endif %}
{% endfor %}
</body></html>
"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(path: Path, title: str, subtitle: str, sections: list[dict]) -> Path:
    from jinja2 import Environment

    html = (
        Environment(autoescape=True)
        .from_string(TEMPLATE)
        .render(title=title, subtitle=subtitle, sections=sections)
    )
    atomic_write_bytes(path, html.encode())
    return path


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _shots_x(row: dict) -> float:
    return float(row["n_per_class"]) if row["shots"] == "all" else float(row["shots"])


def _confusion_figure(classes: list[str], cm: list[list[int]], title: str) -> str:
    plt = _plt()
    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        int(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    return _png(fig)


def _reliability_figure(table: list[dict]) -> str:
    """Accuracy against mean confidence per confidence bin (``metrics.calibration``); the diagonal is calibrated."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="#999", linewidth=1, linestyle="--", label="calibrated")
    conf = [b["confidence"] for b in table]
    ax.scatter(
        conf,
        [b["accuracy"] for b in table],
        s=[12 + 200 * b["n"] / max(1, sum(x["n"] for x in table)) for b in table],
    )
    ax.plot(conf, [b["accuracy"] for b in table], "o-", markersize=0, label="model (dot size: rows)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-class probability in the bin")
    ax.set_ylabel("accuracy in the bin")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _per_class_table(per_class: dict) -> dict:
    rows = [
        [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
        for c, v in per_class.items()
    ]
    return {"head": ["class", "precision", "recall", "F1", "support"], "rows": rows}


def _curves_png(
    rows: list[dict], techniques: list[str], color: dict, plt: Any, metric: str = "accuracy"
) -> str:
    """Learning curves with CI bands."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for t in techniques:
        rs = sorted((r for r in rows if r["technique"] == t), key=_shots_x)
        x = np.array([_shots_x(r) for r in rs])
        y = np.array([r[metric]["mean"] for r in rs])
        lo = np.clip(np.array([r[metric]["ci_low"] for r in rs], dtype=float), 0, 1)
        hi = np.clip(np.array([r[metric]["ci_high"] for r in rs], dtype=float), 0, 1)
        ax.plot(x, y, "o-", color=color[t], label=t)
        ok = ~np.isnan(lo)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=color[t], alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    means = [r[metric]["mean"] for r in rows]
    ax.set_ylim(max(0.0, min(means) - 0.1), min(1.0, max(means) + 0.05))
    ax.set_xlabel("labelled examples per class (log scale; 'all' at its mean per class)")
    ax.set_ylabel(f"test {_metric_name(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _png(fig)


FORECAST_FACTORS = tuple(float(f) for f in np.geomspace(1, 10, 11))


def _forecast_section(
    folder: Path, cells: list[dict], techniques: list[str], color: dict, plt: Any
) -> dict | None:
    """Learning curves extended to 10x the labels measured (``warmstart.forecast``), with their intervals; None
    when no technique has three label counts."""
    from .errors import DataError
    from .forecast import FACTORS, SHAPE_FLOOR, forecast_cells

    try:
        result = forecast_cells(cells, str(folder), factors=FORECAST_FACTORS + FACTORS)
    except DataError:
        return None
    metric = result["metric"]
    name = _metric_name(metric)
    lvl = round(100 * result["level"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    table = []
    for t in techniques:
        f = result["techniques"].get(t)
        if f is None:
            continue
        px = np.array([p["per_class"] for p in f["points"]])
        ax.plot(px, [p["mean"] for p in f["points"]], "o", color=color[t], label=t)
        grid = np.geomspace(px[0], px[-1], 30)
        fit = f["fit"]
        ax.plot(grid, fit["a"] - fit["b"] * grid ** -fit["c"], "-", color=color[t], linewidth=1)
        ahead = sorted((p for p in f["at"] if p["factor"] in FORECAST_FACTORS), key=lambda p: p["per_class"])
        ax.plot([p["per_class"] for p in ahead], [p["forecast"] for p in ahead], "--", color=color[t])
        ax.fill_between(
            [p["per_class"] for p in ahead],
            [p["low"] for p in ahead],
            [p["high"] for p in ahead],
            color=color[t],
            alpha=0.12,
            linewidth=0,
        )
        cells = [
            f"{_pct(p['forecast'])} [{_pct(p['low'])}, {_pct(p['high'])}]"
            for f2 in FACTORS
            for p in f["at"]
            if p["factor"] == f2
        ]
        trust = "yes" if f["trusted"] else "no: " + "; ".join(f["reasons"])
        table.append([t, f"{px[-1]:g}", *cells, trust])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled examples per class (log scale); dashed: forecast")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    why = f" ({result['metric_reason']})" if result.get("metric_reason") else ""
    return {
        "title": "How many labels: forecasts",
        "text": f"Each technique's mean {name}{why} fitted with a saturating curve "
        f"(a - b * n^-c) and extended to 10x the labels measured; the band is the {lvl}% interval from resampled "
        f"seeds and the curve's own back-test error, at least {100 * SHAPE_FLOOR:.1f} points per doubling of the labels "
        "(docs/studies.md, 'Forecasts'). `warmstart forecast` gives the "
        "labels a target needs.",
        "figures": [{"png": _png(fig), "caption": f"{name} forecast vs examples per class"}],
        "tables": [
            {
                "caption": f"{name} % forecast [{lvl}% interval]",
                "head": ["technique", "measured up to (per class)", *[f"{f:g}x" for f in FACTORS], "trusted"],
                "rows": table,
            }
        ],
    }


def _metric_name(metric: str) -> str:
    return {"macro_f1": "macro-F1"}.get(metric, metric)


def _frontier_png(
    rows: list[dict], techniques: list[str], color: dict, plt: Any, metric: str = "accuracy"
) -> str:
    """Cost / accuracy frontier: every (technique, shots) at its mean CPU time."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = []
    for r in rows:
        x, y = max(r["cpu_s"], 1e-3), r[metric]["mean"]
        pts.append((x, y))
        ax.scatter(x, y, color=color[r["technique"]], s=28)
        ax.annotate(str(r["shots"]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    frontier, best = [], -1.0
    for x, y in sorted(pts):
        if y > best:
            frontier.append((x, y))
            best = y
    if frontier:
        fx, fy = zip(*frontier, strict=True)
        ax.step(fx, fy, where="post", color="#444", linewidth=1, linestyle="--", label="frontier")
    for t in techniques:
        ax.scatter([], [], color=color[t], label=t)
    ax.set_xscale("log")
    ax.set_xlabel("training CPU seconds (mean over seeds; log scale)")
    ax.set_ylabel(f"test {_metric_name(metric)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _study_tables(
    rows: list[dict], techniques: list[str], shots: list, metric: str = "accuracy"
) -> tuple[list, list, list]:
    """The learning-curve, paired-comparison and cost tables' rows."""
    curve_rows = []
    for t in techniques:
        line: list[Any] = [t]
        for k in shots:
            r = next((r for r in rows if r["technique"] == t and r["shots"] == k), None)
            if r is None:
                line.append("")
                continue
            a = r[metric]
            lo, hi = max(a["ci_low"], 0.0), min(a["ci_high"], 1.0)  # a score's interval ends at 0 and 100%
            ci = "" if math.isnan(a["ci_low"]) else f" [{_pct(lo)}, {_pct(hi)}]"
            line.append(f"{_pct(a['mean'])} ± {_pct(a['std'])}{ci}")
        curve_rows.append(line)

    def cmp_cell(c: dict | None) -> Any:
        if not c:
            return ""
        p = "p<0.001" if c["p_value"] < 0.0005 else f"p={c['p_value']:.3f}"
        text = f"{100 * c['mean']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] {p}"
        return {"text": text, "cls": "sig" if c["significant"] else "ns"}

    cmp_rows = [
        [
            r["technique"],
            r["shots"],
            cmp_cell(r.get("vs_scratch")),
            cmp_cell(r.get("vs_probe")),
            *([cmp_cell(r.get("vs_base"))] if any(x.get("vs_base") for x in rows) else []),
        ]
        for r in rows
        if r.get("vs_scratch") or r.get("vs_probe") or r.get("vs_base")
    ]
    cost_rows = []
    for r in rows:
        vs = r.get("vs_scratch") or {}
        gain = vs.get("gain_per_cpu_minute", vs.get("accuracy_gain_per_cpu_minute"))
        saved = vs.get("energy_saved_j")
        cost_rows.append(
            [
                r["technique"],
                r["shots"],
                f"{r['cpu_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['flops'] / 1e12:.3f}",
                f"{r['energy_j']:.0f}",
                f"{r['trainable_params']:,.0f}",
                f"{r['peak_rss_mb']:.0f}",
                "" if gain is None else f"{100 * gain:+.2f}",
                "" if saved is None else f"{saved:+.0f}",
            ]
        )

    return curve_rows, cmp_rows, cost_rows


def _read_study(folder: Path) -> tuple[dict, dict, list[dict]]:
    """A finished study folder's configuration, summary and cells, or a DataError saying what is missing."""
    from .study_files import load_cells

    for name in ("study.json", "summary.json"):
        if not (folder / name).is_file():
            raise DataError(
                f"{folder}: no {name}; this is not a finished study folder (run `warmstart study`)."
            )
    cfg = json.loads((folder / "study.json").read_text())
    return cfg, json.loads((folder / "summary.json").read_text()), load_cells(folder)


def _curves_section(
    name: str, why: str, curves: str, frontier_png: str, shots: list, curve_rows: list
) -> dict:
    return {
        "title": "Learning curves",
        "text": f"Test {name}{why} against labelled examples per class; the band is the 95% confidence "
        "interval of the mean over seeds (t distribution, clipped to 0-100%). Every technique trains on the same rows at a given "
        "(shots, seed) and is tested on the same rows.",
        "figures": [
            {"png": curves, "caption": f"{name} vs examples per class"},
            {
                "png": frontier_png,
                "caption": "cost/accuracy: each point a (technique, shots), labelled by shots",
            },
        ],
        "tables": [
            {
                "caption": f"{name} % : mean ± std [95% CI, clipped to 0-100] over seeds",
                "head": ["technique", *[f"{k} per class" if k != "all" else "all" for k in shots]],
                "rows": curve_rows,
            }
        ],
    }


def _comparisons_section(name: str, rows: list[dict], cmp_rows: list) -> dict:
    return {
        "title": "What transfer bought: paired comparisons",
        "text": f"{name[0].upper() + name[1:]} difference in points, technique minus reference, over the seeds "
        "both ran: mean "
        "[95% CI] and the paired t-test p-value. Grey: not significant (the interval includes 0).",
        "tables": [
            {
                "head": ["technique", "shots", "vs scratch", "vs probe"]
                + (["vs without unlabelled rows"] if any(r.get("vs_base") for r in rows) else []),
                "rows": cmp_rows,
            }
        ],
    }


def _cost_section(name: str, energy_method: str, cost_rows: list) -> dict:
    return {
        "title": "Cost",
        "text": "Means over seeds. FLOPs: one forward pass over the training rows plus the training steps' "
        "forward and backward passes, counted from the model with torch's FlopCounterMode. Energy: "
        f"{energy_method}. Gain per CPU-minute: {name} points over scratch per CPU-minute of this "
        "technique's training. CPU and wall seconds are the fit's own: features already in the shared "
        "feature cache (the probe's, when an earlier run extracted them) cost nothing there, while FLOPs "
        "always count their extraction.",
        "tables": [
            {
                "head": [
                    "technique",
                    "shots",
                    "CPU s",
                    "wall s",
                    "TFLOPs",
                    "energy J",
                    "trainable params",
                    "peak MB",
                    "points over scratch per CPU-min",
                    "energy saved vs scratch J",
                ],
                "rows": cost_rows,
            }
        ],
    }


def _best_row(rows: list[dict], metric: str) -> dict:
    """The study's chosen (technique, shots): the best mean score, the cheaper on a tie."""
    return max(rows, key=lambda r: (r[metric]["mean"], -r["cpu_s"]))


def _chosen_section(name: str, metric: str, best: dict, cells: list[dict]) -> dict:
    """The chosen model: ``best`` (``_best_row``), then its seed-0 (or lowest seed) run."""
    chosen = min(
        (c for c in cells if c["technique"] == best["technique"] and str(c["shots"]) == best["shots"]),
        key=lambda c: c["seed"],
    )
    classes = chosen.get("classes") or list(chosen["per_class"])
    return {
        "title": f"The chosen model: {best['technique']} at {best['shots']} per class (seed {chosen['seed']})",
        "text": f"The highest mean {name} of the study ({_pct(best[metric]['mean'])}%). Its confusion "
        f"matrix on the {chosen['n_test']} test rows and per-class scores:",
        "figures": [
            {
                "png": _confusion_figure(
                    classes, chosen["confusion_matrix"], "rows: true; colour: share of the row"
                ),
                "caption": "confusion matrix",
            }
        ],
        "tables": [_per_class_table(chosen["per_class"])],
    }


def write_study_report(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """The study's HTML report, from its saved files only: its sections in reading order (figures and table
    rows come from the helpers above)."""
    from .study_stats import shots_order

    folder = Path(folder)
    cfg, summary, cells = _read_study(folder)
    rows = summary["rows"]
    techniques = [t for t in cfg["techniques"] if any(r["technique"] == t for r in rows)]
    color = {t: COLORS[i % len(COLORS)] for i, t in enumerate(techniques)}
    plt = _plt()

    metric = summary.get("metric", "accuracy")  # summaries written before the metric was chosen: accuracy
    name = _metric_name(metric)
    why = (
        f" ({summary['metric_reason']}; `--metric accuracy` to rank by accuracy)"
        if summary.get("metric_reason")
        else ""
    )
    shots = sorted({r["shots"] for r in rows}, key=shots_order)
    curve_rows, cmp_rows, cost_rows = _study_tables(rows, techniques, shots, metric)
    best = _best_row(rows, metric)
    sections = [
        _curves_section(
            name,
            why,
            _curves_png(rows, techniques, color, plt, metric),
            _frontier_png(rows, techniques, color, plt, metric),
            shots,
            curve_rows,
        ),
        _comparisons_section(name, rows, cmp_rows),
        _cost_section(name, best.get("energy_method", ""), cost_rows),
        _chosen_section(name, metric, best, cells),
        {"title": "Resolved configuration", "pre": json.dumps(cfg, indent=2)},
    ]
    forecast = _forecast_section(folder, cells, techniques, color, plt)
    if forecast is not None:
        sections.insert(1, forecast)
    subtitle = (
        f"{cfg['data']} · backbone {cfg['backbone']} · {len(cells)} runs: {', '.join(techniques)} x "
        f"{len(shots)} label counts x {cfg['seeds']} seeds"
    )
    return _render(Path(output) if output else folder / "report.html", "warmstart study", subtitle, sections)


def study_markdown(folder: str | os.PathLike) -> str:
    """The learning-curve table and the comparisons against scratch, as Markdown."""
    from .study_stats import shots_order

    summary = json.loads((Path(folder) / "summary.json").read_text())
    rows = summary["rows"]
    metric = summary.get("metric", "accuracy")
    shots = sorted({r["shots"] for r in rows}, key=shots_order)
    techs = list(dict.fromkeys(r["technique"] for r in rows))
    lines = [
        f"{_metric_name(metric)}" + (f" ({summary['metric_reason']})" if summary.get("metric_reason") else "")
    ]
    lines.append("\n| technique | " + " | ".join(f"{k}/class" if k != "all" else "all" for k in shots) + " |")
    lines.append("|---" * (len(shots) + 1) + "|")
    for t in techs:
        cells = []
        for k in shots:
            r = next((r for r in rows if r["technique"] == t and r["shots"] == k), None)
            a = r[metric] if r else None
            cells.append("" if a is None else f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    refs = ["vs_scratch", "vs_probe"] + (["vs_base"] if any(r.get("vs_base") for r in rows) else [])
    head = "| technique | shots | vs scratch, points [95% CI] | vs probe |"
    head += " vs the same technique without unlabelled rows |" if "vs_base" in refs else ""
    lines.append("\n" + head + " CPU s |")
    lines.append("|---" * (len(refs) + 3) + "|")
    for r in rows:
        parts = []
        for ref in refs:
            c = r.get(ref)
            parts.append(
                ""
                if not c
                else f"{100 * c['mean']:+.1f} [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"
                + ("" if c["significant"] else " (n.s.)")
            )
        lines.append(f"| {r['technique']} | {r['shots']} | {' | '.join(parts)} | {r['cpu_s']:.1f} |")
    return "\n".join(lines)


def _distillation_section(d: dict, cfg: dict) -> dict:
    """A distilled student against its teacher on the same test rows: accuracy with intervals, size, speed,
    energy per 1,000 predictions (the table of the model card and of `warmstart distill`)."""
    from .model_card import COMPARISON_HEAD, comparison_rows, comparison_summary, energy_method

    source = cfg.get("distilled_from", {})
    method = energy_method(d)
    return {
        "title": "Teacher and student",
        "text": (
            f"Distilled from a {source.get('technique', '?')} teacher on "
            f"{source.get('backbone', {}).get('name', '?')} over {d['transfer_rows']} rows "
            f"({d['labelled_rows']} labelled); both measured on the same {d['test_rows']} test rows in one process. "
            f"The {comparison_summary(d)}."
        ),
        "tables": [
            {
                "head": COMPARISON_HEAD,
                "rows": comparison_rows(d),
                "caption": "accuracy intervals: Wilson, 95%, over the test rows; rows/s: best of repeated passes "
                "over the test rows" + (f"; energy: {method}" if method else ""),
            }
        ],
    }


def write_distillation_report(folders: list[str | os.PathLike], output: str | os.PathLike) -> Path:
    """Several students of one teacher side by side (``warmstart report STUDENT STUDENT ...``): the teacher
    once, then each student's accuracy with its interval, the paired difference from the teacher, agreement,
    size, rows/s, speed-up and energy per 1,000 predictions, all from the students' metrics.json. Refuses
    students of different teachers or test rows: their numbers would not be comparable."""
    from .model_card import COMPARISON_HEAD, comparison_rows, energy_method

    blocks, configs = [], []
    for f in map(Path, folders):
        mpath = f / "metrics.json"
        d = json.loads(mpath.read_text()).get("distillation") if mpath.is_file() else None
        if not d:
            raise DataError(
                f"{f}: not a distilled student (no distillation block in metrics.json); give only artifacts "
                f"written by `warmstart distill`, or one artifact or study folder at a time."
            )
        cfg = json.loads((f / "config.json").read_text())
        blocks.append(d)
        configs.append(cfg)
    sources = {(c.get("distilled_from", {}).get("artifact"), c.get("test_data"), d["test_rows"])
               for c, d in zip(configs, blocks, strict=True)}  # fmt: skip
    if len(sources) > 1:
        raise DataError(
            "these students were not distilled from one teacher and tested on the same rows ("
            + "; ".join(f"teacher {a}, test {t}, {n} rows" for a, t, n in sorted(sources, key=str))
            + "): their numbers are not comparable. Report them one at a time."
        )
    rows = [comparison_rows(blocks[0])[0]]
    for f, d, c in zip(folders, blocks, configs, strict=True):
        row = comparison_rows(d)[1]
        row[0] = f"{Path(f).name} ({c.get('student', '?')})"
        diff = d.get("accuracy_difference") or {}
        rows.append(
            [
                *row,
                f"{100 * diff['difference']:+.1f} [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]"
                if diff
                else "",
                f"{100 * d['agreement']:.1f}%",
                f"{d['speedup']}x" if "speedup" in d else "not measured",
            ]
        )
    rows[0] += ["", "", "1x"]
    method = energy_method(blocks[0])
    source = configs[0].get("distilled_from", {})
    section = {
        "title": "Teacher and students",
        "text": (
            f"Students of one {source.get('technique', '?')} teacher on {source.get('backbone', {}).get('name', '?')}"
            f" ({source.get('artifact', '?')}), each measured against it on the same {blocks[0]['test_rows']} test "
            "rows in its own distillation run; the teacher row is from the first student's run, and each "
            "speed-up is against the teacher measured in that student's run."
        ),
        "tables": [
            {
                "head": [*COMPARISON_HEAD, "student minus teacher, points [95% CI]", "agreement", "speed-up"],
                "rows": rows,
                "caption": "accuracy intervals: Wilson, 95%, over the test rows; differences: paired bootstrap "
                "over the rows" + (f"; energy: {method}" if method else ""),
            }
        ],
    }
    return _render(Path(output), "warmstart distillation: teacher and students", "", [section])


def write_artifact_report(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """One trained model's HTML report, from its metrics.json and config.json (long as the page is: most of it is
    the sections' literal, in reading order)."""
    folder = Path(folder)
    mpath = folder / "metrics.json"
    if not mpath.is_file():
        raise DataError(
            f"{folder}: no metrics.json; pass an artifact written by `warmstart fit` or a study folder."
        )
    m = json.loads(mpath.read_text())
    cfg = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    classes = json.loads((folder / "labels.json").read_text())
    sections: list[dict] = []
    cost = m.get("cost", {})
    summary = [
        ["accuracy", f"{m['accuracy']:.4f}"],
        ["macro-F1", f"{m['macro_f1']:.4f}"],
        ["expected calibration error", f"{m['ece']:.4f}" if m.get("ece") is not None else ""],
        ["test rows", m.get("n", "")],
        ["fit wall s", cost.get("fit_wall_seconds", "")],
        ["fit CPU s", cost.get("fit_cpu_seconds", "")],
        [
            "energy J",
            f"{cost['fit_energy_joules']:.0f} ({cost.get('fit_energy_method', '')})"
            if "fit_energy_joules" in cost
            else "",
        ],
        ["trainable parameters", f"{cost.get('trainable_params', 0):,}"],
        ["peak memory MB", cost.get("fit_peak_rss_mb", "")],
    ]
    sections.append({"title": "Test metrics and cost", "tables": [{"head": ["", "value"], "rows": summary}]})
    if m.get("distillation"):
        sections.append(_distillation_section(m["distillation"], cfg))
    figures = []
    if "confusion_matrix" in m:
        figures.append(
            {
                "png": _confusion_figure(
                    classes, m["confusion_matrix"], "rows: true; colour: share of the row"
                ),
                "caption": "confusion matrix",
            }
        )
    if m.get("reliability"):
        figures.append({"png": _reliability_figure(m["reliability"]), "caption": "reliability diagram"})
    hist = m.get("history") or []
    if hist:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ep = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
        ax.plot(ep, [h.get("train_loss") for h in hist], "o-", label="train loss")
        if any("val_accuracy" in h for h in hist):
            ax2 = ax.twinx()
            ax2.plot(ep, [h.get("val_accuracy") for h in hist], "s--", color="#d62728", label="val accuracy")
            ax2.set_ylabel("validation accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        figures.append({"png": _png(fig), "caption": "training history"})
    sections.append(
        {
            "title": "Errors",
            "figures": figures,
            "tables": [_per_class_table(m["per_class"])] if "per_class" in m else [],
        }
    )
    sections.append({"title": "Resolved configuration", "pre": json.dumps(cfg, indent=2)})
    subtitle = f"{cfg.get('technique', '')} on {cfg.get('backbone', {}).get('name', '')} · data {cfg.get('data', '')}"
    return _render(
        Path(output) if output else folder.parent / f"{folder.name}-report.html",
        f"warmstart model: {folder.name}",
        subtitle,
        sections,
    )
