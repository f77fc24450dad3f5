"""Distillation: a fitted teacher's predictions train a cheaper student, which ships as an ordinary artifact.

The teacher is an artifact folder (any technique). Its training rows (found again from the artifact) and any
unlabelled rows form the *transfer set*; the teacher's class probabilities on it, sharpened or softened by a
temperature, are the student's targets, mixed with the true labels where they are known. The student is

- ``static`` (text): a static-embedding backbone distilled by model2vec from the teacher's own (fine-tuned)
  encoder (``backbones/static.py``). By default (``STATIC_TECHNIQUE``, ``PAIR``) a logistic-regression probe on
  its frozen vectors with TF-IDF of its token ids beside them learns the targets' top class, a copy of the
  vectors with a hidden layer trains on the soft targets, and the two are joined into one model (``join_pair``);
  with ``finetune`` only the copy, with ``probe`` only the probe;
- any backbone name: a smaller transformer or CNN (``paraphrase-MiniLM-L3-v2``,
  ``all-MiniLM-L6-v2:num_layers=2``, ``efficientnet-lite0:num_blocks=10``), fine-tuned on the soft targets;
- ``teacher:num_layers=N`` (text): the teacher's own fine-tuned encoder cut to its first N layers, then
  fine-tuned on the soft targets.

Both are measured on the same test rows as the teacher: accuracy, agreement with the teacher, size, and
inference throughput (rows per second in batches, and the latency of one row), in the same process.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, join_datasets
from .errors import ParameterError


@dataclass
class DistillResult:
    estimator: Any
    metrics: dict
    config: dict
    artifact: Path | None = None


def transfer_set(labelled: Dataset | None, unlabeled: Dataset | None) -> tuple[Dataset, np.ndarray]:
    """The rows the student learns from: the labelled rows, then the unlabelled ones; and which are labelled."""
    parts = [d for d in (labelled, unlabeled) if d is not None and len(d)]
    if not parts:
        raise ParameterError(
            "nothing to distil on: the teacher's training rows could not be read again and no unlabelled rows "
            "were given; pass --unlabeled FILE (texts, or an image folder)."
        )
    known = np.concatenate([np.full(len(d), d is labelled and d.labels is not None) for d in parts])
    joined = join_datasets(parts, "transfer set")
    return joined.without_labels(), known


def soft_targets(
    proba: np.ndarray,
    classes: np.ndarray,
    labels: list | None,
    known: np.ndarray,
    temperature: float,
    hard_weight: float,
) -> np.ndarray:
    """The teacher's probabilities at ``temperature`` (``p ** (1/T)``, renormalised: the softmax of its logits
    over T), mixed with one-hot true labels at ``hard_weight`` on the rows whose label is known."""
    logp = np.log(np.clip(proba, 1e-12, 1.0)) / temperature
    logp -= logp.max(1, keepdims=True)
    soft = np.exp(logp)
    soft /= soft.sum(1, keepdims=True)
    if labels is not None and hard_weight > 0 and known.any():
        index = {c: i for i, c in enumerate(classes)}
        rows = np.flatnonzero(known)
        onehot = np.zeros((len(rows), len(classes)))
        onehot[np.arange(len(rows)), [index[labels[i]] for i in rows]] = 1.0
        soft[rows] = (1 - hard_weight) * soft[rows] + hard_weight * onehot
    return soft


# a static student's hidden layer by default: chosen on the development collection (TREC, VADER nyt, VADER
# tweets; docs/distill.md), where 512 units beat none in all six data set and seed pairs (+0.2 to +1.5 points)
STATIC_HIDDEN_DIM = 512

# the tokens a static student reads of each text by default, whatever its teacher reads (model2vec's classifier
# reads 512 too): on the long texts of the development collection (20 Newsgroups, two seeds) +1.0 point over the
# teacher's 128 (docs/distill.md); on short texts it changes nothing
STATIC_MAX_LENGTH = 512


# how a static student learns when --technique is left at "auto": a probe on the frozen static vectors with TF-IDF
# of the static tokenizer's ids beside them, fitted to the teacher's top class. Chosen on the development
# collection (20 Newsgroups 4 seeds, TREC, VADER nyt, VADER tweets 2 each; docs/distill.md): mean accuracy 74.49
# against 73.86 for the static table fine-tuned on the soft targets (ahead in 8 of 10 runs) and 74.15 with
# scikit-learn's words; the exported graph computes it (export.PieceLogits)
# the default static student (docs/distill.md): a probe with TF-IDF of the token ids on the distilled vectors, and
# a copy of the vectors with a hidden layer fine-tuned on the soft targets, joined into one model (``join_pair``)
PAIR = "probe+finetune"
STATIC_TECHNIQUE = (PAIR, {"lexical": "pieces"})
# the pair's own settings and their defaults: ``tuned_dims``, how many of the table's leading (PCA) dimensions
# the fine-tuned half keeps (None: all of them). 64 reads BBC news articles 9% faster, but was 0.26 points less
# accurate than all 256 on the evaluation collection (docs/distill.md, "A narrower fine-tuned half"): all stay
PAIR_OPTIONS: dict[str, Any] = {"tuned_dims": None}


def student_technique(student: str, technique: str, params: dict) -> tuple[str, dict]:
    """The technique a student trains with and its settings: ``technique`` as given, or for ``"auto"``
    ``STATIC_TECHNIQUE`` for a static student (``params`` override its settings) and ``finetune`` for any other.
    ``PAIR`` (the static default), named or by default, gets its default settings. ``pair_params`` checks them."""
    name, defaults = STATIC_TECHNIQUE
    if technique == PAIR:  # named: the same settings as by default (``params`` override them)
        return PAIR, {**defaults, **params}
    if technique != "auto":
        return technique, params
    if not is_static(student):
        return "finetune", params
    return name, {**defaults, **params}


def is_static(student: str) -> bool:
    """Whether ``--student`` names a static-embedding student (``static``, or a ``static:NAME`` backbone)."""
    return student == "static" or student.startswith("static:")


def student_hidden_dim(student: str, hidden_dim: int | None = None) -> int:
    """The hidden layer ``student`` gets: ``hidden_dim`` where given, else ``STATIC_HIDDEN_DIM`` for a static
    student and none for any other."""
    if hidden_dim is not None:
        return hidden_dim
    return STATIC_HIDDEN_DIM if is_static(student) else 0


def make_student(
    teacher: Any,
    student: str,
    pca_dims: int | None = 256,
    progress: bool = True,
    hidden_dim: int = 0,
    seed: int = 0,
    max_length: int | None = None,
) -> Any:
    """The student backbone: ``static`` distils the teacher's own encoder; anything else is a backbone name.
    ``hidden_dim``: a static student's hidden layer (0: none, the pooled vectors feed the linear head).
    ``max_length``: the tokens a static student reads of each text (None: ``STATIC_MAX_LENGTH``)."""
    from .backbones import get_backbone

    for flag, value in (("--hidden-dim", hidden_dim), ("--max-length", max_length)):
        if value and not is_static(student):
            raise ParameterError(
                f"{flag} is for static students; --student {student!r} is not one. Leave it out."
            )
    if is_static(student):
        max_length = max_length or STATIC_MAX_LENGTH
    if student == "static":  # distilled once per teacher encoder and settings, then reused from disk
        from .backbones.static import static_backbone

        bb = static_backbone(teacher.backbone_, teacher.backbone_.name, pca_dims=pca_dims, progress=progress)
        bb.set_max_length(max_length)
        return bb.add_hidden_layer(hidden_dim, seed) if hidden_dim else bb
    if student.startswith("teacher:"):
        return _cut_teacher(teacher, student)
    bb = get_backbone(student)
    if max_length:
        bb.set_max_length(max_length)
    if hidden_dim:
        bb.add_hidden_layer(hidden_dim, seed)
    if bb.modality != teacher.backbone_.modality:
        raise ParameterError(
            f"--student {student!r} reads {bb.modality}, but the teacher reads {teacher.backbone_.modality}."
        )
    return bb


def _cut_teacher(teacher: Any, student: str) -> Any:
    """``teacher:num_layers=N``: a copy of the teacher's own fine-tuned text encoder cut to its first N layers
    (the student starts from what fine-tuning taught, as DistilBERT starts from its teacher's layers)."""
    import copy
    import re

    from .backbones.hf_common import truncate_layers

    found = re.fullmatch(r"teacher:num_layers=(\d+)", student)
    bb = teacher.backbone_
    if not found or bb.modality != "text" or not hasattr(bb.module, "config"):
        raise ParameterError(
            f"--student {student!r}: the teacher-cut student is written teacher:num_layers=N and needs a "
            f"transformers text teacher (this one is {bb.modality}, {type(bb.module).__name__})."
        )
    bb = copy.deepcopy(bb)
    truncate_layers(bb.module, int(found[1]), bb.name)
    bb.name = f"{bb.name}:num_layers={found[1]} (from the fine-tuned teacher)"
    bb.invalidate_fingerprint()
    return bb


def speed(est: Any, inputs: Any, seconds: float = 2.0, single: int = 30) -> dict:
    """Inference speed of ``est.predict_proba``: rows per second over all ``inputs`` (best of repeated passes
    within about ``seconds``), the median latency of one row (over ``single`` calls), and the energy of 1,000
    predictions over those passes (``cost.measure``: RAPL where readable, else an estimate from CPU time, as
    ``energy_method`` says)."""
    from .cost import measure

    with _no_feature_cache(est):
        return _speed(est, inputs, seconds, single, measure)


@contextmanager
def _no_feature_cache(est: Any):
    """A probe reads its features through the feature cache, so a second pass over the same rows would time a
    cache read, not inference: switched off while speed is measured, then restored."""
    cache = getattr(est, "cache_", None)
    if cache is None or not getattr(cache, "enabled", False):
        yield
        return
    cache.enabled = False
    try:
        yield
    finally:
        cache.enabled = True


def _speed(est: Any, inputs: Any, seconds: float, single: int, measure: Any) -> dict:
    est.predict_proba(inputs[: min(len(inputs), 64)])  # warm-up: first-call allocations, lazy copies
    best, spent, passes = float("inf"), 0.0, 0
    with measure(interval=0.5) as cost:
        while spent < seconds or best == float("inf"):
            t = time.perf_counter()
            est.predict_proba(inputs)
            dt = time.perf_counter() - t
            best, spent, passes = min(best, dt), spent + dt, passes + 1
            if spent > 10 * seconds:
                break
    one = []
    for i in range(min(single, len(inputs))):
        t = time.perf_counter()
        est.predict_proba(inputs[i : i + 1])
        one.append(time.perf_counter() - t)
    return {
        "rows_per_s": round(len(inputs) / best, 1),
        "single_row_ms": round(1000 * float(np.median(one)), 3),
        "rows": len(inputs),
        "joules_per_1000": round(1000 * cost.energy_joules / max(1, passes * len(inputs)), 4),
        "energy_method": cost.energy_method,
    }


def size_of(est: Any) -> dict:
    """The numbers a fitted model predicts with: its whole network, or for a probe the frozen backbone's, the
    head's and the word weights' (``trainable_parameters``); and their fp32 size."""
    module = est.model_ if hasattr(est, "model_") else None
    if module is not None:
        params = sum(p.numel() for p in module.parameters())
    else:
        body = getattr(getattr(est, "backbone_", None), "module", None)
        params = est.trainable_parameters() + (sum(p.numel() for p in body.parameters()) if body else 0)
    return {"parameters": int(params), "fp32_mb": round(params * 4 / 2**20, 2)}


def check_options(
    temperature: float,
    hard_weight: float,
    val_fraction: float = 0.0,
    hidden_dim: int | None = None,
    max_length: int | None = None,
) -> None:
    if max_length is not None and max_length < 1:
        raise ParameterError(
            f"max_length must be at least 1 token (got {max_length}); leave it out to read the "
            f"default {STATIC_MAX_LENGTH}."
        )
    bad_hidden = hidden_dim is not None and hidden_dim < 0
    if temperature <= 0 or not 0 <= hard_weight <= 1 or not 0 <= val_fraction < 1 or bad_hidden:
        raise ParameterError(
            f"temperature must be above 0 (got {temperature}), hard_weight within [0, 1] (got {hard_weight}), "
            f"val_fraction within [0, 1) (got {val_fraction}) and hidden_dim at least 0 (got {hidden_dim})."
        )


MIN_VALIDATION_ROWS = 50
# epochs without a gain in agreement with the teacher on the held-out rows before a student stops (``--val-fraction``
# asks for the epoch to be chosen; the shared loop's default, no early stopping, would keep the last)
VAL_PATIENCE = 2


def validation_rows(known: np.ndarray, fraction: float, seed: int) -> np.ndarray | None:
    """Indices of the transfer rows held out to choose the student's epoch: a random ``fraction`` of the
    unlabelled rows (the labelled ones are too few to spare, and the teacher's labels are the yardstick there
    anyway), or None when that is under ``MIN_VALIDATION_ROWS`` rows."""
    pool = np.flatnonzero(~known)
    n = int(round(fraction * len(pool)))
    if fraction <= 0 or n < MIN_VALIDATION_ROWS:
        return None
    return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))


