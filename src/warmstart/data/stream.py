"""Unlabelled texts read from their file when they are used, not held in memory (``stream_texts``).

Self-training predicts unlabelled rows a chunk at a time, and alignment and ``warmstart adapt`` read a sample
of them, so none needs every text at once; yet a file of unlabelled rows can be far larger than the labelled
data. ``stream_texts`` reads the file a line at a time, twice (its columns, then each row's text, checked as
``load_text`` checks it), and keeps only where each row starts in the file and its row number: 16 bytes a row.
``TextRows``, the ``Dataset``'s inputs, then reads texts from the file when asked, a chunk in one pass; a
subset of them (``Dataset.subset``: a chunk to predict, a sample, the pseudo-labelled rows) is read lazily too.

TXT, CSV, TSV, Orange .tab, JSONL and JSON files (a JSON document that is one array of objects; each element
found again from its byte) stream, in an encoding where a newline is the byte ``\\n`` (UTF-8, Latin-1, ...).
Parquet files stream too (``ParquetRows``: only the text column is read, a batch of rows at a time, and each
row's number kept: 8 bytes a row), and so do the texts of a Hugging Face data set (``stream_hf``, ``HFRows``:
its memory-mapped column, read a chunk of rows at a time). Other files (JSON of another shape, Excel-like
tables) are read whole by ``load_text``. The texts are ``load_text``'s (or ``load``'s), row for row.

Whatever reads every row of streamed data does it a chunk at a time (``chunks``, ``predict_proba_chunks``,
``CHUNK`` rows), so the texts are never all in memory; rows of several data sets joined
(``datasets.JoinedRows``) stay streamed.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "u.csv"
    >>> _ = p.write_text('id,text\\n1,"a film,\\nin two lines"\\n2,short\\n')
    >>> rows = stream_texts(p)
    >>> len(rows), rows.inputs[1], rows.inputs[0], rows.rows.tolist()
    (2, 'short', 'a film,\\nin two lines', [1, 2])
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..errors import DataError
from .datasets import Dataset, TakenRows

STREAM_FORMATS = ("txt", "csv", "tsv", "tab", "jsonl", "json", "parquet")
# rows predicted, encoded or tokenized at once where they may be streamed (``chunks``)
CHUNK = 4096


def streams(path: str | Path, encoding: str) -> bool:
    """Whether ``stream_texts`` reads this file (by its suffix and encoding)."""
    from .text import FORMATS

    if FORMATS.get(Path(path).suffix.lower()) == "parquet":  # binary: no encoding to check
        return Path(path).is_file()
    try:
        newline = "\n".encode(encoding) == b"\n"
    except LookupError:
        return False
    fmt = FORMATS.get(Path(path).suffix.lower())
    if not (newline and fmt in STREAM_FORMATS and Path(path).is_file()):
        return False
    if fmt != "json":
        return True
    try:
        return _json_shape(Path(path), encoding) is not None
    except DataError:  # broken JSON is read whole, by ``load_text``, which says what is wrong with it
        return False


# the shape of the JSON documents scanned so far, by path, encoding and the file's size and time: ``streams``
# and ``stream_texts`` ask in turn, and a table of columns costs a pass over the file to tell
_SHAPES: dict[tuple[str, str, tuple[int, int]], tuple[str, dict] | None] = {}


def _json_shape(path: Path, encoding: str) -> tuple[str, dict] | None:
    """``_scan_json_shape`` of the file as it is now, scanned once."""
    key = (str(Path(path).resolve()), encoding, _stamp(path))
    if key not in _SHAPES:
        if len(_SHAPES) > 64:
            _SHAPES.clear()
        _SHAPES[key] = _scan_json_shape(path, encoding)
    return _SHAPES[key]


def _scan_json_shape(path: Path, encoding: str) -> tuple[str, dict] | None:
    """How a JSON document streams, found in one pass that holds one block and one scalar value at a time:
    ``("records", {})`` for one array of objects (``[{...}, ...]``) or an object whose ``"data"`` key holds
    one (the keys before it skipped); ``("columns", {key: (kind, rows, every value text)})`` for a table of
    columns without a ``"data"`` key, as pandas writes it (``{"text": [...], "label": [...]}``, or objects
    ``{"text": {"0": ...}}``): every value an array, or every value an object with the same keys in the same
    order, all of one length. None for any other document (``load_text`` reads it whole and says what it
    holds); broken JSON is refused (``DataError``) naming the byte."""
    with open(path, "rb") as f:
        doc = _JsonScan(f, 0, encoding, path)
        first = doc.skip_space()
        if first == "[":
            return "records", {}
        if first != "{":
            return None
        doc.step("{", "'{'")
        columns: dict[str, tuple[str, int, bool, int]] = {}
        if doc.skip_space() == "}":
            return None
        while True:
            key = doc.key("a key")
            if key == "data":  # records; the first element read refuses a "data" that is not an array of them
                f.seek(0)
                next(_json_elements(f, 0, encoding, path), None)
                return "records", {}
            kind = doc.skip_space()
            rows, text, order = doc.skip(f"value of key {key!r}")
            columns[key] = (kind if kind in ("[", "{") else "scalar", rows, text, order)
            if doc.skip_space() == "}":
                break
            doc.step(",", f"',' or '}}' after the value of key {key!r}")
    shapes = {(kind, rows, order if kind == "{" else 0) for kind, rows, _, order in columns.values()}
    if len(shapes) != 1 or next(iter(shapes))[0] == "scalar":
        return None  # scalars, or columns of other kinds, lengths or keys: load_text reads them or says why
    return "columns", {k: (kind, rows, text) for k, (kind, rows, text, _) in columns.items()}


def stream_texts(
    path: str | Path, text_col: str | None = None, *, encoding: str = "utf-8", drop_empty: bool = False
) -> Dataset:
    """The unlabelled texts of a TXT/CSV/TSV/.tab/JSONL/Parquet file as a ``Dataset`` whose inputs are read
    from the file when used (``TextRows``, ``ParquetRows``). Columns, refusals and row numbers are
    ``load_text``'s."""
    from .text import FORMATS

    path = Path(path)
    fmt = FORMATS[path.suffix.lower()]
    if fmt == "parquet":
        return _stream_parquet(path, text_col, drop_empty)
    if fmt == "json" and (shape := _json_shape(path, encoding)) is not None and shape[0] == "columns":
        cols = shape[1]
        column = _choose_text_column(path, list(cols), text_col, lambda: [k for k, c in cols.items() if c[2]])
        fmt = "json" + cols[column][0]  # "json[" or "json{": the text column's elements, read as records
    else:
        column = _text_column(path, fmt, encoding, text_col)
    # 8 bytes a row as they grow (a list would hold a Python number of 36 bytes each)
    offsets, parts, numbers, bad = array("q"), array("i"), array("q"), []
    for number, (at, part, value) in enumerate(_records(path, fmt, encoding, column), start=1):
        text = _text(value, path, number, column)
        if not text.strip():
            bad.append(number)
            continue
        offsets.append(at)
        parts.append(part)
        numbers.append(number)
    _refuse_empty(path, bad, drop_empty)
    rows = TextRows(
        path, fmt, encoding, column, np.frombuffer(offsets, np.int64), np.frombuffer(parts, np.int32)
    )
    return Dataset(rows, None, "text", str(path), np.frombuffer(numbers, np.int64))


