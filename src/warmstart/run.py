"""One training run end to end: split, few-shot sample, fit, evaluate on test, save the artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backbones import Backbone
from .data import Dataset, Split, check_labels_seen, few_shot, stratified_split
from .errors import ParameterError
from .evaluate import evaluate, fit_measured
from .runtime import runtime_of
from .selftrain import unlabeled_kw
from .techniques import Technique, get_technique


@dataclass
class RunResult:
    estimator: Technique
    metrics: dict
    config: dict
    split: Split
    artifact: Path | None = None
    timings: dict = field(default_factory=dict)


# parameters that say how to compute, not what: kept when --technique auto replaces the technique
RUNTIME_KEYS = ("device", "precision", "cache_dir", "use_cache")


def fit_run(
    data: Dataset,
    *,
    test: Dataset | None = None,
    backbone: str | Backbone = "all-MiniLM-L6-v2",
    technique: str = "probe",
    shots: int | None = None,
    seed: int = 0,
    val_size: float = 0.1,
    test_size: float = 0.2,
    params: dict[str, Any] | None = None,
    output: str | Path | None = None,
    embed_backbone: bool = False,
    budget: str | float | None = None,
    max_params: str | float | None = None,
    max_memory_mb: float | None = None,
    race: bool = True,
    record: dict | None = None,
    overwrite: bool = False,
    unlabeled: Dataset | None = None,
) -> RunResult:
    """Fit ``technique`` on ``data`` and measure it on ``test`` (or a held-out stratified split of ``data``).

    With ``shots=k`` the training rows are k per class from the training split, and no validation set is used
    (hyperparameters are chosen by cross-validation on those k rows), so the run sees k labels per class only.

    ``technique="auto"`` picks the technique with ``selection.recommend``: among the techniques whose cost,
    measured by short calibration fits on the training rows, fits ``budget`` (CPU time such as "5m"),
    ``max_params`` (trainable parameters) and ``max_memory_mb``, the one that scores best in a race on held-out
    folds of the training rows (``race=False``: the first in the order of expected accuracy); the choice and the
    race are recorded in the config.

    ``technique="self_train:BASE"`` self-trains BASE on ``unlabeled`` rows (``selftrain``; its options are the
    ``self_train_*`` keys of ``params``); the result is a fitted BASE, and the config records every round.

    ``record`` is stored in the config as is (the CLI keeps how it loaded the data there, so that
    ``warmstart export`` can find the held-out rows again).

    Example:
        >>> import tempfile
        >>> from warmstart.data import load_packaged
        >>> sms = load_packaged("sms-spam").train
        >>> r = fit_run(sms.subset(range(600)), backbone="paraphrase-MiniLM-L3-v2", shots=8,
        ...             params={"progress": False}, output=tempfile.mkdtemp() + "/sms8")
        >>> r.config["n_train"], r.config["n_test"], 0.5 < r.metrics["accuracy"] <= 1
        (16, 120, True)
    """
    if output is not None:  # a folder that would lose files, or cannot be written, is refused before any work
        from .artifact import check_output

        check_output(output, overwrite)
    base, params, self_train = _self_training(technique, params, unlabeled)
    split, train, val, test_ds = _run_rows(data, test, shots, seed, val_size, test_size)
    choice = None
    if technique == "auto":
        choice = _choose(train, backbone, budget, max_params, max_memory_mb, params, seed, race)
        technique = base = choice.technique
        params = {k: v for k, v in (params or {}).items() if k in (*RUNTIME_KEYS, "progress")}
    est = get_technique(base, backbone=backbone, seed=seed, **(params or {}))
    est, fit_cost = _fit(est, train, val if len(val) else None, unlabeled, self_train)
    metrics, predict_s = evaluate(est, test_ds)
    timings = _run_measures(est, metrics, fit_cost, predict_s)
    config = {
        "warmstart_version": __version__,
        "technique": technique,
        "params": {k: v for k, v in est.get_params().items() if k != "backbone"},
        "runtime": metrics["runtime"],
        "backbone": est.backbone_.reference(),
        "data": data.source,
        "test_data": test.source if test is not None else "held-out split of data",
        **{"n_train": len(train), "n_val": len(val), "n_test": len(test_ds), "shots": shots, "seed": seed},
        "val_size": val_size,
        "test_size": test_size if test is None else None,
        "classes": list(est.classes_),
        **({"technique_choice": choice.to_dict()} if choice is not None else {}),
        **({"self_training": est.self_training_} if self_train is not None else {}),
        **({"record": dict(record)} if record else {}),
    }
    result = RunResult(est, metrics, config, split, timings=timings)
    if output is not None:
        _save(result, output, embed_backbone, overwrite)
    return result


def _fit(
    est: Any, train: Dataset, val: Dataset | None, unlabeled: Dataset | None, self_train: dict | None
) -> tuple[Any, Any]:
    """The fitted estimator and what its fit cost: ``est`` fitted on ``train`` (and the unlabelled rows it uses
    itself), or with ``self_train`` (self-training's options) self-trained on ``unlabeled``."""
    if self_train is None:
        return est, fit_measured(est, train, val, **unlabeled_kw(est, unlabeled))
    from .cost import measure
    from .selftrain import fit_self_training

    with measure() as fit_cost:
        est = fit_self_training(est, train, unlabeled, val, **self_train)
    return est, fit_cost


def _run_rows(
    data: Dataset, test: Dataset | None, shots: int | None, seed: int, val_size: float, test_size: float
) -> tuple[Split, Dataset, Dataset, Dataset]:
    """The run's split and its training, validation and test rows (``shots``: k per class, no validation)."""
    data.require_labels()
    if test is not None:
        test.require_labels(min_classes=1)
    split = stratified_split(
        data.labels, val_size=val_size, test_size=0.0 if test is not None else test_size, seed=seed
    )
    train_idx = split.train
    if shots is not None:
        train_idx = train_idx[few_shot([data.labels[i] for i in train_idx], shots, seed=seed)]
        split = Split(train_idx, np.zeros(0, np.int64), split.test, seed)
    train, val = data.subset(train_idx), data.subset(split.val)
    test_ds = test if test is not None else data.subset(split.test)
    if len(test_ds) == 0:
        from .errors import DataError

        raise DataError(
            f"{data.source}: no rows left for testing; give a --test file or a larger --test-size."
        )
    train.require_labels()
    check_labels_seen(train, val, "validation")
    check_labels_seen(train, test_ds, "test")
    return split, train, val, test_ds


def _self_training(
    technique: str, params: dict[str, Any] | None, unlabeled: Dataset | None
) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """The technique to build, its parameters, and self-training's options (None: no self-training). Unlabelled
    rows that nothing uses (no ``self_train:BASE``, no probe ``align``), or self-training without them, are
    refused: neither is ignored silently."""
    from .selftrain import base_of, split_params, wants_unlabeled

    base = base_of(technique)
    if base is None:
        if unlabeled is not None and not wants_unlabeled(technique, params):
            raise ParameterError(
                f"--unlabeled rows are used by self-training and by domain alignment only; {technique!r} "
                f"would ignore them. Use --technique self_train:{technique if technique != 'auto' else 'probe'}, "
                f"or --param align=coral (the probe and the fine-tuning techniques) or align=dann (fine-tuning), "
                f"or drop --unlabeled."
            )
        return technique, params, None
    if unlabeled is None or len(unlabeled) == 0:
        raise ParameterError(f"{technique!r} needs unlabelled rows: pass --unlabeled FILE_OR_FOLDER.")
    base_params, options = split_params(params)
    return base, base_params, options


def _choose(train, backbone, budget, max_params, max_memory_mb, params, seed, race=True) -> Any:
    """``technique="auto"``: ``selection.recommend``'s choice, or a clear error when nothing fits the limits."""
    from .selection.recommend import recommend

    choice = recommend(
        train,
        backbone,
        budget=budget,
        max_params=max_params,
        max_memory_mb=max_memory_mb,
        params={k: v for k, v in (params or {}).items() if k in RUNTIME_KEYS},
        seed=seed,
        race=race,
    )
    if choice.technique is None:
        raise ParameterError(choice.explain())
    return choice


def _run_measures(est: Technique, metrics: dict, fit_cost: Any, predict_s: float) -> dict:
    """Add the run's timings, cost, runtime and training history to ``metrics``; return the timings."""
    timings = {"fit_seconds": round(fit_cost.wall_seconds, 3), "predict_seconds": round(predict_s, 3)}
    cache = getattr(est, "cache_", None)
    if cache is not None:
        timings.update(feature_cache_hits=cache.hits, feature_cache_misses=cache.misses)
    metrics["timings"] = timings
    metrics["cost"] = {
        **{f"fit_{k}": v for k, v in fit_cost.to_dict().items()},
        "trainable_params": est.trainable_parameters(),
    }
    for key in ("train_flops_per_s", "mfu", "train_rows_per_s"):
        if getattr(est, f"{key}_", None) is not None:
            metrics["cost"][key] = getattr(est, f"{key}_")
    metrics["runtime"] = runtime_of(est)
    if getattr(est, "history_", None) is not None:
        metrics["history"] = est.history_
    return timings


def _save(result: RunResult, output: str | Path, embed_backbone: bool, overwrite: bool) -> None:
    """Write the run's artifact (in a data-parallel run the ranks hold identical models: rank 0 writes)."""
    from . import distributed
    from .artifact import save_artifact

    if distributed.is_main():
        result.config["world_size"] = distributed.world_size()
        save_artifact(
            result.estimator,
            output,
            metrics=result.metrics,
            config=result.config,
            splits=result.split.to_dict(),
            embed_backbone=embed_backbone,
            overwrite=overwrite,
        )
    distributed.barrier()
    result.artifact = Path(output)
