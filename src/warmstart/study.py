"""Studies: every technique x label count x seed on identical splits, resumable, with statistics and costs.

A study folder holds::

    study.json        the resolved configuration (data, backbone, techniques, shots, seeds, parameters, split)
    splits.json       the row indices of the training pool and the test rows, shared by every cell
    cells/            one JSON per finished (technique, shots, seed) cell, written atomically
    results.csv       one row per cell (also results.parquet and results.json)
    summary.json      per (technique, shots): mean, std, 95% CI; paired comparisons against scratch and probe
    report.html       the report (``warmstart report STUDY`` rebuilds it from the files above alone)

A cell that finished is never recomputed: rerunning the same command after a crash or Ctrl-C runs only the
missing cells. For one (shots, seed) every technique trains on the same rows (``few_shot`` of the pool with that
seed; nested, so the 8 rows per class are among the 64), and every cell is tested on the same test rows. The
backbone is loaded once and its features of each training set come from the shared feature cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_bytes, atomic_write_json
from .cost import forward_flops, measure
from .data import Dataset, few_shot, stratified_split
from .errors import DataError, ParameterError
from .evaluate import evaluate, fit_measured
from .runtime import runtime_of
from .selftrain import base_of, fit_self_training, split_params, unlabeled_kw, wants_unlabeled
from .study_files import load_cells
from .study_stats import mean_ci, paired, shots_order, summarise  # noqa: F401  (mean_ci, paired: public here too)

STUDY_FORMAT = 1


@dataclass
class StudyConfig:
    data: str
    backbone: str
    techniques: list[str]
    shots: list[int | str]  # ints and "all"
    seeds: int = 5
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per technique
    test_rows: int | None = None  # a stratified sample of at most this many test rows
    test_size: float = 0.2  # held-out fraction when the data has no test split
    split_seed: int = 0
    precision: str = "auto"  # every cell's (the device is not part of a study: a study may resume elsewhere)
    device: str = "auto"
    # what cells are compared and chosen by: auto = macro-F1 on imbalanced test rows (largest class > 3x the
    # smallest), else accuracy. It changes the summary only, never a cell, so a rerun may change it
    metric: str = "auto"
    # unlabelled rows of the self_train:BASE cells: "rest" (the pool rows a cell did not draw), a data spec
    # (its rows that are also test rows left out), or None
    unlabeled: str | None = None

    def to_dict(self) -> dict:
        return {"format": STUDY_FORMAT, **asdict(self)}


def parse_shots(text: str) -> list[int | str]:
    out: list[int | str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part == "all":
            out.append("all")
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise ParameterError(f"--shots takes positive integers and 'all', comma-separated; got {part!r}.")
    return out


def cell_key(technique: str, shots: int | str, seed: int) -> str:
    return f"{technique.replace(':', '+')}-k{shots}-s{seed}"


def _splits(data: Dataset, test: Dataset | None, cfg: StudyConfig) -> tuple[np.ndarray, Dataset, dict]:
    """The training pool (row indices into ``data``) and the test rows, the same for every cell."""
    if test is None:
        s = stratified_split(data.labels, val_size=0.0, test_size=cfg.test_size, seed=cfg.split_seed)
        pool, test_idx, source = s.train, s.test, "held-out split of data"
        test_ds = data.subset(test_idx)
    else:
        pool, test_idx, source = np.arange(len(data)), np.arange(len(test)), "test data"
        test_ds = test
    if cfg.test_rows and cfg.test_rows < len(test_ds):
        keep = np.sort(
            stratified_split(test_ds.labels, 0.0, cfg.test_rows / len(test_ds), cfg.split_seed).test
        )
        test_idx, test_ds = test_idx[keep], test_ds.subset(keep)
    record = {"pool": pool.tolist(), "test": test_idx.tolist(), "test_from": source}
    return pool, test_ds, record


def run_study(
    data: Dataset,
    cfg: StudyConfig,
    output: str | os.PathLike,
    *,
    test: Dataset | None = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    cpus_per_cell: int = 1,
    unlabeled: Dataset | None = None,
) -> dict:
    """Run every missing cell of the study in ``output`` and write the tables and summary
    (``warmstart.report.write_study_report(output)`` then writes the HTML report).

    ``self_train:BASE`` techniques self-train BASE (``selftrain``) on ``cfg.unlabeled`` rows: with "rest", the
    pool rows a cell did not draw as labelled ones; else ``unlabeled`` (its rows that are also test rows are
    left out). Compare them with BASE in the same study: the summary pairs each with its base.

    ``engine="ray"`` runs the missing cells as Ray tasks (``cpus_per_cell`` CPUs each) on the cluster at
    ``ray_address`` (None: a local Ray instance, or the one ``RAY_ADDRESS`` names); the driver writes each cell's
    JSON as its task finishes, so finished cells are kept exactly as with the local engine.

    Example:
        >>> import tempfile
        >>> from warmstart.data import load_packaged
        >>> cfg = StudyConfig("trec", "paraphrase-MiniLM-L3-v2", ["probe"], [4, 8], seeds=2, test_rows=120)
        >>> out = tempfile.mkdtemp()
        >>> summary = run_study(load_packaged("trec").train, cfg, out, progress=False)
        >>> sorted(p.name for p in __import__("pathlib").Path(out, "cells").glob("*.json"))
        ['probe-k4-s0.json', 'probe-k4-s1.json', 'probe-k8-s0.json', 'probe-k8-s1.json']
    """
    from tqdm.auto import tqdm

    from .techniques import available_techniques

    unknown = [t for t in cfg.techniques if (base_of(t) or t) not in available_techniques()]
    if unknown or not cfg.techniques:
        raise ParameterError(
            f"unknown technique(s) {unknown}; choose from {', '.join(sorted(available_techniques()))} (or "
            f"self_train:BASE with one of them)."
        )
    if cfg.seeds < 1:
        raise ParameterError(f"--seeds must be at least 1; got {cfg.seeds}.")
    from .techniques import get_technique

    for technique, params in cfg.params.items():  # bad keys are refused before anything is written
        base = base_of(technique) or technique
        if base in available_techniques():
            get_technique(base, **(split_params(params)[0] if base != technique else params))
    unlabeled = _unlabeled_rows(cfg, unlabeled, test)
    data.require_labels()
    if data.multilabel:
        raise DataError(f"{data.source}: studies compare single-label accuracy; this data has label sets.")
    out = Path(output)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    meta_path = out / "study.json"
    wanted = json.loads(json.dumps(cfg.to_dict()))
    if meta_path.is_file():
        saved = _upgrade_config(json.loads(meta_path.read_text()))
        merged = grow_config(saved, wanted, out)
        if merged != saved:
            atomic_write_json(meta_path, merged)
    else:
        atomic_write_json(meta_path, wanted)
    pool, test_ds, split_record = _splits(data, test, cfg)
    if unlabeled is not None:
        unlabeled = _without_test_rows(unlabeled, test_ds)
        split_record["unlabeled_rows"] = len(unlabeled)
    atomic_write_json(out / "splits.json", split_record)
    test_ds.require_labels(min_classes=1)

    cells = [(k, seed, t) for k in _ordered(cfg.shots) for seed in range(cfg.seeds) for t in cfg.techniques]
    todo = [c for c in cells if not (out / "cells" / f"{cell_key(c[2], c[0], c[1])}.json").is_file()]
    bar = tqdm(
        total=len(cells), initial=len(cells) - len(todo), desc="study", unit="cell", disable=not progress
    )
    if engine == "ray":
        _run_ray(todo, data, test_ds, pool, cfg, out, bar, ray_address, cpus_per_cell, unlabeled)
    elif engine == "local":
        for k, seed, technique in todo:
            bar.set_postfix(technique=technique, shots=k, seed=seed)
            cell = compute_cell(data, test_ds, pool, cfg, k, seed, technique, unlabeled)
            atomic_write_json(out / "cells" / f"{cell_key(technique, k, seed)}.json", cell)
            bar.update(1)
    else:
        raise ParameterError(f"--engine must be local or ray; got {engine!r}.")
    bar.close()
    return finish_study(out)


def _unlabeled_rows(cfg: StudyConfig, unlabeled: Dataset | None, test: Dataset | None) -> Dataset | None:
    """The study's unlabelled rows, checked against its techniques: self_train cells need them, and rows no cell
    would use are refused rather than ignored."""
    uses = [t for t in cfg.techniques if wants_unlabeled(t, cfg.params.get(t))]
    if uses and not cfg.unlabeled:
        raise ParameterError(
            f"{', '.join(uses)} need unlabelled rows: pass --unlabeled rest (the pool rows a cell does not draw) "
            f"or --unlabeled FILE_OR_FOLDER."
        )
    if cfg.unlabeled and not uses:
        raise ParameterError(
            "--unlabeled rows are used by self_train:BASE techniques and probes with align only, and this study "
            "has none; add one (e.g. --techniques probe,self_train:probe) or drop --unlabeled."
        )
    if cfg.unlabeled and cfg.unlabeled != "rest" and unlabeled is None:
        raise ParameterError(f"--unlabeled {cfg.unlabeled}: pass its rows as run_study(unlabeled=...).")
    return None if cfg.unlabeled == "rest" else unlabeled


def _without_test_rows(unlabeled: Dataset, test: Dataset) -> Dataset:
    """``unlabeled`` less the rows that are also test rows (the same source and row), so no cell trains on the
    inputs it is tested on."""
    if unlabeled.source != test.source:
        return unlabeled
    taken = {str(r) for r in test.rows}
    keep = [i for i, r in enumerate(unlabeled.rows) if str(r) not in taken]
    if not keep:
        raise DataError(f"{unlabeled.source}: every unlabelled row is also a test row; nothing is left.")
    return unlabeled.subset(keep) if len(keep) < len(unlabeled) else unlabeled


_BACKBONES: dict[str, Any] = {}
_FORWARD_FLOPS: dict[tuple, float] = {}


_GROWABLE = ("techniques", "shots", "seeds", "params", "device", "metric")


def _upgrade_config(saved: dict) -> dict:
    """A study.json written by an older warmstart, in today's names: ``bf16`` became ``precision``."""
    saved = dict(saved)
    if "bf16" in saved:
        saved.setdefault("precision", "bf16" if saved.pop("bf16") else "fp32")
    saved.setdefault("device", "auto")
    saved.setdefault("metric", "auto")
    return saved


