"""In-memory dataset containers shared by text and image data."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .labels import all_classes, is_multilabel, label_set


@dataclass
class Dataset:
    """Inputs with optional labels and where they came from.

    A label is one string per row, or for multi-label data a tuple (list, set) of strings per row.

    ``inputs`` is a list of strings for text, and a list of image paths or a uint8 array
    ``(N, H, W[, C])`` for images. ``rows`` holds each item's position in its source (1-based data row,
    or a file path for images) so that errors and predictions can point back at it.
    """

    inputs: Any
    labels: list[Any] | None
    modality: str
    source: str = "<memory>"
    rows: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.rows) == 0:
            self.rows = list(range(1, len(self) + 1))
        if self.labels is not None and len(self.labels) != len(self):
            raise DataError(
                f"{self.source}: {len(self)} inputs but {len(self.labels)} labels; give one label per input."
            )

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            inputs: Any = self.inputs[idx]
        elif hasattr(self.inputs, "select"):  # texts read from their file when used (``stream.TextRows``)
            inputs = self.inputs.select(idx)
        else:
            inputs = [self.inputs[i] for i in idx]
        labels = None if self.labels is None else [self.labels[i] for i in idx]
        return Dataset(inputs, labels, self.modality, self.source, [self._row(i) for i in idx.tolist()])

    def _row(self, i: int) -> Any:
        """Row ``i``'s position in its source, as a plain Python value (``rows`` may be a numpy array)."""
        row = self.rows[i]
        return row.item() if isinstance(row, np.generic) else row

    def without_labels(self) -> Dataset:
        """The same rows with no labels (unlabelled rows whose source had a label column, or hidden labels)."""
        return Dataset(self.inputs, None, self.modality, self.source, self.rows)

    @property
    def classes(self) -> list[str]:
        if self.labels is None:
            return []
        return all_classes(self.labels)

    @property
    def multilabel(self) -> bool:
        return is_multilabel(self.labels)

    def class_counts(self) -> dict[str, int]:
        if self.multilabel:
            return dict(sorted(Counter(c for lab in self.labels for c in label_set(lab)).items()))
        return dict(sorted(Counter(self.labels or []).items()))

    def require_labels(self, min_classes: int = 2) -> None:
        """Raise a clear error unless every item has a label and there are at least ``min_classes``."""
        if self.labels is None:
            raise DataError(f"{self.source}: no labels; training needs a label column (see --label-col).")
        classes = self.classes
        if len(classes) < min_classes:
            found = ", ".join(repr(c) for c in classes) or "none"
            raise DataError(
                f"{self.source}: found {len(classes)} class ({found}) but classification needs at least "
                f"{min_classes}. Check that --label-col names the right column and the file holds every class."
            )

    def fingerprint(self) -> str:
        """Content hash of the inputs (not the labels): the feature-cache key for this data."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.modality.encode())
        if isinstance(self.inputs, np.ndarray):
            h.update(str((self.inputs.dtype, self.inputs.shape)).encode())
            h.update(np.ascontiguousarray(self.inputs).tobytes())
        else:
            for item in self.inputs:
                if self.modality == "image" and isinstance(item, np.ndarray):  # a list of decoded images
                    h.update(str((item.dtype, item.shape)).encode())
                    h.update(np.ascontiguousarray(item).tobytes())
                elif self.modality == "image":
                    h.update(_file_digest(item))
                else:
                    b = str(item).encode("utf-8", "surrogatepass")
                    h.update(len(b).to_bytes(8, "little"))
                    h.update(b)
        return h.hexdigest()


def _file_digest(path: str) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.digest()


def check_labels_seen(train: Dataset, other: Dataset, name: str) -> None:
    """Fail when ``other`` (a val or test set) holds labels the training data never shows."""
    if other.labels is None or train.labels is None:
        return
    seen = set(train.classes)
    unseen = [
        (row, c)
        for row, lab in zip(other.rows, other.labels, strict=True)
        for c in label_set(lab)
        if c not in seen
    ]
    if unseen:
        labels = sorted({lab for _, lab in unseen})
        row, lab = unseen[0]
        raise DataError(
            f"{other.source}: the {name} set has label(s) {labels[:10]} never seen in training "
            f"(first at row {row}: {lab!r}). Add examples of them to the training data or drop those rows."
        )


def join_datasets(parts: Sequence[Dataset], source: str) -> Dataset:
    """The rows of ``parts`` one after another, as one ``Dataset`` named ``source``: labelled when every part is
    (self-training's labelled plus pseudo-labelled rows), else without labels (distillation's transfer set)."""
    parts = [d for d in parts if len(d)]
    if not parts:
        raise DataError(f"{source}: no rows to join.")
    if len({d.modality for d in parts}) > 1:
        raise DataError(f"{source}: cannot join {', '.join(sorted({d.modality for d in parts}))} rows.")
    rows: Any = None
    if len(parts) == 1:
        inputs: Any = parts[0].inputs
    elif any(hasattr(d.inputs, "select") for d in parts):  # rows read from their files stay there
        inputs = JoinedRows([d.inputs for d in parts])
        numbers = [np.asarray(d.rows) for d in parts]
        if all(r.dtype.kind in "iu" for r in numbers):  # a number per row, not a Python object each
            rows = np.concatenate(numbers).astype(np.int64)
    elif (
        all(isinstance(d.inputs, np.ndarray) for d in parts) and len({d.inputs.shape[1:] for d in parts}) == 1
    ):
        inputs = np.concatenate([d.inputs for d in parts])
    else:  # paths, or arrays of different sizes (8x8 labelled digits beside 28x28 unlabelled MNIST)
        inputs = [x for d in parts for x in d.inputs]
    labelled = all(d.labels is not None for d in parts)
    labels = [lab for d in parts for lab in d.labels] if labelled else None  # type: ignore[union-attr]
    if rows is None:
        rows = [d._row(i) for d in parts for i in range(len(d))]
    return Dataset(inputs, labels, parts[0].modality, source, rows)


class TakenRows(Sequence):
    """Rows read a batch at a time through the subclass's ``take(indices)``: indexing and slicing go through it,
    and ``_checked`` is the one refusal of rows that are not there (``data.stream``'s streamed rows,
    ``JoinedRows``)."""

    def take(self, indices: Any) -> list[Any]:
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self.take([index])[0]

    def _checked(self, indices: Any) -> np.ndarray:
        """``indices`` as an array of row positions (negative ones from the end), refused if out of range."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"rows {int(idx.min())} to {int(idx.max())} asked of {len(self)}")
        return idx