class _FileRows(TakenRows):
    """What the streamed rows of a file share: indexing and slicing through the subclass's ``take``
    (``TakenRows``), iteration a chunk at a time, and the checks before a read (the rows asked for exist; the
    file is as it was when read)."""

    path: Path
    _stamp: tuple[int, int]

    def _chunk(self) -> int:
        return CHUNK

    def __iter__(self) -> Iterator[str]:
        for part in taken_chunks(self, self._chunk()):
            yield from part

    def _to_read(self, indices: Any) -> np.ndarray:
        """``_checked`` with negative positions counted from the end, once the file is known unchanged (only
        for a read of at least one row)."""
        idx = self._checked(indices)
        self._check_unchanged()
        return np.where(idx < 0, idx + len(self), idx)

    def _check_unchanged(self) -> None:
        if _stamp(self.path) != self._stamp:
            raise DataError(
                f"{self.path}: the file changed after its unlabelled rows were read; load it again."
            )


class TextRows(_FileRows):
    """Texts of a file, each read from where its row starts (``offsets``; ``parts``: which of a TXT line's
    pieces, where a line holds other line breaks) when it is asked for; a chunk (``take``) in one pass. The file
    must not change meanwhile: its size and time are checked at each read."""

    def __init__(
        self, path: Path, fmt: str, encoding: str, column: Any, offsets: np.ndarray, parts: np.ndarray
    ) -> None:
        self.path, self.fmt, self.encoding, self.column = Path(path), fmt, encoding, column
        self.offsets, self.parts = offsets, parts
        self._stamp = _stamp(self.path)

    def __len__(self) -> int:
        return len(self.offsets)

    def select(self, indices: Any) -> TextRows:
        """The rows at ``indices``, still read from the file when used (``Dataset.subset`` of streamed rows: a
        chunk, a sample or the pseudo-labelled rows cost 16 bytes a row until read)."""
        idx = self._checked(indices)
        view = TextRows(self.path, self.fmt, self.encoding, self.column, self.offsets[idx], self.parts[idx])
        view._stamp = self._stamp  # the file as it was read, not as it is now
        return view

    def take(self, indices: Any) -> list[str]:
        """The texts at ``indices`` (in their order), read in file order, each record parsed once."""
        if not len(np.asarray(indices).reshape(-1)):
            return []
        idx = self._to_read(indices)
        order = np.argsort(idx, kind="stable")
        wanted = idx[order]
        keys = sorted({(int(self.offsets[i]), int(self.parts[i])) for i in np.unique(wanted).tolist()})
        got = self._read(keys)
        out: list[Any] = [None] * len(idx)
        for j, i in zip(order.tolist(), wanted.tolist(), strict=True):
            out[j] = got[(int(self.offsets[i]), int(self.parts[i]))]
        return out

    def _read(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """The texts at ``keys`` (sorted (offset, piece) pairs): records are read on from one to the next where
        they lie close, and the file is sought where they do not."""
        got: dict[tuple[int, int], str] = {}
        with open(self.path, "rb") as f:
            records: Iterator[tuple[int, int, Any]] | None = None
            at = -1
            for key in keys:
                if records is None or key[0] - at > SEEK_BYTES:
                    f.seek(key[0])
                    records = _records_from(f, key[0], self.fmt, self.encoding, self.column, key[1])
                found = None
                for record in records:
                    at = record[0]
                    if record[:2] >= key:
                        found = record
                        break
                if found is None or found[:2] != key:
                    raise DataError(
                        f"{self.path}: no row starts at byte {key[0]} any more; load the file again."
                    )
                got[key] = _text(found[2], self.path, f"the row at byte {key[0]}", self.column)
        return got


class HFRows(_FileRows):
    """One column of a Hugging Face ``datasets.Dataset`` (its Arrow files are memory-mapped, not read): texts,
    or images decoded when asked for (``modality``), each from its row (``index``: the row's place in the data
    set); a chunk (``take``) in one read of that column alone."""

    def __init__(
        self, table: Any, column: str, index: np.ndarray, modality: str = "text", source: str = ""
    ) -> None:
        self.table, self.column, self.index = table, column, index  # ``table``: the input column alone
        self.modality, self.source = modality, source

    def __len__(self) -> int:
        return len(self.index)

    def _check_unchanged(self) -> None:  # a data set's files are written once, by ``datasets``
        pass

    def select(self, indices: Any) -> HFRows:
        """The rows at ``indices``, still read from the data set when used (``Dataset.subset``)."""
        return HFRows(self.table, self.column, self.index[self._checked(indices)], self.modality, self.source)

    def take(self, indices: Any) -> list[Any]:
        """The inputs at ``indices`` (in their order), read in the data set's order; images as ``load`` holds
        them ((H, W, 3) uint8), refused as it refuses them."""
        if not len(np.asarray(indices).reshape(-1)):
            return []
        rows = self.index[self._to_read(indices)]
        wanted = np.unique(rows).tolist()
        values = self.table[wanted][self.column]
        if self.modality == "image":
            from .inputs import image_item

            values = [image_item(v, r, self.source) for r, v in zip(wanted, values, strict=True)]
        got = dict(zip(wanted, values, strict=True))
        return [got[int(i)] for i in rows.tolist()]


def stream_hf(
    split: Any, where: str, input_col: str | None, modality: str = "text", label_col: str | None = None
) -> Dataset:
    """The inputs of a Hugging Face data set's split (a ``datasets.Dataset``) as a ``Dataset`` whose inputs are
    read from it when used (``HFRows``): the column ``load`` would read (``input_col``, else the usual names; the
    label column, ``label_col`` or a usual name, is never taken). Texts are checked in one pass a batch at a
    time as ``load`` checks them (every row a string); images are decoded, and checked, when used. Inputs, rows
    and source name are ``load``'s."""
    from .inputs import _pick_columns, _texts

    flags = ("--text-col", "--label-col")
    names = {c: None for c in split.column_names}
    column = _pick_columns(names, modality, (input_col, label_col), where, flags, want_labels=False)[0]
    source = f"{where} column {column!r}"
    table = split.select_columns([column])
    if modality == "text":
        for start in range(0, len(table), PARQUET_BATCH):
            _texts(table[start : start + PARQUET_BATCH][column], source, flags[0], start=start)
    rows = HFRows(table, column, np.arange(len(table), dtype=np.int64), modality, source)
    return Dataset(rows, None, modality, source, np.arange(1, len(table) + 1, dtype=np.int64))


def streamed(data: Dataset) -> bool:
    """Whether ``data``'s inputs are read from their files when used (``TextRows``, ``ParquetRows``, ``HFRows``,
    or ``datasets.JoinedRows`` of any of them)."""
    return hasattr(data.inputs, "select")


def chunks(data: Dataset, size: int | None = None) -> Iterator[tuple[int, Dataset]]:
    """``data`` as (first row, subset) of ``size`` rows at a time: what is predicted, encoded and tokenized a
    chunk at a time so that streamed rows are never all in memory (the same chunks each time, so the same
    feature-cache entries); ``size`` defaults to ``CHUNK``."""
    size = size or CHUNK
    for start in range(0, len(data), size):
        yield start, data.subset(range(start, min(start + size, len(data))))


def taken_chunks(rows: Any, size: int | None = None) -> Iterator[list[Any]]:
    """Streamed inputs (``rows``: anything read through ``take``) as lists of ``size`` of them in order
    (default ``CHUNK``): what tokenizing and counting read at once."""
    size = size or CHUNK
    for start in range(0, len(rows), size):
        yield rows.take(range(start, min(start + size, len(rows))))


def chunk_parts(data: Dataset, rows: np.ndarray) -> list[tuple[Dataset, np.ndarray]]:
    """``rows`` of ``data`` (sorted) as (chunk, row indices within it): ``FeatureCache.get``'s
    ``feature_parts``, so that each chunk is encoded (and cached) on its own."""
    parts = []
    for start, chunk in chunks(data):
        inside = rows[(rows >= start) & (rows < start + len(chunk))] - start
        if len(inside):
            parts.append((chunk, inside))
    return parts


def predict_proba_chunks(est: Any, data: Dataset) -> np.ndarray:
    """``est.predict_proba`` of every row of ``data``: of streamed rows a chunk at a time, of rows in memory at
    once."""
    if not streamed(data):
        return np.asarray(est.predict_proba(data))
    return np.concatenate([np.asarray(est.predict_proba(chunk)) for _, chunk in chunks(data)])


def _refuse_empty(path: Path, bad: list[int], drop_empty: bool) -> None:
    """Refuse rows with an empty text (data row numbers ``bad``) unless they are to be dropped."""
    if bad and not drop_empty:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise DataError(
            f"{path}: {len(bad)} row(s) with an empty text (data rows {shown}, counting from 1 after the "
            f"header). Fill them in, or pass --drop-empty to skip them."
        )


class ParquetRows(_FileRows):
    """Texts of a Parquet file's column ``column``, each read when asked for from its row (``index``: the row's
    place in the file, from 0); a chunk (``take``) in one pass over the row groups that hold it, a batch of
    ``PARQUET_BATCH`` rows at a time, reading no other column. The file must not change meanwhile."""

    def __init__(self, path: Path, column: str, index: np.ndarray) -> None:
        self.path, self.column, self.index = Path(path), column, index
        self._stamp = _stamp(self.path)
        self._cursor = _ParquetCursor()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:  # a copy in another process opens the file again (a lock does not pickle)
        return {**self.__dict__, "_cursor": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _cursor=_ParquetCursor())

    def _chunk(self) -> int:
        return PARQUET_BATCH

    def select(self, indices: Any) -> ParquetRows:
        """The rows at ``indices``, still read from the file when used (``Dataset.subset``)."""
        view = ParquetRows(self.path, self.column, self.index[self._checked(indices)])
        view._stamp, view._cursor = self._stamp, self._cursor
        return view

    def take(self, indices: Any) -> list[str]:
        """The texts at ``indices`` (in their order), read in file order."""
        if not len(np.asarray(indices).reshape(-1)):
            return []
        idx = self._to_read(indices)
        wanted = np.unique(self.index[idx])  # rows of the file, sorted
        got = dict(zip(wanted.tolist(), self._read(wanted), strict=True))
        return [got[int(i)] for i in self.index[idx].tolist()]

    def _read(self, wanted: np.ndarray) -> list[str]:
        """The texts of the file's rows ``wanted`` (sorted, distinct), from the row groups that hold them."""
        import pyarrow as pa

        out: list[str] = []
        with self._cursor.lock:
            cur = self._cursor
            starts = cur.open(self.path)
            for g in np.unique(np.searchsorted(starts, wanted, side="right") - 1).tolist():
                rows = wanted[(wanted >= starts[g]) & (wanted < starts[g + 1])]
                if cur.group != g or cur.batch is None or rows[0] < cur.base:  # else: go on from where it is
                    cur.start(g, int(starts[g]), self.column)
                while cur.batch is not None:
                    end = cur.base + cur.batch.num_rows
                    lo, hi = np.searchsorted(rows, [cur.base, end])
                    if hi > lo:
                        values = cur.batch.column(0).take(pa.array(rows[lo:hi] - cur.base)).to_pylist()
                        out += [
                            _text(v, self.path, int(r) + 1, self.column)
                            for r, v in zip(rows[lo:hi], values, strict=True)
                        ]
                    if end > rows[-1]:  # the batch stays: the next chunk may start in it
                        break
                    cur.advance()
        return out


class _ParquetCursor:
    """Where reading a Parquet file's text column has got to: the row group, its batches still to come and the
    batch read last (from row ``base``). Kept between reads and shared by a file's row views, so that chunks
    asked for in file order (self-training's predictions) cost one pass over the file, not one each."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.file: Any = None
        self.group, self.base, self.batch, self.batches = -1, 0, None, None

    def open(self, path: Path) -> np.ndarray:
        """The file open, and where each row group starts (and the end)."""
        if self.file is None:
            self.file = _parquet_file(path)
        md = self.file.metadata
        return np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])

    def start(self, group: int, base: int, column: str) -> None:
        self.group, self.base = group, base
        self.batches = self.file.iter_batches(PARQUET_BATCH, row_groups=[group], columns=[column])
        self.batch = next(self.batches, None)

    def advance(self) -> None:
        self.base += self.batch.num_rows
        self.batch = next(self.batches, None)


# a Parquet file's rows are read this many at a time (the memory a streamed read of one column holds), through a
# read buffer of this many bytes
PARQUET_BATCH = 8192
PARQUET_BUFFER = 1 << 20


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq

        # buffered: a row group's column is read a page at a time, not whole
        return pq.ParquetFile(path, buffer_size=PARQUET_BUFFER)
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from e
    except Exception as e:  # pyarrow raises many types; name the file either way
        raise DataError(f"{path}: not a readable Parquet file ({e}).") from e


def _stream_parquet(path: Path, text_col: str | None, drop_empty: bool) -> Dataset:
    """``stream_texts`` of a Parquet file: one pass over its text column checks every row as ``load_text``
    does and keeps the rows' places."""
    import pyarrow as pa

    column, index, numbers, bad = _parquet_pass(path, text_col)
    pa.default_memory_pool().release_unused()  # the pass's buffers, which the pool would keep for later
    _refuse_empty(path, bad, drop_empty)
    rows = ParquetRows(path, column, np.frombuffer(index, np.int64))
    return Dataset(rows, None, "text", str(path), np.frombuffer(numbers, np.int64))


def _parquet_pass(path: Path, text_col: str | None) -> tuple[str, array, array, list[int]]:
    """The text column, and in one pass over it: the place (from 0) and the number (from 1) of each row with a
    text, and the numbers of those without."""
    pf = _parquet_file(path)
    column = _parquet_column(path, pf, text_col)
    index, numbers, bad = array("q"), array("q"), []
    number = 0
    for batch in pf.iter_batches(PARQUET_BATCH, columns=[column]):
        for value in batch.column(0).to_pylist():
            number += 1
            if not _text(value, path, number, column).strip():
                bad.append(number)
                continue
            index.append(number - 1)
            numbers.append(number)
    return column, index, numbers, bad


def _parquet_column(path: Path, pf: Any, text_col: str | None) -> str:
    """A Parquet file's text column, by ``load_text``'s rule (``_choose_text_column``); a column whose every
    value is text is a string column without nulls (counted in one pass over those columns, only if needed)."""
    cols = [str(c) for c in pf.schema_arrow.names]
    if len(set(cols)) < len(cols):
        raise DataError(
            f"{path}: the file names a column more than once; rename the copies so each column has its own name."
        )
    if pf.metadata.num_rows == 0:
        raise DataError(f"{path}: no data rows. The file needs at least one row.")

    def strings() -> list[str]:
        import pyarrow as pa

        typed = [
            c
            for c, f in zip(cols, pf.schema_arrow, strict=True)
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        nulls = dict.fromkeys(typed, 0)
        if typed:
            for batch in pf.iter_batches(PARQUET_BATCH, columns=typed):
                for c, col in zip(typed, batch.columns, strict=True):
                    nulls[c] += col.null_count
        return [c for c in typed if nulls[c] == 0]

    return _choose_text_column(path, cols, text_col, strings)


# rows of a chunk that lie within this many bytes of the one before are reached by reading on, not by seeking
SEEK_BYTES = 1 << 16
# bytes of a JSON document decoded at a time (``_json_elements``)
JSON_BLOCK = 1 << 20


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _text_column(path: Path, fmt: str, encoding: str, text_col: str | None) -> Any:
    """The text column: None for TXT, a field index for CSV/TSV/.tab, a key for JSONL (``load_text``'s rule:
    ``--text-col``, else the first of ``TEXT_COLUMNS`` present, else the only (string) column)."""
    if fmt == "txt":
        return None
    if fmt in ("jsonl", "json"):
        names: dict[str, bool] = {}  # key -> whether every value so far is a string
        for _, _, rec in _records(path, fmt, encoding, None):
            for k, v in rec.items():
                names[str(k)] = names.get(str(k), True) and isinstance(v, str)
        cols, strings = list(names), [k for k, s in names.items() if s]
    else:
        with open(path, "rb") as f:
            header = next(_csv_rows(f, 0, fmt, encoding, path), None)
        if header is None:
            raise DataError(f"{path}: no data rows. The file needs a header and at least one row.")
        cols = header[1]
        if len(set(cols)) < len(cols):
            raise DataError(
                f"{path}: the header names a column more than once; rename the copies so each column has its "
                f"own name."
            )
        strings = cols
    name = _choose_text_column(path, cols, text_col, lambda: strings)
    return name if fmt in ("jsonl", "json") else cols.index(name)


def _choose_text_column(path: Path, cols: list[str], text_col: str | None, strings: Any) -> str:
    """``load_text``'s rule for the text column among ``cols``: ``--text-col`` (which must be one of them), else
    the first of ``TEXT_COLUMNS`` present (any case), else the only column, else the only one whose every value
    is text (``strings()``, asked only then: it may read the file)."""
    from .text import TEXT_COLUMNS

    if text_col is not None:
        if text_col not in cols:
            raise DataError(
                f"{path}: no column {text_col!r} for the text; the columns are {cols}. Pass --text-col with one "
                f"of them."
            )
        return text_col
    lower = {c.lower(): c for c in cols}
    name = next((lower[c] for c in TEXT_COLUMNS if c in lower), None)
    if name is not None:
        return name
    if len(cols) == 1:
        return cols[0]
    texts = strings()
    if len(texts) == 1:
        return texts[0]
    raise DataError(f"{path}: cannot tell which column holds the text among {cols}. Pass --text-col NAME.")


def _records(path: Path, fmt: str, encoding: str, column: Any) -> Iterator[tuple[int, int, Any]]:
    """Every data record of the file: (where it starts, which piece of its line, its value: a TXT line's
    text, the text field of a CSV/TSV row, a JSONL object, or its field ``column``)."""
    with open(path, "rb") as f:
        yield from _records_from(f, 0, fmt, encoding, column, 0, header=fmt in ("csv", "tsv", "tab"))


def _records_from(
    f: Any, at: int, fmt: str, encoding: str, column: Any, part: int, header: bool = False
) -> Iterator[tuple[int, int, Any]]:
    path = Path(f.name)
    if fmt == "txt":
        for start, line, _ in _lines(f, at, encoding, path):
            pieces = line.splitlines() or [""]
            for p in range(part, len(pieces)):
                yield start, p, pieces[p]
            part = 0
        return
    if fmt == "json":
        for start, rec in _json_elements(f, at, encoding, path):
            yield start, 0, rec if column is None else rec.get(column)
        return
    if fmt in ("json[", "json{"):  # a table of columns: the elements of column ``column``
        for start, value in _json_column(f, at, encoding, path, column, fmt[-1]):
            yield start, 0, value
        return
    if fmt == "jsonl":
        from .text import json_record

        for n, (start, line, _) in enumerate(_lines(f, at, encoding, path), start=1):
            if line.strip():
                rec = json_record(line, path, f"the line at byte {start} (line {n} from there)")
                yield start, 0, rec if column is None else rec.get(column)
        return
    rows = _csv_rows(f, at, fmt, encoding, path)
    width = None
    if header:
        _, names = next(rows, (0, None))
        if names is None:
            return
        width = len(names)
        if fmt == "tab":  # Orange: two more header rows (types and flags)
            next(rows, None)
            next(rows, None)
    for start, fields in rows:
        if width is not None and len(fields) > width:
            raise DataError(
                f"{path}: the row at byte {start} has {len(fields)} fields but the header names {width}; "
                f"quote fields that hold the separator."
            )
        yield start, 0, fields[column] if column is not None and column < len(fields) else ""


def _json_elements(f: Any, at: int, encoding: str, path: Path) -> Iterator[tuple[int, dict]]:
    """The objects of a JSON document that is one array of them (``[{"text": ...}, ...]``) or an object whose
    ``"data"`` key holds that array, each with the byte where it starts: from the file's start (``at`` 0: the
    array's ``[`` first, the object's other keys skipped a value at a time), or from the element starting at
    byte ``at``. The file is decoded a block at a time and each element parsed on its own (``raw_decode``), so
    only one block and one element are in memory; the array's ``,`` and ``]`` are checked."""
    doc = _JsonScan(f, at, encoding, path)
    if at == 0:
        if doc.skip_space() == "{":  # {"data": [...]}: skip the keys before it
            doc.enter_key("data")
        doc.step("[", "'['")
        if doc.skip_space() == "]":
            return
    while True:
        if doc.skip_space() != "{":
            doc.expect('an object ({"text": ...})')
        here = doc.start
        yield here, doc.value("element")
        if doc.skip_space() == "]":
            return
        doc.step(",", "',' or ']' after the element")


class _JsonScan:
    """A JSON document read from a binary file a block (``JSON_BLOCK`` bytes) at a time: ``buf[i]`` is the
    character at byte ``start`` of the file (``_json_elements``)."""

    def __init__(self, f: Any, at: int, encoding: str, path: Path) -> None:
        self.f, self.encoding, self.path = f, encoding, path
        self.decoder, self.codec = json.JSONDecoder(), codecs.getincrementaldecoder(encoding)()
        self.buf, self.i, self.start, self.eof = "", 0, at, False

    def fill(self, need: int) -> bool:
        """Whether ``buf`` holds ``need`` characters from ``i`` (reading blocks of the file until it does)."""
        while len(self.buf) - self.i < need and not self.eof:
            block = self.f.read(JSON_BLOCK)
            self.eof = not block
            try:
                self.buf = self.buf[self.i :] + self.codec.decode(block, final=self.eof)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{self.path}: the text after byte {self.start} is not valid {self.encoding}. Re-save the "
                    f"file as UTF-8, or pass its real encoding, e.g. --encoding latin-1."
                ) from e
            self.i = 0
        return len(self.buf) - self.i >= need

    def skip_space(self) -> str:
        """The next character that is not white space (moving ``i`` and ``start`` to it), or "" at the end."""
        while self.fill(1):
            buf, j = self.buf, self.i
            while j < len(buf) and buf[j] in " \t\r\n":
                j += 1
            self.start += j - self.i  # white space is one byte a character in the encodings that stream
            self.i = j
            if j < len(buf):
                return buf[j]
        return ""

    def expect(self, what: str) -> NoReturn:
        raise DataError(
            f"{self.path}: expected {what} at byte {self.start}; a JSON file streams as one array of objects, "
            f'an object whose "data" key holds one, or an object of columns.'
        )

    def value(self, what: str) -> Any:
        """The JSON value at ``i`` (reading on while the buffer holds only part of it); moves past it."""
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.i)
                break
            except json.JSONDecodeError as e:
                if not self.fill(len(self.buf) - self.i + 1):
                    raise DataError(
                        f"{self.path}: the {what} at byte {self.start} is not valid JSON ({e.msg})."
                    ) from e
        self.start += len(self.buf[self.i : end].encode(self.encoding))
        self.i = end
        return obj

    def step(self, char: str, what: str) -> None:
        """Move past ``char``, the next character that is not white space (else refuse, naming ``what``)."""
        if self.skip_space() != char:
            self.expect(what)
        self.i, self.start = self.i + 1, self.start + 1

    def key(self, what: str) -> str:
        """The object key at ``i`` (after white space) and its ``:``, moving past both; refused, naming ``what``,
        where no key is."""
        if self.skip_space() != '"':
            self.expect(what)
        key = self.value("key")
        self.step(":", "':' after a key")
        return key

    def enter_key(self, name: str) -> None:
        """From an object's ``{``, skip its keys up to ``name`` (refused if there is none), stopping before its
        value; the values skipped are read an element at a time (``skip``)."""
        self.step("{", "'{'")
        while True:
            key = self.key(f"a {name!r} key")
            if key == name:
                return
            self.skip_space()
            self.skip(f"value of key {key!r}")
            self.step(",", f"',' after the value of key {key!r} (and a {name!r} key)")

    def skip(self, what: str) -> tuple[int, bool, int]:
        """Move past the value at ``i`` (after white space), an array's or object's elements parsed one at a time,
        so a large one is never in memory at once. Returns, for an array or object, how many elements it holds,
        whether every one is a string, and a hash of an object's keys in order (0 for an array)."""
        open_ = self.skip_space()
        if open_ not in ("[", "{"):
            self.value(what)
            return 0, False, 0
        close = "]" if open_ == "[" else "}"
        self.step(open_, f"'{open_}'")
        count, text, order = 0, True, 0
        if self.skip_space() == close:
            self.step(close, f"'{close}'")
            return 0, True, 0
        while True:
            if open_ == "{":
                order = hash((order, self.key(f"a key in the {what}")))
            text &= self.skip_space() == '"'
            self.skip(f"element of the {what}")
            count += 1
            if self.skip_space() == close:
                self.step(close, f"'{close}'")
                return count, text, order
            self.step(",", f"',' or '{close}' in the {what}")