def grow_config(saved: dict, wanted: dict, out: Path) -> dict:
    """The configuration of a study folder after a run with ``wanted``: the union of both, when they compare.

    A study grows: more techniques, label counts or seeds add cells beside the finished ones, since a cell's
    training rows depend only on (shots, seed) and the split. Anything else that changes what a cell means (the
    data, backbone, split, test rows, bf16, or the parameters of a technique both runs name) is refused.
    """
    differ = [
        k for k in sorted(set(saved) | set(wanted)) if k not in _GROWABLE and saved.get(k) != wanted.get(k)
    ]
    shared = [t for t in wanted["techniques"] if t in saved["techniques"]]
    differ += [
        f"params of {t}"
        for t in shared
        if saved.get("params", {}).get(t, {}) != wanted.get("params", {}).get(t, {})
    ]
    if differ:
        raise ParameterError(
            f"{out}: holds a study with other settings ({', '.join(differ)}); finished cells would not compare. "
            f"Use another --output, or delete the folder to start over. (Adding techniques, label counts or "
            f"seeds is fine.)"
        )
    params = dict(saved.get("params", {}))
    params.update({t: v for t, v in wanted.get("params", {}).items() if t not in saved["techniques"]})
    return {
        **saved,
        "techniques": saved["techniques"] + [t for t in wanted["techniques"] if t not in saved["techniques"]],
        "shots": _ordered(list(dict.fromkeys([*saved["shots"], *wanted["shots"]]))),
        "seeds": max(int(saved["seeds"]), int(wanted["seeds"])),
        "params": params,
        "device": wanted.get("device", "auto"),  # where this run computes; not what a cell means
        "metric": wanted.get("metric", "auto"),  # how the summary compares cells; not what a cell means
    }