def distill_run(
    teacher: str | Path,
    *,
    unlabeled: Dataset | None = None,
    test: Dataset | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    record: dict | None = None,
    **options: Any,
) -> DistillResult:
    """Distil the artifact folder ``teacher`` (``distill``'s ``options``) over its own training rows and
    ``unlabeled``; test on ``test`` (default: the teacher's own held-out rows); with ``output``, save the student
    as an artifact whose metrics and model card hold the comparison."""
    from .artifact import check_output, held_out, load_artifact, save_artifact, training_rows

    check_options(
        options.get("temperature", 1.0),
        options.get("hard_weight", 0.5),
        options.get("val_fraction", 0),
        options.get("hidden_dim"),
        options.get("max_length"),
    )
    if output is not None:
        check_output(output, overwrite)
    teacher_est = load_artifact(teacher, device=(options.get("params") or {}).get("device", "auto"))
    test = test if test is not None else held_out(teacher)
    result = distill(teacher_est, training_rows(teacher), unlabeled, test, **options)
    result.config["distilled_from"]["artifact"] = str(Path(teacher).resolve())
    # the teacher's data and test rows, so that `export` and `report` find the student's test rows again
    teacher_record, splits = _teacher_records(Path(teacher))
    result.config["record"] = {**teacher_record, **{k: v for k, v in (record or {}).items() if v is not None}}
    if output is not None:
        save_artifact(
            result.estimator,
            output,
            metrics=result.metrics,
            config=result.config,
            splits=splits,
            embed_backbone=True,
            overwrite=overwrite,
        )
        result.artifact = Path(output)
    return result


