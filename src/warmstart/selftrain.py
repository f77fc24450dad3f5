"""Self-training: label the unlabelled rows the model is surest of with its own predictions, retrain, repeat.

``--technique self_train:BASE`` fits BASE (any technique) on the labelled rows, predicts the unlabelled ones,
and refits BASE from scratch on the labelled rows plus the most confident predictions, for ``rounds`` rounds.
The selection is class-balanced, as in class-balanced self-training (Zou et al. 2018): round r of R takes, for
each predicted class, the most confident ``portion * r / R`` of the rows predicted as that class (at least
``min_confidence``), so a class the model favours cannot crowd out the others, and the share grows as the model
improves. ``max_rows`` caps the pseudo-labelled rows per round (split evenly over the classes), so 100k
unlabelled rows cost what ``max_rows`` of them cost to train on. The unlabelled rows are predicted in chunks
(``data.stream.chunks``) and only their predicted class and confidence are kept, so they are never all in
memory as features or decoded images.

The result is an ordinary fitted BASE (saved, exported and served like one); ``self_training_`` and the run's
config record every round: how many rows, per class, the lowest confidence taken, and how many pseudo-labels
changed since the round before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .data import Dataset, join_datasets
from .data.stream import chunk_parts, chunks
from .errors import ParameterError
from .techniques.base import Interval

PREFIX = "self_train:"
# self-training's own options, given with the base technique's parameters (--param self_train_rounds=3): their
# defaults and the values each takes
OPTIONS = {
    "self_train_rounds": (2, Interval(int, 1, None)),
    "self_train_portion": (0.5, Interval(float, 0, 1, "right")),
    "self_train_min_confidence": (0.0, Interval(float, 0, 1, "left")),
    "self_train_max_rows": (10_000, Interval(int, 1, None)),
}


def base_of(technique: str) -> str | None:
    """The base technique of a ``self_train:BASE`` name, or None for a plain technique name."""
    if not technique.startswith(PREFIX):
        return None
    base = technique[len(PREFIX) :]
    if not base or base.startswith(PREFIX) or base == "auto":
        raise ParameterError(
            f"{technique!r}: write self_train:BASE with BASE a technique, e.g. self_train:probe or "
            f"self_train:lp_ft."
        )
    return base


def wants_unlabeled(technique: str, params: dict[str, Any] | None) -> bool:
    """Whether ``technique`` with ``params`` uses unlabelled rows: self_train:BASE, or a probe that aligns
    domains (``align``)."""
    return base_of(technique) is not None or (params or {}).get("align", "none") != "none"


def unlabeled_kw(est: Any, unlabeled: Dataset | None) -> dict[str, Any]:
    """``fit``'s ``unlabeled`` keyword for an estimator that uses those rows itself (a probe with ``align``)."""
    return {"unlabeled": unlabeled} if getattr(est, "align", "none") != "none" else {}


