"""Single-label and multi-label targets.

A single-label dataset holds one label per row: a string (or, from Python, an integer or boolean). A multi-label
dataset holds a label *set* per row: a tuple, list or (frozen)set of strings, possibly empty. Everything that needs classes, strata or targets goes through
these helpers so that both kinds work the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def is_label_set(label: Any) -> bool:
    return isinstance(label, (tuple, list, set, frozenset))


def is_multilabel(labels: Sequence[Any] | None) -> bool:
    """True when any row's label is a set of labels rather than one string.

    Example:
        >>> is_multilabel(["a", "b"]), is_multilabel([("a", "b"), ("b",)])
        (False, True)
    """
    return labels is not None and len(labels) > 0 and any(is_label_set(lab) for lab in labels)


def label_set(label: Any) -> tuple[Any, ...]:
    """A row's labels as a sorted tuple, whether it holds one label or several. A single label keeps its type
    (an integer class stays an integer, so it matches the classes ``all_classes`` lists)."""
    if is_label_set(label):
        return tuple(sorted({str(x) for x in label}))
    return (label,)


def all_classes(labels: Iterable[Any]) -> list[str]:
    """Every class named by any row, sorted."""
    seen: set[str] = set()
    for lab in labels:
        seen.update(label_set(lab) if is_label_set(lab) else (lab,))
    return sorted(seen)


def multi_hot(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """``(N, C)`` float32 indicator matrix of each row's labels; labels outside ``classes`` are ignored.

    Example:
        >>> multi_hot([("a", "c"), "b", ()], ["a", "b", "c"]).astype(int).tolist()
        [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    """
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, lab in enumerate(labels):
        for c in label_set(lab):
            if c in index:
                out[row, index[c]] = 1.0
    return out


def strata(labels: Sequence[Any]) -> list[str]:
    """One stratum per row for stratified splitting: the label itself, or for a label set its rarest member
    (the classes that are easiest to lose from a split), and ``""`` for an empty set."""
    if not is_multilabel(labels):
        return list(labels)
    counts: dict[str, int] = {}
    for lab in labels:
        for c in label_set(lab):
            counts[c] = counts.get(c, 0) + 1
    return [min(label_set(lab), key=lambda c: (counts[c], c)) if label_set(lab) else "" for lab in labels]
