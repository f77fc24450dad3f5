"""One entry point from a data spec to a ``Dataset``: what ``--data`` and ``--test`` accept.

A spec is a text table file (CSV/TSV/JSONL/Parquet/...), an image folder (one sub-folder per class), a folder
written by Hugging Face ``datasets``' ``save_to_disk`` (one split, or a ``DatasetDict`` of splits), ``hf:NAME``
for a Hugging Face hub data set (or a local folder of data files ``datasets.load_dataset`` reads), or the name
of a packaged data set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .datasets import Dataset
from .inputs import as_dataset


@dataclass(frozen=True)
class Columns:
    """How to read a spec's rows: the columns and, for text tables, their decoding."""

    text_col: str | None = None  # the input column (text, or images in a Hugging Face data set)
    label_col: str | None = None
    encoding: str = "utf-8"
    drop_empty: bool = False
    label_sep: str | None = None
    split: str | None = None  # the split of a Hugging Face data set to train on (default: train)


def load(
    spec: str, columns: Columns | None = None, require_labels: bool = True
) -> tuple[Dataset, Dataset | None]:
    """``(data, test)``: the rows of ``spec``, and its own test split where it has one (packaged data sets and
    Hugging Face data sets with a ``test`` split), else ``None``."""
    from .image import load_image_folder
    from .packaged import PACKAGED, load_packaged
    from .text import load_text

    cols = columns or Columns()
    if spec.startswith("hf:"):
        return _hub(spec[3:], cols, require_labels)
    path = Path(spec)
    if path.is_dir() and _saved_hf(path):
        return _saved(path, cols, require_labels)
    if cols.split is not None:
        raise DataError(
            f"--split {cols.split!r}: {spec} is not a Hugging Face data set; --split is for those."
        )
    if path.is_dir():
        return load_image_folder(path), None
    if path.is_file():
        data = load_text(
            path,
            cols.text_col,
            cols.label_col,
            encoding=cols.encoding,
            require_labels=require_labels,
            drop_empty=cols.drop_empty,
            label_sep=cols.label_sep,
        )
        return data, None
    if spec in PACKAGED:
        pk = load_packaged(spec)
        return pk.train, pk.test
    raise DataError(
        f"{spec}: no such file or folder, and not a packaged data set (`warmstart datasets` lists those) or "
        f"hf:NAME."
    )


def load_unlabeled(spec: str, modality: str, columns: Columns | None = None) -> Dataset:
    """Unlabelled rows (``--unlabeled``): a text file (a label column, if any, is dropped; TXT, CSV, TSV,
    JSONL, JSON arrays and Parquet files are read when their rows are used, ``stream.stream_texts``), a folder
    of images (sub-folders or not), a Hugging Face data set (its texts read when used, ``stream.stream_hf``)
    or a packaged data set's training rows, without their labels; the rows must be of ``modality`` (the
    labelled data's)."""
    from .stream import stream_hf, stream_texts, streams

    cols = columns or Columns()
    path = Path(spec)
    hf = spec.startswith("hf:") or (path.is_dir() and _saved_hf(path))
    split, where = _hf_training_split(spec, cols) if hf else (None, spec)
    if split is not None and len(split) and _hf_streams(split, cols):
        # read from the data set's (memory-mapped) files a chunk at a time when used, as a file's rows stream
        data = stream_hf(split, where, cols.text_col, _hf_modality(split, cols), cols.label_col)
    elif hf or (not path.exists() and spec):
        data, _ = load(spec, columns, require_labels=False)
    elif modality == "text" and streams(path, cols.encoding):  # read from the file when used, row by row
        data = stream_texts(path, cols.text_col, encoding=cols.encoding, drop_empty=cols.drop_empty)
    else:
        data = load_inputs(spec, modality, columns)
    if data.modality != modality:
        raise DataError(
            f"{spec}: holds {data.modality} rows but the labelled data is {modality}; give unlabelled rows of the "
            f"same kind."
        )
    if len(data) == 0:
        raise DataError(f"{spec}: no unlabelled rows.")
    return data.without_labels()