class JoinedRows(TakenRows):
    """The inputs of several data sets one after another, any of them streamed (``data.stream``; joined by
    ``join_datasets``: distillation's transfer set, self-training's labelled plus pseudo-labelled rows), still
    read from their files when used: indexing, ``select`` and ``take`` go to the parts that hold the rows asked
    for."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.ends = np.cumsum([len(p) for p in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part  # a streamed part a chunk at a time

    def _split(self, indices: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``indices`` (negative ones from the end) as (part, position in it, place in the request)."""
        idx = self._checked(indices)
        idx = np.where(idx < 0, idx + len(self), idx)
        part = np.searchsorted(self.ends, idx, side="right")
        starts = np.concatenate([[0], self.ends[:-1]])
        return part, idx - starts[part] if len(idx) else idx, np.arange(len(idx))

    def select(self, indices: Any) -> Any:
        """The rows at ``indices`` in their order, each part's still streamed where it was (``Dataset.subset``)."""
        part, pos, _ = self._split(indices)
        if not len(part):
            return _select(self.parts[0], pos) if self.parts else []
        bounds = np.append(np.flatnonzero(np.diff(part, prepend=-1)), len(part))  # runs of one part
        pieces = [
            _select(self.parts[int(part[a])], pos[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return pieces[0] if len(pieces) == 1 else JoinedRows(pieces)

    def take(self, indices: Any) -> list[Any]:
        """The inputs at ``indices`` (in their order), each part read once."""
        part, pos, place = self._split(indices)
        out: list[Any] = [None] * len(pos)
        for p in np.unique(part).tolist():
            mine = part == p
            src = self.parts[p]
            got = src.take(pos[mine]) if hasattr(src, "take") else [src[int(i)] for i in pos[mine]]
            for j, value in zip(place[mine].tolist(), got, strict=True):
                out[j] = value
        return out


def _select(inputs: Any, positions: np.ndarray) -> Any:
    """``Dataset.subset``'s choice of rows of one part's inputs (a streamed part stays streamed)."""
    if hasattr(inputs, "select"):
        return inputs.select(positions)
    if isinstance(inputs, np.ndarray):
        return inputs[positions]
    return [inputs[int(i)] for i in positions]
