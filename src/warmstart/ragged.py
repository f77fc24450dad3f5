"""Rows of integers of different lengths (token ids) kept as one flat array and each row's length.

numpy only, no torch: the word-piece cache, the static backbone and the TF-IDF of token ids (``lexical``, which
runs in worker processes that must start quickly) share these steps.

>>> flat, lengths = flatten([[5, 6], [], [7]])
>>> flat.tolist(), lengths.tolist(), split(flat, lengths)
([5, 6, 7], [2, 0, 1], [[5, 6], [], [7]])
>>> gather(flat, np.array([2, 0]), np.array([1, 2])).tolist()  # the rows starting at 2 and at 0
[7, 5, 6]
>>> flat, lengths = splice(flat, lengths, {1: [8, 9]})  # row 1 replaced, the others as they were
>>> flat.tolist(), lengths.tolist()
([5, 6, 8, 9, 7], [2, 2, 1])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """All rows end to end in one int64 array, and each row's length."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def split(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """``flatten`` undone: one list per row."""
    return [row.tolist() for row in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []


def gather(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The runs of ``flat`` that start at ``starts`` and are ``lengths`` long, end to end (by index arithmetic,
    without a Python loop per run)."""
    offset = np.cumsum(lengths) - lengths
    return flat[np.repeat(starts - offset, lengths) + np.arange(int(lengths.sum()))]


def splice(
    flat: np.ndarray, lengths: np.ndarray, rows: dict[int, Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """``flat`` and ``lengths`` with row ``i`` replaced by ``rows[i]`` for each key: the other rows are moved by
    index arithmetic, so a few replaced rows cost no Python list per row."""
    if not rows:
        return flat, lengths
    idx = np.fromiter(rows, dtype=np.int64, count=len(rows))
    new_lengths = lengths.copy()
    new_lengths[idx] = [len(rows[i]) for i in idx.tolist()]
    starts, new_starts = np.cumsum(lengths) - lengths, np.cumsum(new_lengths) - new_lengths
    kept = np.ones(len(lengths), dtype=bool)
    kept[idx] = False
    out = np.empty(int(new_lengths.sum()), dtype=np.int64)
    positions = np.arange(len(out))
    out[gather(positions, new_starts[kept], lengths[kept])] = gather(flat, starts[kept], lengths[kept])
    for i in idx.tolist():
        out[new_starts[i] : new_starts[i] + new_lengths[i]] = rows[i]
    return out, new_lengths
