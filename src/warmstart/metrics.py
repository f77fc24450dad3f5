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