def split_params(params: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` as (the base technique's, self-training's options with defaults filled in), checked like a
    technique's parameters (``techniques.base.Interval``; the counts must be ints, not whole floats)."""
    params = dict(params or {})
    opts = {k: params.pop(k, default) for k, (default, _) in OPTIONS.items()}
    for name, (_, allowed) in OPTIONS.items():
        value = opts[name]
        whole = allowed.kind is not int or (isinstance(value, int) and not isinstance(value, bool))
        if not (whole and allowed.ok(value)):
            raise ParameterError(
                f"The {name!r} parameter of self-training must be {allowed.describe()}. Got {value!r} instead."
            )
    return params, opts


def fit_self_training(
    est: Any,
    train: Dataset,
    unlabeled: Dataset,
    val: Dataset | None = None,
    *,
    self_train_rounds: int = 2,
    self_train_portion: float = 0.5,
    self_train_min_confidence: float = 0.0,
    self_train_max_rows: int = 10_000,
    labeler: Any = None,
) -> Any:
    """Fit ``est`` (an unfitted technique) on ``train``, then self-train it on ``unlabeled``; return the
    estimator of the last round (a fresh one of ``est``'s class and parameters), with ``self_training_``.
    ``labeler``, a fitted estimator with the same classes, picks and labels the first round's rows instead of
    ``est`` (another model's pseudo-labels to start from); later rounds use the model of the round before.

    Example:
        >>> from warmstart import get_technique
        >>> from warmstart.data import Dataset
        >>> texts = ["free cash prize", "win money now", "see you at lunch", "call me later"]
        >>> train = Dataset(texts, ["spam", "spam", "ham", "ham"], "text")
        >>> pool = Dataset(["claim your free prize", "lunch tomorrow?", "win cash", "call you later"], None, "text")
        >>> est = get_technique("probe", backbone="paraphrase-MiniLM-L3-v2", progress=False)
        >>> model = fit_self_training(est, train, pool, self_train_rounds=1, self_train_portion=1.0)
        >>> model.self_training_["rounds"][0]["rows"], model.n_train_
        (4, 8)
    """
    if unlabeled is None or len(unlabeled) == 0:
        raise ParameterError(
            "self-training needs unlabelled rows: pass --unlabeled FILE_OR_FOLDER (or, in a study, "
            "--unlabeled rest for the pool rows not drawn as labelled ones)."
        )
    unlabeled = unlabeled.without_labels()
    est.fit(train, val=val, **unlabeled_kw(est, unlabeled))
    classes = est.classes_
    if labeler is not None and list(labeler.classes_) != list(classes):
        raise ParameterError(
            f"the labeler's classes {list(labeler.classes_)} differ from the model's {list(classes)}; fit both on "
            "the same labelled rows."
        )
    history: list[dict] = []
    previous: dict[int, int] = {}
    for r in range(1, self_train_rounds + 1):
        pred, conf = _predict_chunks(labeler if r == 1 and labeler is not None else est, unlabeled)
        share = self_train_portion * r / self_train_rounds
        take = _balanced(pred, conf, len(classes), share, self_train_min_confidence, self_train_max_rows)
        current = {int(i): int(pred[i]) for i in take}
        changed = sum(previous.get(i, c) != c for i, c in current.items())
        pseudo = unlabeled.subset(take)
        pseudo.labels = [classes[pred[i]] for i in take]
        history.append(
            {
                "round": r,
                "share": round(share, 4),
                "rows": len(take),
                "per_class": {str(c): int((pred[take] == j).sum()) for j, c in enumerate(classes)},
                "min_confidence_taken": round(float(conf[take].min()), 4) if len(take) else None,
                "mean_confidence_taken": round(float(conf[take].mean()), 4) if len(take) else None,
                "changed_since_last_round": int(changed),
            }
        )
        previous = current
        est = type(est)(**est.get_params(deep=False))  # a fresh fit from the same parameters and backbone
        joined = join_datasets([train, pseudo], f"{train.source} + pseudo-labelled {unlabeled.source}")
        # its features are rows the feature cache already holds: the labelled rows', and the chunks' predicted
        joined.feature_parts = [(train, np.arange(len(train))), *chunk_parts(unlabeled, take)]
        # rows from here on came from the unlabelled rows (a probe with align="adabn" encodes them as that domain)
        joined.pseudo_from = len(train)
        est.fit(joined, val=val, **unlabeled_kw(est, unlabeled))
    est.self_training_ = {
        "unlabeled_rows": len(unlabeled),
        "labelled_rows": len(train),
        "rounds": history,
        "options": {
            "self_train_rounds": self_train_rounds,
            "self_train_portion": self_train_portion,
            "self_train_min_confidence": self_train_min_confidence,
            "self_train_max_rows": self_train_max_rows,
        },
    }
    return est


def _predict_chunks(est: Any, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index and its probability for every row of ``data``, a chunk at a time."""
    preds, confs = [], []
    for _, chunk in chunks(data):
        proba = np.asarray(est.predict_proba(chunk))
        preds.append(proba.argmax(1))
        confs.append(proba.max(1))
    return np.concatenate(preds), np.concatenate(confs)


def _balanced(
    pred: np.ndarray, conf: np.ndarray, num_classes: int, share: float, min_conf: float, max_rows: int
) -> np.ndarray:
    """Row indices to pseudo-label: per predicted class, its most confident ``share`` of rows at or above
    ``min_conf``, at most ``max_rows // num_classes`` per class; in row order."""
    per_class_cap = max(1, max_rows // num_classes)
    chosen = []
    for c in range(num_classes):
        rows = np.flatnonzero((pred == c) & (conf >= min_conf))
        n = min(math.ceil(share * int((pred == c).sum())), len(rows), per_class_cap)
        if n:
            order = np.lexsort((rows, -conf[rows]))  # most confident first; ties by row
            chosen.append(rows[order[:n]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
