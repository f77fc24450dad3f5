"""Stratified splits and few-shot sampling, deterministic for a seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, ParameterError
from .labels import is_multilabel, label_set, strata


@dataclass
class Split:
    """Row indices of a train/val/test split. Saved with every run so it can be reproduced."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "train": self.train.tolist(),
            "val": self.val.tolist(),
            "test": self.test.tolist(),
        }


def _per_class(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows of each stratum (see ``labels.strata``): every row in exactly one, so splits never share rows."""
    arr = np.asarray(strata(labels), dtype=object)
    return {c: np.flatnonzero(arr == c) for c in sorted(set(arr))}


def stratified_split(
    labels: Sequence[str], val_size: float = 0.1, test_size: float = 0.2, seed: int = 0
) -> Split:
    """Split row indices per class so every split keeps the class proportions.

    Each class keeps at least one row in train; a class too small to share goes to train alone. Multi-label
    rows are stratified by their rarest label.

    Example:
        >>> s = stratified_split(["a"] * 10 + ["b"] * 10, val_size=0.1, test_size=0.2, seed=0)
        >>> len(s.train), len(s.val), len(s.test)
        (14, 2, 4)
    """
    for name, v in (("val_size", val_size), ("test_size", test_size)):
        if not 0.0 <= v < 1.0:
            raise ParameterError(f"The {name!r} parameter must be a float in [0, 1). Got {v!r} instead.")
    if val_size + test_size >= 1.0:
        raise ParameterError(f"val_size + test_size must be below 1; got {val_size + test_size}.")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for idx in _per_class(labels).values():
        idx = rng.permutation(idx)
        n = len(idx)
        n_test = min(int(round(n * test_size)), n - 1)
        n_val = min(int(round(n * val_size)), n - 1 - n_test)
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test : n_test + n_val])
        parts["train"].append(idx[n_test + n_val :])
    out = {
        k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64)
        for k, v in parts.items()
    }
    return Split(out["train"], out["val"], out["test"], seed)


def few_shot(labels: Sequence[str], k: int, seed: int = 0, strict: bool = False) -> np.ndarray:
    """Pick ``k`` row indices per class.

    For one seed the picks are nested: the rows for k=8 are among the rows for k=64, so learning curves
    compare like with like. A class with fewer than ``k`` rows gives all it has (or an error with ``strict``).
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ParameterError(f"The 'k' parameter of few_shot must be an int in [1, inf). Got {k!r} instead.")
    if is_multilabel(labels):
        return _few_shot_multilabel(labels, k, seed)
    rng = np.random.default_rng(seed)
    picks = []
    for cls, idx in _per_class(labels).items():
        if strict and len(idx) < k:
            raise DataError(f"class {cls!r} has only {len(idx)} training rows, fewer than k={k}.")
        picks.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picks)).astype(np.int64)


def _few_shot_multilabel(labels: Sequence, k: int, seed: int) -> np.ndarray:
    """Greedy: visit rows in a seeded random order and keep a row while one of its labels has fewer than ``k``
    kept rows. Every class ends with at least ``min(k, its rows)`` examples; frequent classes that co-occur with
    rare ones get more. Unlike single-label picks, those for a smaller k are not guaranteed to be nested in
    those for a larger k."""
    need: dict[str, int] = {}
    picks = []
    for i in np.random.default_rng(seed).permutation(len(labels)):
        labs = label_set(labels[i])
        if any(need.get(c, 0) < k for c in labs):
            picks.append(i)
            for c in labs:
                need[c] = need.get(c, 0) + 1
    return np.sort(np.asarray(picks, dtype=np.int64))