def _teacher_records(folder: Path) -> tuple[dict, dict | None]:
    import json

    config, splits = folder / "config.json", folder / "splits.json"
    record = (json.loads(config.read_text()).get("record") or {}) if config.is_file() else {}
    test = json.loads(splits.read_text()).get("test") if splits.is_file() else None
    return dict(record), ({"test": test} if test is not None else None)


def distill(
    teacher: Any,
    labelled: Dataset | None,
    unlabeled: Dataset | None,
    test: Dataset,
    *,
    student: str = "static",
    technique: str = "auto",
    params: dict | None = None,
    temperature: float = 1.0,
    hard_weight: float = 0.5,
    pca_dims: int | None = 256,
    seed: int = 0,
    measure_speed: bool = True,
    val_fraction: float = 0.0,
    hidden_dim: int | None = None,
    max_length: int | None = None,
) -> DistillResult:
    """Train ``student`` on the fitted ``teacher``'s probabilities over ``labelled`` (whose labels are mixed in
    at ``hard_weight``) and ``unlabeled`` rows, at ``temperature``; measure both on ``test``.

    ``val_fraction``: hold out that share of the unlabelled rows (``validation_rows``) and keep the student's
    epoch that agrees best with the teacher on them, stopping after the technique's ``patience`` epochs
    without gain. ``hidden_dim``: a static student's hidden layer (``make_student``; None: ``STATIC_HIDDEN_DIM``
    for a static student, none for any other). ``max_length``: the tokens a static student reads of each text
    (None: ``STATIC_MAX_LENGTH``).

    ``technique``: ``finetune`` (or another technique of the shared training loop) trains on the soft targets; a
    technique without that loop (``probe``, e.g. with ``params={"lexical": "tfidf"}`` for the words beside the
    static vectors) fits the targets' top class, and a static student then gets no hidden layer by default.
    ``"auto"`` (the default): ``STATIC_TECHNIQUE`` (``PAIR``: that probe with TF-IDF of the token ids and a
    fine-tuned copy of the vectors, joined; ``fit_pair``) for a static student, ``finetune`` for any other
    (``student_technique``)."""
    from .data.stream import predict_proba_chunks
    from .evaluate import fit_measured
    from .techniques import available_techniques, get_technique
    from .techniques.tuned import SoftTargets, TunedTechnique

    check_options(temperature, hard_weight, val_fraction, hidden_dim, max_length)
    technique, params = student_technique(student, technique, dict(params or {}))
    pair = technique == PAIR
    if pair:
        check_pair(student, val_fraction)
    # an unknown name counts as tuned here; get_technique below names it and the choices
    tuned = not pair and issubclass(available_techniques().get(technique, TunedTechnique), TunedTechnique)
    # a frozen hidden layer would only be a random projection: a probe reads the vectors themselves (the pair's
    # hidden layer is its fine-tuned half's)
    hidden_dim = student_hidden_dim(student, hidden_dim) if tuned or pair or hidden_dim else 0
    data, known = transfer_set(labelled, unlabeled)
    classes = np.asarray(teacher.classes_)
    labels = [*labelled.labels, *[None] * (len(data) - len(labelled))] if labelled is not None else None
    # a chunk at a time: streamed unlabelled rows (``--unlabeled`` files) are never all in memory
    proba = predict_proba_chunks(teacher, data)
    targets = soft_targets(proba, classes, labels, known, temperature, hard_weight)
    data.labels = [classes[i] for i in targets.argmax(1)]
    if pair:  # the probe's vectors: the hidden layer is added to the fine-tuned half's copy (fit_pair)
        student_bb = make_student(
            teacher, student, pca_dims, params.get("progress", True), 0, seed, max_length
        )
        est, fit_cost = fit_pair(
            student_bb, data, SoftTargets(classes, targets, temperature), hidden_dim, seed, params
        )
        return _distill_result(
            teacher, est, test, fit_cost, measure_speed, data, known, None, student, technique, temperature,
            hard_weight, val_fraction, seed, hidden_dim, student_bb,
        )  # fmt: skip
    student_bb = make_student(
        teacher, student, pca_dims, params.get("progress", True), hidden_dim, seed, max_length
    )
    if tuned and val_fraction:  # the held-out rows are there to choose the epoch: early stopping on them
        params.setdefault("patience", VAL_PATIENCE)
    est = get_technique(technique, backbone=student_bb, seed=seed, **params)
    if not tuned and val_fraction:
        raise ParameterError(
            f"--val-fraction chooses a trained student's epoch; --technique {technique!r} has no epochs. "
            f"Leave --val-fraction out."
        )
    held = validation_rows(known, val_fraction, seed)
    val = None
    if held is not None:
        train_rows = np.setdiff1d(np.arange(len(data)), held)
        data, val, targets = data.subset(train_rows), data.subset(held), targets[train_rows]
    if tuned:
        fit_cost = fit_measured(est, data, val, soft_targets=SoftTargets(classes, targets, temperature))
    else:  # a technique without the shared loop (probe) learns the targets' top class: the teacher's label,
        fit_cost = fit_measured(est, data, None)  # or the true one where the hard weight makes it win
    return _distill_result(
        teacher, est, test, fit_cost, measure_speed, data, known, val, student, technique, temperature,
        hard_weight, val_fraction, seed, hidden_dim, student_bb,
    )  # fmt: skip