def compute_cell(
    data: Dataset,
    test_ds: Dataset,
    pool: np.ndarray,
    cfg: StudyConfig,
    k: int | str,
    seed: int,
    technique: str,
    unlabeled: Dataset | None = None,
) -> dict:
    """One cell, from the study's data and pool: the training rows of (k, seed), then ``run_cell``. The
    backbone is loaded once per process and the extraction FLOPs computed once per training set. A
    self_train:BASE cell gets ``unlabeled``, or with ``cfg.unlabeled == "rest"`` the pool rows it did not draw."""
    from .backbones import get_backbone

    if cfg.backbone not in _BACKBONES:
        _BACKBONES.clear()
        _BACKBONES[cfg.backbone] = get_backbone(cfg.backbone)
    backbone = _BACKBONES[cfg.backbone]
    pool_labels = [data.labels[i] for i in pool]
    train_idx = pool if k == "all" else pool[few_shot(pool_labels, int(k), seed=seed)]
    train = data.subset(train_idx)
    key = (cfg.backbone, data.source, len(data), str(k), seed)
    if key not in _FORWARD_FLOPS:
        _FORWARD_FLOPS[key] = forward_flops(backbone, train)
    uses = wants_unlabeled(technique, cfg.params.get(technique))
    if uses and cfg.unlabeled == "rest":
        rest = np.setdiff1d(pool, train_idx)
        if not len(rest):
            raise DataError(
                f"{data.source}: at {k} per class no pool rows are left to use as unlabelled rows."
            )
        unlabeled = data.subset(rest)
    elif not uses:
        unlabeled = None
    cell = run_cell(backbone, technique, train, test_ds, seed, cfg, _FORWARD_FLOPS[key], unlabeled)
    # which rows: cells that claim the same (shots, seed) can then be shown to have trained on the same rows,
    # and every cell to have tested on the same ones
    cell.update(
        shots=k,
        n_per_class=_per_class(train.labels),
        train_rows=_rows_hash(sorted(int(i) for i in train_idx)),
        test_rows=_rows_hash(test_ds.rows),
    )
    return cell