def load_inputs(spec: str, modality: str, columns: Columns | None = None) -> Dataset:
    """Rows to predict on: for images a folder (every image file under it) or one file; for text a table file,
    read with its label column when it has one (so predictions can be checked against it), else without."""
    from .image import IMAGE_SUFFIXES
    from .text import load_text

    cols = columns or Columns()
    path = Path(spec)
    if modality == "image":
        files = (
            sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        if not files:
            raise DataError(f"{path}: no image files to predict on.")
        return Dataset([str(p) for p in files], None, "image", str(path), [str(p) for p in files])
    if not path.is_file():
        raise DataError(f"{path}: no such file. Give a CSV/TSV/JSONL/Parquet/TXT file of texts.")
    read = dict(encoding=cols.encoding, require_labels=False, drop_empty=cols.drop_empty)
    try:
        return load_text(path, cols.text_col, cols.label_col, label_sep=cols.label_sep, **read)
    except DataError:
        if cols.label_col:
            raise
        return load_text(path, cols.text_col, None, **read)


def _saved_hf(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _datasets_module() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            "reading a Hugging Face data set needs the datasets package: pip install datasets"
        ) from e
    return datasets


def _saved(path: Path, cols: Columns, require_labels: bool) -> tuple[Dataset, Dataset | None]:
    ds = _datasets_module().load_from_disk(str(path))
    return _splits(ds, str(path), cols, require_labels)


def _hf_training_split(spec: str, cols: Columns) -> tuple[Any, str]:
    """The ``datasets.Dataset`` of a Hugging Face spec (``hf:NAME`` or a saved folder) that ``load`` would
    train on (``cols.split``, default ``train``), unread, and its name in messages."""
    if spec.startswith("hf:"):
        ds, where = _hub_dataset(spec[3:]), spec
    else:
        ds, where = _datasets_module().load_from_disk(spec), spec
    if not hasattr(ds, "keys"):
        if cols.split is not None:
            raise DataError(f"--split {cols.split!r}: {where} holds one split only; drop --split.")
        return ds, where
    split = _split_name(ds, where, cols)
    return ds[split], f"{where}[{split}]"


def _hub(name: str, cols: Columns, require_labels: bool) -> tuple[Dataset, Dataset | None]:
    return _splits(_hub_dataset(name), f"hf:{name}", cols, require_labels)


def _hub_dataset(name: str) -> Any:
    datasets = _datasets_module()
    if not name:
        raise DataError("hf: needs a data set name, e.g. hf:imdb (or hf:./folder of data files).")
    try:
        ds = datasets.load_dataset(name)
    except Exception as e:  # the hub client raises many types: offline, unknown name, bad files
        raise DataError(
            f"hf:{name}: could not load it with datasets.load_dataset ({type(e).__name__}: {str(e)[:300]}). Check "
            f"the name, and the network or HF_DATASETS_OFFLINE; a saved copy can be read as --data FOLDER."
        ) from e
    return ds


def _splits(ds: Any, where: str, cols: Columns, require_labels: bool) -> tuple[Dataset, Dataset | None]:
    """The training split (``cols.split``, default ``train``) and the ``test`` split when there is one."""
    if not hasattr(ds, "keys"):  # one split saved on its own
        if cols.split is not None:
            raise DataError(f"--split {cols.split!r}: {where} holds one split only; drop --split.")
        return _rows(ds, where, cols, require_labels), None
    names = list(ds.keys())
    split = _split_name(ds, where, cols)
    data = _rows(ds[split], f"{where}[{split}]", cols, require_labels)
    test = None
    if split != "test" and "test" in names:
        test = _rows(ds["test"], f"{where}[test]", cols, require_labels=False)
        if test.labels is None:  # a test split without labels (as some hub sets ship) cannot score the model
            test = None
    return data, test


def _split_name(ds: Any, where: str, cols: Columns) -> str:
    names = list(ds.keys())
    split = cols.split or "train"
    if split not in names:
        hint = "pass --split NAME" if cols.split is None else "pick one of them"
        raise DataError(f"{where}: no split {split!r}; the splits are {names}. {hint}.")
    return split


# Hugging Face feature types whose rows are images: files or bytes (``Image``) and arrays (H, W[, C])
HF_IMAGE_FEATURES = ("Image", "Array2D", "Array3D")


def _hf_streams(split: Any, cols: Columns) -> bool:
    """Whether ``stream_hf`` reads this split: texts, or images in an ``Image`` or array column (decoded or read
    when used); a split whose input column ``load`` cannot tell is read whole (``load`` says why)."""
    from .inputs import _pick_columns

    if _hf_modality(split, cols) == "text":
        return True
    names, flags = {c: None for c in split.column_names}, ("--text-col", "--label-col")
    try:
        column = _pick_columns(names, "image", (cols.text_col, cols.label_col), "", flags, want_labels=False)[
            0
        ]
    except DataError:
        return False  # ``load`` says why
    return type(split.features[column]).__name__ in HF_IMAGE_FEATURES


def _hf_modality(split: Any, cols: Columns) -> str:
    """ "image" when the input column (``cols.text_col``, or any column when it is not named) holds images (an
    ``Image`` or a 2-d or 3-d array column)."""
    kinds = {c: type(f).__name__ for c, f in split.features.items()}
    if cols.text_col is not None:
        return "image" if kinds.get(cols.text_col) in HF_IMAGE_FEATURES else "text"
    return "image" if set(kinds.values()) & set(HF_IMAGE_FEATURES) else "text"


def _rows(split: Any, where: str, cols: Columns, require_labels: bool) -> Dataset:
    if len(split) == 0:
        raise DataError(f"{where}: no rows.")
    return as_dataset(
        split,
        modality=_hf_modality(split, cols),
        input_col=cols.text_col,
        label_col=cols.label_col,
        need_labels=require_labels,
        source=where,
        flags=("--text-col", "--label-col"),
    )