def _distill_result(
    teacher, est, test, fit_cost, measure_speed, data, known, val, student, technique, temperature, hard_weight,
    val_fraction, seed, hidden_dim, student_bb,
) -> DistillResult:  # fmt: skip
    """The fitted student measured beside its teacher on ``test``, with the run's config."""
    from .evaluate import evaluate_predictions

    metrics, predict_s, pred = evaluate_predictions(est, test)
    metrics["distillation"] = compare(teacher, est, test, (metrics, pred), measure_speed)
    metrics["distillation"].update(
        transfer_rows=len(data),
        labelled_rows=int(known.sum()),
        validation_rows=0 if val is None else len(val),
        best_epoch=est.best_epoch_ if val is not None else None,
    )
    metrics["timings"] = {
        "fit_seconds": round(fit_cost.wall_seconds, 3),
        "predict_seconds": round(predict_s, 3),
    }
    metrics["cost"] = {
        **{f"fit_{k}": v for k, v in fit_cost.to_dict().items()},
        "trainable_params": est.trainable_parameters(),
    }
    config = _config(
        teacher, est, student, technique, temperature, hard_weight, val_fraction, seed, data, test
    )
    config["hidden_dim"] = hidden_dim
    if is_static(student):
        config["max_length"] = student_bb.max_length
    if technique == PAIR:
        config["pair"] = est.pair_
    return DistillResult(est, metrics, config)