def _rows_hash(rows: list) -> str:
    """A short hash of row identities: indices, data-row numbers or image paths."""
    import hashlib

    return hashlib.blake2b(json.dumps([str(r) for r in rows]).encode(), digest_size=8).hexdigest()


def _ray_cell(data, test_ds, pool, cfg_dict, unlabeled, k, seed, technique, threads):  # runs on a Ray worker
    import torch

    torch.set_num_threads(threads)
    cfg = StudyConfig(**{k2: v for k2, v in cfg_dict.items() if k2 != "format"})
    return compute_cell(data, test_ds, pool, cfg, k, seed, technique, unlabeled)


def _run_ray(todo, data, test_ds, pool, cfg, out, bar, address, cpus_per_cell, unlabeled=None) -> None:
    try:
        import ray
    except ImportError as e:
        raise ParameterError("--engine ray needs Ray: pip install 'ray>=2.9' (or the `ray` extra).") from e
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        started = True
    try:
        task = ray.remote(num_cpus=cpus_per_cell)(_ray_cell)
        refs = [ray.put(x) for x in (data, test_ds, pool, cfg.to_dict(), unlabeled)]
        pending = {
            task.remote(*refs, k, seed, technique, cpus_per_cell): (k, seed, technique)
            for k, seed, technique in todo
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                k, seed, technique = pending.pop(ref)
                cell = ray.get(ref)  # a failed cell raises here; the finished ones are already written
                atomic_write_json(out / "cells" / f"{cell_key(technique, k, seed)}.json", cell)
                bar.set_postfix(technique=technique, shots=k, seed=seed)
                bar.update(1)
    finally:
        if started:
            ray.shutdown()


def _ordered(shots: list[int | str]) -> list[int | str]:
    return sorted(shots, key=shots_order)


def _per_class(labels: list) -> float:
    _, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return float(counts.mean())


def run_cell(
    backbone: Any,
    technique: str,
    train: Dataset,
    test: Dataset,
    seed: int,
    cfg: StudyConfig,
    fwd_flops: float,
    unlabeled: Dataset | None = None,
) -> dict:
    """Fit one technique on ``train`` (self_train:BASE: and ``unlabeled``), test it, and account for what it
    cost."""
    from .techniques import get_technique

    params = {
        "progress": False,
        "precision": cfg.precision,
        "device": cfg.device,
        **cfg.params.get(technique, {}),
    }
    base = base_of(technique)
    if base is None:
        est = get_technique(technique, backbone=backbone, seed=seed, **params)
        cost = fit_measured(est, train, **unlabeled_kw(est, unlabeled))
    else:
        params, options = split_params(params)
        with measure() as cost:
            est = fit_self_training(
                get_technique(base, backbone=backbone, seed=seed, **params), train, unlabeled, **options
            )
    m, predict_s = evaluate(est, test)
    train_flops = float(getattr(est, "train_flops_", 0.0) or 0.0)
    return {
        "technique": technique,
        "seed": seed,
        "n_train": len(train),
        "n_test": len(test),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "ece": m.get("ece"),  # expected calibration error of the top class (metrics.calibration)
        "wall_s": round(cost.wall_seconds, 3),
        "cpu_s": round(cost.cpu_seconds, 3),
        "peak_rss_mb": round(cost.peak_rss_mb, 1),
        "energy_j": round(cost.energy_joules, 1),
        "energy_method": cost.energy_method,
        # one forward pass over the training rows (feature extraction; every technique runs one) plus the
        # training loop's forward and backward passes, counted by torch's FlopCounterMode
        "flops": fwd_flops + train_flops,
        "train_flops": train_flops,
        # training throughput: rows (images, texts) consumed per second of the training loop, all epochs
        **({"train_rows_per_s": est.train_rows_per_s_} if getattr(est, "train_rows_per_s_", None) else {}),
        "trainable_params": int(est.trainable_parameters()),
        "predict_s": round(predict_s, 3),
        "classes": m.get("labels", [str(c) for c in est.classes_]),
        "confusion_matrix": m["confusion_matrix"],
        "per_class": m["per_class"],
        "params": {k: v for k, v in est.get_params().items() if k != "backbone"},
        "runtime": runtime_of(est),
        **({"self_training": est.self_training_} if base else {}),
        **({"gpu_peak_mb": round(cost.gpu_peak_mb, 1)} if cost.gpu_peak_mb is not None else {}),
        **({"gpu_energy_j": round(cost.gpu_energy_joules, 1)} if cost.gpu_energy_joules is not None else {}),
    }


TABLE_COLUMNS = [
    "technique",
    "shots",
    "seed",
    "n_train",
    "n_per_class",
    "n_test",
    "accuracy",
    "macro_f1",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "energy_j",
    "flops",
    "train_flops",
    "trainable_params",
    "predict_s",
]


def finish_study(folder: str | os.PathLike) -> dict:
    """Write results.{csv,parquet,json} and summary.json from the cells; return the summary."""
    import pandas as pd

    out = Path(folder)
    cells = load_cells(out)
    if not cells:
        raise DataError(f"{out}: no finished cells yet; run the study first.")
    meta = out / "study.json"
    metric = json.loads(meta.read_text()).get("metric", "auto") if meta.is_file() else "auto"
    df = pd.DataFrame([{k: c.get(k) for k in TABLE_COLUMNS} for c in cells])
    df["shots"] = df["shots"].astype(str)
    df = df.sort_values(["technique", "shots", "seed"], key=lambda s: s.map(shots_order)).reset_index(
        drop=True
    )
    atomic_write_bytes(out / "results.csv", df.to_csv(index=False).encode())
    try:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(out / "results.parquet", buf.getvalue())
    except ImportError:  # pyarrow is a dependency; only a stripped install lacks it
        pass
    atomic_write_json(out / "results.json", df.to_dict(orient="records"))
    summary = summarise(cells, metric)
    atomic_write_json(out / "summary.json", summary)
    return summary
