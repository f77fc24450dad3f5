"""Classification metrics written into every run's metrics JSON."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .data.labels import is_multilabel, multi_hot


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, a per-class report and the confusion matrix (rows: true, columns: predicted).

    Example:
        >>> m = classification_metrics(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
        >>> round(m["accuracy"], 3), m["confusion_matrix"]
        (0.667, [[1, 0], [1, 1]])
    """
    labels = list(classes)
    if is_multilabel(list(y_true)) or is_multilabel(list(y_pred)):
        return multilabel_metrics(y_true, y_pred, labels)
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    # a class with no test rows has no F1 to speak of: it is left out of macro-F1, and the metrics say so
    present = [c for c, support in zip(labels, s, strict=True) if support > 0]
    absent = [c for c in labels if c not in present]
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present or labels, average="macro", zero_division=0)
        ),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(labels)
        },
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if absent:
        out["classes_without_test_rows"] = absent
        out["note"] = (
            f"{len(absent)} class(es) have no test rows ({', '.join(map(str, absent[:5]))}); macro-F1 is over the "
            f"other {len(present)}."
        )
    return out


def multilabel_metrics(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> dict:
    """Label-set metrics: ``accuracy`` is the exact-match (subset) accuracy, ``micro_f1`` and ``macro_f1`` are
    over labels, and the per-class report treats each label as its own yes/no task.

    Example:
        >>> m = multilabel_metrics([("a", "b"), ("b",)], [("a",), ("b",)], ["a", "b"])
        >>> m["accuracy"], round(m["micro_f1"], 3)
        (0.5, 0.8)
    """
    labels = list(classes)
    T, P = multi_hot(list(y_true), labels), multi_hot(list(y_pred), labels)
    p, r, f, s = precision_recall_fscore_support(T, P, zero_division=0)
    return {
        "n": len(T),
        "multilabel": True,
        "accuracy": float((T == P).all(1).mean()) if len(T) else 0.0,
        "micro_f1": float(f1_score(T, P, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(T, P, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(labels)
        },
        "labels": labels,
    }


def calibration(proba: np.ndarray, y_true: Sequence, classes: Sequence, bins: int = 15) -> dict:
    """Expected calibration error of the top class and the reliability table behind it.

    Rows are binned by their top probability into ``bins`` equal-width bins over [0, 1]; ECE is the mean, weighted
    by rows, of |accuracy - mean confidence| per bin (Guo et al., 2017). A model whose 0.8-confident predictions
    are right 80% of the time has ECE near 0. Each table row: the bin's bounds, rows, mean confidence, accuracy.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
        >>> c = calibration(p, ["a", "a", "b", "b"], ["a", "b"], bins=5)
        >>> round(c["ece"], 3), [(b["n"], b["accuracy"]) for b in c["reliability"]]
        (0.15, [(2, 0.5), (2, 1.0)])
    """
    proba = np.asarray(proba, dtype=np.float64)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.fromiter((index.get(t, -1) for t in y_true), dtype=np.int64, count=len(proba))
    conf, right = proba.max(1), (proba.argmax(1) == truth).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)  # 1.0 goes into the last bin
    table, ece = [], 0.0
    for b in range(bins):
        rows = which == b
        if not rows.any():
            continue
        acc, mean_conf = float(right[rows].mean()), float(conf[rows].mean())
        ece += rows.sum() / len(proba) * abs(acc - mean_conf)
        table.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": int(rows.sum()),
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return {"ece": float(ece), "reliability": table}


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% at ``z`` 1.96) of a proportion, e.g. accuracy as ``correct`` of ``n``
    test rows: unlike the normal approximation it stays inside [0, 1] and is sound near 0 and 1.

    Example:
        >>> [round(v, 3) for v in wilson_interval(90, 100)]
        [0.826, 0.945]
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def paired_difference_interval(
    a_correct: np.ndarray, b_correct: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict:
    """Accuracy of A minus accuracy of B on the same test rows (``*_correct``: one boolean per row), with a
    percentile bootstrap interval over the rows (paired: each resample draws the same rows for both).

    Example:
        >>> d = paired_difference_interval(np.array([1, 1, 1, 0] * 50, bool), np.array([1, 1, 0, 0] * 50, bool))
        >>> d["difference"], d["low"] < 0.25 < d["high"]
        (0.25, True)
    """
    a, b = np.asarray(a_correct, dtype=float), np.asarray(b_correct, dtype=float)
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(1)
    tail = (1 - level) / 2
    return {
        "difference": round(float(diff.mean()), 6),
        "low": round(float(np.quantile(means, tail)), 6),
        "high": round(float(np.quantile(means, 1 - tail)), 6),
        "level": level,
    }