def check_pair(student: str, val_fraction: float) -> None:
    """``PAIR`` is for static students, without a validation split (the probe half has no epochs)."""
    if not is_static(student):
        raise ParameterError(
            f"--technique {PAIR} joins a probe and a fine-tuned copy of one static student's vectors; --student "
            f"{student!r} is not a static one. Use --technique finetune (or leave --technique out)."
        )
    if val_fraction:
        raise ParameterError(
            f"--val-fraction {val_fraction}: chooses a fine-tuned student's epoch, and the default static student "
            f"({PAIR}) joins a probe, which has none, to its fine-tuned half. Add --technique finetune for the "
            f"fine-tuned student alone, or leave --val-fraction out."
        )


def pair_params(params: dict) -> tuple[dict, dict]:
    """``params`` split between the pair's probe and its fine-tuned half: each gets those it takes (``progress``,
    ``device`` and the like go to both); a name neither takes is refused."""
    from .techniques import available_techniques

    kinds = available_techniques()
    takes = {name: set(kinds[name]().get_params()) - {"backbone"} for name in ("probe", "finetune")}
    params = {k: v for k, v in params.items() if k not in PAIR_OPTIONS}  # the pair's own (``fit_pair``)
    unknown = sorted(set(params) - takes["probe"] - takes["finetune"])
    if unknown:
        raise ParameterError(
            f"{', '.join(unknown)}: no parameter of the default static student's probe or its fine-tuned half "
            f"({PAIR}). The probe takes {', '.join(sorted(takes['probe']))}; the fine-tuned half takes "
            f"{', '.join(sorted(takes['finetune']))}; the pair itself takes {', '.join(sorted(PAIR_OPTIONS))}."
        )
    return tuple({k: v for k, v in params.items() if k in takes[name]} for name in ("probe", "finetune"))


