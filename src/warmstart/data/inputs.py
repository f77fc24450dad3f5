"""Inputs people have, turned into a ``Dataset``: the one conversion behind every ``fit(X, y)`` and ``predict(X)``.

Accepted ``X``:

- warmstart's own ``Dataset``;
- a list or tuple of strings (text), or of image paths, ``PIL.Image`` objects or ``(H, W[, C])`` arrays (images);
- a numpy array: one string per row for text, ``(N, H, W[, C])`` pixels for images;
- a pandas ``Series`` (its values) or ``DataFrame`` (the input column, and the label column when ``y`` is not
  given);
- a Hugging Face ``datasets.Dataset`` (one split of a ``DatasetDict``), a dict of columns (``ds[:]``) or a list of
  row dicts (what iterating a ``datasets.Dataset`` yields), with the same column rules as a ``DataFrame``.

Columns: ``input_col`` and ``label_col`` name them; left as ``None`` the input column is the only column (besides
the label column), else the one whose name is a usual one (``text``, ``sentence``, ``image``, ``img``, ...), and
the label column is ``label``/``labels``/... when present. Anything else, or a shape that could be read two ways,
is a ``DataError`` that says what to pass; nothing is guessed silently.

Labels (``y`` or the label column): class names (strings), integers or booleans, or a list/tuple/set of class
names per row for multi-label data. ``None``/NaN labels and float labels are refused, naming the row.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"body_text": ["good", "bad", "fine"], "stars": [5, 1, 4]})
    >>> ds = as_dataset(df, modality="text", label_col="stars")
    >>> ds.inputs, ds.labels
    (['good', 'bad', 'fine'], [5, 1, 4])
    >>> as_dataset(df, modality="text")
    Traceback (most recent call last):
    ...
    warmstart.errors.DataError: <DataFrame>: cannot tell which column holds the inputs among ['body_text', 'stars']; pass input_col=NAME (and label_col=NAME for the labels).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .datasets import Dataset
from .text import LABEL_COLUMNS, TEXT_COLUMNS

IMAGE_COLUMNS = ("image", "img", "images", "picture", "photo", "pixel_values", "path", "file", "filename")


def as_dataset(
    X: Any,
    y: Any = None,
    *,
    modality: str,
    input_col: str | None = None,
    label_col: str | None = None,
    need_labels: bool = False,
    source: str | None = None,
    flags: tuple[str, str] = ("input_col", "label_col"),
) -> Dataset:
    """``X`` (and ``y``) as a ``Dataset`` of ``modality`` ("text" or "image"); see the module docstring.

    With ``need_labels`` (fitting), labels must come from ``y`` or a label column. ``source`` names the data in
    errors (and in the ``Dataset``); ``flags`` are the names errors tell the user to set for the two columns.
    """
    if isinstance(X, Dataset):
        data = _own_dataset(X, y, modality)
    elif isinstance(X, (str, bytes)):
        raise DataError("expected a list of inputs, got a single string; wrap it in a list.")
    elif _is_hf_dict(X):
        raise DataError(
            f"got a datasets.DatasetDict with splits {list(X.keys())}; pass one split, e.g. ds['train']."
        )
    else:
        data = _convert(X, y, modality, (input_col, label_col), source, flags)
    if need_labels and data.labels is None:
        raise DataError(
            f"{data.source}: no labels. Pass them as y (fit(X, y)), or name the label column with {flags[1]}=NAME."
        )
    return data


def _convert(
    X: Any,
    y: Any,
    modality: str,
    cols: tuple[str | None, str | None],
    name: str | None,
    flags: tuple[str, str],
) -> Dataset:
    columns, source = _columns(X)
    source = name or source
    labels = None
    if columns is not None:
        icol, lcol = _pick_columns(columns, modality, cols, source, flags, want_labels=y is None)
        inputs = columns[icol]
        if lcol is not None:
            labels = _labels(columns[lcol], f"{source} column {lcol!r}")
        source = f"{source} column {icol!r}"
    else:
        inputs, seq_source = _sequence(X)
        source = name or seq_source
    if y is not None:
        labels = _labels(y, f"{source} labels (y)")
    if labels is not None and len(labels) != len(inputs):
        raise DataError(f"{source}: {len(inputs)} inputs but {len(labels)} labels; give one label per input.")
    if modality == "image":
        return _images(inputs, labels, source, flags[0])
    if modality != "text":
        raise DataError(f"unknown modality {modality!r}: expected 'text' or 'image'.")
    return Dataset(_texts(inputs, source, flags[0]), labels, "text", source)


def _own_dataset(X: Dataset, y: Any, modality: str) -> Dataset:
    if X.modality != modality:
        raise DataError(
            f"{X.source}: a {X.modality} data set, but the backbone reads {modality}. Pick a {modality} backbone "
            f"or {modality} data."
        )
    if y is None:
        return X
    labels = _labels(y, f"{X.source} labels (y)")  # refuses a Dataset as y (validation rows go in as val=)
    if X.labels is not None:
        raise DataError(
            f"{X.source}: the Dataset already has labels and y gives them again; pass one of them."
        )
    return Dataset(X.inputs, labels, X.modality, X.source, X.rows)


# -- tables: pandas, Hugging Face datasets, dicts of columns, lists of row dicts ---------------------------------
def _is_hf_dict(X: Any) -> bool:
    return type(X).__module__.startswith("datasets") and type(X).__name__ in (
        "DatasetDict",
        "IterableDatasetDict",
    )


def _columns(X: Any) -> tuple[dict[str, Any] | None, str]:
    """The columns of a table-like ``X`` (name -> sequence), or ``None`` when ``X`` is not a table."""
    mod, name = type(X).__module__, type(X).__name__
    if mod.startswith("pandas") and name == "DataFrame":
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise DataError(f"<DataFrame>: repeated column names {names}; give each column its own name.")
        return {str(c): X[c].tolist() for c in X.columns}, "<DataFrame>"
    if mod.startswith("datasets") and hasattr(X, "column_names") and hasattr(X, "features"):
        if name == "IterableDataset":
            raise DataError("a streaming datasets.IterableDataset: load the split without streaming=True.")
        return {c: _hf_column(X, c) for c in X.column_names}, f"<datasets.Dataset {len(X)} rows>"
    if isinstance(X, Mapping):
        return {str(k): _as_list(v, f"column {k!r}") for k, v in X.items()}, "<dict of columns>"
    if isinstance(X, (list, tuple)) and X and all(isinstance(r, Mapping) for r in X):
        keys = list(X[0].keys())
        for i, r in enumerate(X):
            if list(r.keys()) != keys:
                raise DataError(
                    f"<list of dicts>: row {i} (counting from 0) has keys {list(r.keys())} but row 0 has {keys}; give every row "
                    f"the same keys."
                )
        return {str(k): [r[k] for r in X] for k in keys}, "<list of dicts>"
    return None, ""


def _hf_column(ds: Any, col: str) -> list[Any]:
    """One column of a ``datasets.Dataset``: class indices as class names, images as arrays."""
    feature = ds.features[col]
    values = ds[col]
    values = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
    if type(feature).__name__ == "ClassLabel":
        return [None if v is None or v < 0 else feature.int2str(int(v)) for v in values]
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel): multi-label
    if type(inner).__name__ == "ClassLabel":
        return [tuple(inner.int2str(int(v)) for v in row) for row in values]
    return values


def _as_list(values: Any, what: str) -> list[Any]:
    if isinstance(values, np.ndarray):
        return list(values) if values.ndim > 1 else values.tolist()
    if isinstance(values, (list, tuple)) or type(values).__name__ == "Series":
        return list(values)
    raise DataError(f"<dict of columns>: {what} is a {type(values).__name__}; each column must be a list.")


def _pick_columns(
    columns: dict[str, Any],
    modality: str,
    cols: tuple[str | None, str | None],
    source: str,
    flags: tuple[str, str],
    want_labels: bool,
) -> tuple[str, str | None]:
    names = list(columns)
    input_col, label_col = cols
    for given, role in zip(cols, flags, strict=True):
        if given is not None and given not in columns:
            raise DataError(f"{source}: no column {given!r} ({role}); the columns are {names}.")
    # found even when only inputs are wanted (predict), so that the label column is never taken for the inputs
    lcol = label_col if label_col is not None else _usual(names, LABEL_COLUMNS, exclude=input_col)
    icol = input_col
    if icol is None:
        rest = [c for c in names if c != lcol]
        usual = _usual(rest, TEXT_COLUMNS if modality == "text" else IMAGE_COLUMNS)
        icol = rest[0] if len(rest) == 1 else usual
    if icol is None:
        raise DataError(
            f"{source}: cannot tell which column holds the inputs among {names}; pass {flags[0]}=NAME (and "
            f"{flags[1]}=NAME for the labels)."
        )
    if lcol == icol:
        raise DataError(f"{source}: {flags[0]} and {flags[1]} both name {icol!r}; they must differ.")
    return icol, lcol if want_labels else None


def _usual(names: list[str], candidates: tuple[str, ...], exclude: str | None = None) -> str | None:
    lower = {c.lower(): c for c in names if c != exclude}
    return next((lower[c] for c in candidates if c in lower), None)


# -- sequences ----------------------------------------------------------------------------------------------------
def _sequence(X: Any) -> tuple[list[Any] | np.ndarray, str]:
    if isinstance(X, np.ndarray):
        if X.ndim == 0:
            raise DataError("got a 0-d array; pass a list or an array with one row per input.")
        return X, f"<array {X.shape}>"
    mod, name = type(X).__module__, type(X).__name__
    if mod.startswith("pandas") and name == "Series":
        return X.tolist(), f"<Series {X.name!r}>" if X.name is not None else "<Series>"
    if isinstance(X, (list, tuple)):
        return list(X), f"<{type(X).__name__}>"
    hint = " (a generator: wrap it in list())" if hasattr(X, "__next__") else ""
    raise DataError(
        f"cannot read inputs from a {mod}.{name}{hint}. Pass a list of texts or images, a numpy array, a pandas "
        f"DataFrame or Series, a datasets.Dataset, or a warmstart Dataset."
    )


def _texts(inputs: Any, source: str, flag: str, start: int = 0) -> list[str]:
    """``inputs`` as a list of strings, refused at the first that is not one (``start``: the first row's
    number, for a batch of a longer column)."""
    if isinstance(inputs, np.ndarray):
        if inputs.ndim != 1:
            raise DataError(
                f"{source}: a {inputs.ndim}-d array, but text needs one string per row (a 1-d array or a list)."
            )
        inputs = inputs.tolist()
    if not inputs:
        raise DataError(f"{source}: no rows.")
    for i, v in enumerate(inputs, start=start):
        if not isinstance(v, str):
            what = (
                "a missing value" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)[:40]
            )
            raise DataError(
                f"{source}: row {i} (counting from 0) is {what} ({type(v).__name__}), not a string. Text models read strings: "
                f"fill in or drop that row (or name the text column with {flag}=NAME)."
            )
    return list(inputs)


def _images(inputs: Any, labels: list[Any] | None, source: str, flag: str) -> Dataset:
    from .image import from_arrays

    if isinstance(inputs, np.ndarray) and inputs.ndim in (3, 4) and inputs.dtype != object:
        return Dataset(from_arrays(inputs, source=source).inputs, labels, "image", source)
    items = inputs.tolist() if isinstance(inputs, np.ndarray) and inputs.ndim == 1 else inputs
    if isinstance(items, np.ndarray):
        raise DataError(
            f"{source}: a {items.ndim}-d array; images must be (N, H, W) or (N, H, W, C) pixels, or one path per row."
        )
    if not items:
        raise DataError(f"{source}: no rows.")
    out = [image_item(v, i, source, flag) for i, v in enumerate(items)]
    return Dataset(out, labels, "image", source, list(range(1, len(out) + 1)))


def image_item(v: Any, i: int, source: str, flag: str = "--text-col") -> Any:
    """One image input as a ``Dataset`` holds it: a path as text, a PIL image or an (H, W[, C]) array (or nested
    lists of numbers, as a Hugging Face array column gives them) as (H, W, 3) uint8; anything else is refused,
    naming row ``i`` (counting from 0) of ``source``."""
    from .image import from_arrays, to_rgb8

    if isinstance(v, (str, Path)):
        return str(v)
    if type(v).__module__.startswith("PIL."):
        return to_rgb8(v)
    if isinstance(v, list) and v and isinstance(v[0], list):
        with contextlib.suppress(ValueError, TypeError):
            nested = np.asarray(v)
            v = nested if nested.dtype.kind in "uif" else v
    if isinstance(v, np.ndarray) and v.ndim in (2, 3):
        return from_arrays(v[None], source=f"{source} row {i}").inputs[0]
    shape = f" of shape {v.shape}" if isinstance(v, np.ndarray) else ""
    raise DataError(
        f"{source}: row {i} (counting from 0) is a {type(v).__name__}{shape}; an image is a file path, a PIL image or an "
        f"(H, W[, C]) array (or name the image column with {flag}=NAME)."
    )


# -- labels ---------------------------------------------------------------------------------------------------
def _labels(y: Any, source: str) -> list[Any]:
    if isinstance(y, Dataset):
        raise DataError(f"{y.source}: a Dataset given as y; validation rows go in as fit(train, val=...).")
    if isinstance(y, (str, bytes)):
        raise DataError(f"{source}: a single string; give one label per input, as a list.")
    if isinstance(y, np.ndarray):
        if y.ndim != 1:
            raise DataError(
                f"{source}: a {y.ndim}-d array of shape {y.shape}; give one label per row (a 1-d array), or a "
                f"list of label lists for multi-label data."
            )
        y = y.tolist()
    elif type(y).__name__ == "Series" or isinstance(y, (list, tuple)):
        y = list(y.tolist() if hasattr(y, "tolist") else y)
    else:
        raise DataError(
            f"{source}: cannot read labels from a {type(y).__name__}; pass a list or a 1-d array."
        )
    out = [_label(v, i, source) for i, v in enumerate(y)]
    kinds = {type(v) for v in out if not isinstance(v, tuple)}
    if len(kinds) > 1:
        raise DataError(
            f"{source}: the labels mix {sorted(k.__name__ for k in kinds)}; give every label the same type."
        )
    return out


def _label(v: Any, i: int, source: str) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (list, tuple, set, frozenset, np.ndarray)):
        parts = [_label(x, i, source) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
        return tuple(sorted({str(p) for p in parts}))
    if isinstance(v, (str, bool, int)):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        raise DataError(
            f"{source}: row {i} (counting from 0) has no label ({v!r}); label every row or drop the unlabelled ones."
        )
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise DataError(
        f"{source}: row {i} (counting from 0) has the label {v!r} ({type(v).__name__}); labels are class names or integers "
        f"(classification, not regression)."
    )