def _json_column(
    f: Any, at: int, encoding: str, path: Path, column: str, kind: str
) -> Iterator[tuple[int, Any]]:
    """The values of column ``column`` of a JSON table of columns (``_json_shape``), an array (``kind`` "[") or
    an object of rows ("{"), each with the byte where it starts: from the file's start (``at`` 0: the keys
    before ``column`` skipped) or from the value starting at byte ``at``; one value parsed at a time."""
    doc = _JsonScan(f, at, encoding, path)
    close = "]" if kind == "[" else "}"
    if at == 0:
        doc.enter_key(column)
        doc.step(kind, f"'{kind}'")
        if doc.skip_space() == close:
            return
        if kind == "{":
            doc.key("a key")
    while True:
        doc.skip_space()
        here = doc.start
        yield here, doc.value("element")
        if doc.skip_space() == close:
            return
        doc.step(",", f"',' or '{close}' after the element")
        if kind == "{":
            doc.key("a key")


def _csv_rows(f: Any, at: int, fmt: str, encoding: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """The non-blank CSV/TSV records from byte ``at``, each with the byte where it starts (a quoted field may
    span lines)."""
    lines = _lines(f, at, encoding, path)
    state = {"end": at}

    def feed() -> Iterator[str]:
        for start, line, size in lines:
            state["end"] = start + size
            yield line

    if fmt == "csv":
        reader = csv.reader(feed(), strict=False)
    else:
        reader = csv.reader(feed(), delimiter="\t", quoting=csv.QUOTE_NONE)
    while True:
        start = state["end"]
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(
                f"{path}: the row at byte {start} could not be parsed as {fmt.upper()} ({e})."
            ) from e
        if fields:
            yield start, fields


def _lines(f: Any, at: int, encoding: str, path: Path) -> Iterator[tuple[int, str, int]]:
    """The file's lines from byte ``at`` (``f`` is there), decoded, each with the byte where it starts and its
    length in bytes."""
    while raw := f.readline():
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: the line at byte {at} is not valid {encoding} (byte 0x{raw[e.start]:02x}). Re-save the "
                f"file as UTF-8, or pass its real encoding, e.g. --encoding latin-1."
            ) from e
        yield at, line, len(raw)
        at += len(raw)


def _text(value: Any, path: Path, where: int | str, column: Any) -> str:
    """A record's text as ``load_text`` reads its cell: missing or null is empty; anything but text is refused,
    naming ``where`` it is (a data row's number, or the row's place in the file)."""
    from .text import _cell

    if not (isinstance(value, str) or value is None or (isinstance(value, float) and value != value)):
        raise DataError(
            f"{path}: the text column {column!r} holds a {type(value).__name__} in {_place(where)} "
            f"({value!r:.40}), not text. Pass --text-col naming the column that holds the texts."
        )
    return _cell(value)


def _place(where: int | str) -> str:
    return f"data row {where}" if isinstance(where, int) else where