def _whole(value: Any, name: str) -> int:
    """``value`` as a whole number of at least 1, or a ParameterError naming ``name``."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise ParameterError(
            f"{name} must be a whole number of at least 1, or none for all of them (got {value!r})."
        )
    return n


def fit_pair(static_bb: Any, data: Dataset, targets: Any, hidden_dim: int, seed: int, params: dict) -> tuple:
    """The default static student (``PAIR``): a probe on ``static_bb``'s vectors learns ``data``'s labels (the
    targets' top class), a copy of the vectors with a hidden layer of ``hidden_dim`` units is fine-tuned on the
    soft ``targets``, and the two become one probe (``join_pair``). Returns it and what fitting both cost.

    On the development collection the pair was 0.87 points above the probe alone on average (all 8 data set and
    seed pairs ahead; docs/distill.md, "The pair"): the two make different mistakes. ``params``' ``tuned_dims``
    (``PAIR_OPTIONS``: all by default, ``none``) is how many of the table's leading dimensions the fine-tuned
    half keeps; the rest go to the halves (``pair_params``)."""
    import copy

    from .cost import measure
    from .techniques import get_technique

    probe_params, tuned_params = pair_params(params)
    tuned_bb = copy.deepcopy(static_bb)
    dims = params.get("tuned_dims", PAIR_OPTIONS["tuned_dims"])
    if dims is not None and not (isinstance(dims, str) and dims.strip().lower() in ("none", "all")):
        tuned_bb.keep_dims(_whole(dims, "tuned_dims"))
    if hidden_dim:
        tuned_bb.add_hidden_layer(hidden_dim, seed)
    probe = get_technique("probe", backbone=static_bb, seed=seed, **probe_params)
    tuned = get_technique("finetune", backbone=tuned_bb, seed=seed, **tuned_params)
    with measure() as cost:
        probe.fit(data)
        tuned.fit(data, soft_targets=targets)
        joined = join_pair(probe, tuned)
    return joined, cost


def join_pair(probe: Any, tuned: Any) -> Any:
    """One probe predicting as ``probe`` and ``tuned`` together: its backbone reads the probe's vectors and, as a
    branch, the tuned copy with its hidden layer (``StaticBackbone.add_branch``: one tokenization, one pass);
    its head holds both heads at half weight, so its logits are the mean of theirs (the two models' probabilities
    multiplied and renormalised). A class the probe never saw as a label (the teacher's top class nowhere in the
    transfer set) keeps the probe's lowest logit less 20 there, as the probe alone could not predict it."""
    import copy

    import torch

    from .techniques.head import LinearHead

    classes = [str(c) for c in tuned.classes_]
    missing = sorted({str(c) for c in probe.classes_} - set(classes))
    if missing:
        raise ParameterError(
            f"the probe knows classes the fine-tuned half does not ({', '.join(missing)}): fit the fine-tuned half on "
            f"the teacher's probabilities over every class (distill does)."
        )
    rows = [classes.index(str(c)) for c in probe.classes_]
    p, t = probe.head_, tuned.head_

    def arr(x: torch.Tensor) -> np.ndarray:  # a fine-tuned head may sit on the GPU it trained on
        return x.detach().cpu().double().numpy()

    wp = np.zeros((len(classes), p.linear.weight.shape[1]))
    bp = np.full(len(classes), float(arr(p.linear.bias).min()) - 20.0)
    wp[rows], bp[rows] = arr(p.linear.weight), arr(p.linear.bias)
    joined = copy.deepcopy(probe)
    joined.backbone = joined.backbone_ = copy.deepcopy(probe.backbone_).add_branch(tuned.backbone_)
    joined.classes_ = np.asarray(tuned.classes_)
    joined.head_ = LinearHead.from_arrays(
        0.5 * np.hstack([wp, arr(t.linear.weight)]),
        0.5 * (bp + arr(t.linear.bias)),
        np.concatenate([arr(p.mean), arr(t.mean)]),
        np.concatenate([arr(p.scale), arr(t.scale)]),
    ).float()
    coef = getattr(probe, "lexical_coef_", None)
    if coef is not None:
        full = torch.zeros((len(classes), coef.shape[1]), dtype=coef.dtype)
        full[rows] = coef.cpu()
        joined.lexical_coef_ = 0.5 * full
    joined.pair_ = {
        "probe": {"C": probe.C_, "lexical_weight": getattr(probe, "lexical_weight_", None)},
        "finetune": {"epochs": tuned.epochs, "lr": tuned.lr, "hidden_dim": tuned.backbone_.hidden_dim},
    }
    return joined


def compare(
    teacher: Any, student: Any, test: Dataset, scored: tuple[dict, Any], measure_speed: bool = True
) -> dict:
    """Teacher and student on the same ``test`` rows: accuracy, macro-F1, agreement, size, and speed.
    ``scored``: the student's test metrics and predictions (``evaluate_predictions``), already computed."""
    from .evaluate import evaluate_predictions
    from .metrics import paired_difference_interval, wilson_interval

    t_metrics, _, t_pred = evaluate_predictions(teacher, test)
    s_metrics, s_pred = scored
    truth = np.asarray(test.labels, dtype=object)
    right = {
        who: np.asarray(p, dtype=object) == truth for who, p in (("teacher", t_pred), ("student", s_pred))
    }

    def scores(m: dict, who: str) -> dict:
        ci = wilson_interval(int(right[who].sum()), len(truth))
        return {
            "accuracy": m["accuracy"],
            "accuracy_ci": [round(v, 4) for v in ci],
            "macro_f1": m["macro_f1"],
        }

    out = {
        "teacher": {**scores(t_metrics, "teacher"), **size_of(teacher)},
        "student": {**scores(s_metrics, "student"), **size_of(student)},
        "agreement": round(float((np.asarray(s_pred) == np.asarray(t_pred)).mean()), 4),
        "accuracy_kept": round(s_metrics["accuracy"] / max(t_metrics["accuracy"], 1e-12), 4),
        # student minus teacher, paired over the same rows: is the loss (or gain) more than noise?
        "accuracy_difference": paired_difference_interval(right["student"], right["teacher"]),
        "test_rows": len(test),
    }
    if measure_speed:
        out["teacher"]["speed"] = speed(teacher, test.inputs)
        out["student"]["speed"] = speed(student, test.inputs)
        out["speedup"] = round(
            out["student"]["speed"]["rows_per_s"] / out["teacher"]["speed"]["rows_per_s"], 2
        )
    return out


def _config(
    teacher, est, student, technique, temperature, hard_weight, val_fraction, seed, data, test
) -> dict:
    from . import __version__

    return {
        "warmstart_version": __version__,
        "technique": technique,
        "params": {k: v for k, v in est.get_params().items() if k != "backbone"},
        "backbone": est.backbone_.reference(),
        "distilled_from": {"technique": teacher.name, "backbone": teacher.backbone_.reference()},
        "student": student,
        "temperature": temperature,
        "hard_weight": hard_weight,
        "val_fraction": val_fraction,
        "seed": seed,
        "n_train": len(data),
        "n_test": len(test),
        "test_data": test.source,
        "classes": list(est.classes_),
    }


def distill_text(result: DistillResult) -> str:
    """The teacher-student comparison as a few lines for the terminal."""
    from .model_card import (
        COMPARISON_HEAD,
        comparison_rows,
        comparison_summary,
        energy_method,
        student_description,
    )

    c = result.metrics["distillation"]
    rows = [COMPARISON_HEAD, *comparison_rows(c)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COMPARISON_HEAD))]
    lines = [
        "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.append(
        f"{comparison_summary(c)}; trained on {c['transfer_rows']} rows ({c['labelled_rows']} labelled)"
    )
    lines.append(f"student: {student_description(result.config)}")
    if method := energy_method(c):
        lines.append(f"energy: {method}")
    if result.artifact is not None:
        lines.append(f"artifact: {result.artifact}")
    return "\n".join(lines)
