"""Loading text classification data from CSV, TSV, Orange .tab, JSONL, JSON, Parquet and plain text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .datasets import Dataset

TEXT_COLUMNS = ("text", "sentence", "content", "document", "body", "review", "message", "question", "comment")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "y", "intent", "topic", "sentiment")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tab",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}


def read_table(path: str | Path, encoding: str = "utf-8", fmt: str | None = None) -> pd.DataFrame:
    """Read a table of strings; ``fmt`` defaults to the file's suffix (see ``FORMATS``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path (it is relative to {Path.cwd()}).")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}. "
            f"Use one of {', '.join(sorted(FORMATS))} or pass the format explicitly."
        )
    if fmt == "parquet":
        try:
            return pd.read_parquet(path).astype(object)
        except Exception as e:  # pyarrow raises many types; name the file either way
            raise DataError(f"{path}: not a readable Parquet file ({e}).") from e
    text = _decode(path, encoding)
    try:
        if fmt in ("csv", "tsv", "tab"):
            sep = "," if fmt == "csv" else "\t"
            df = pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, quoting=0 if fmt == "csv" else 3
            )
            if fmt == "tab":  # Orange: two more header rows (types and flags) after the column names
                df = df.iloc[2:].reset_index(drop=True)
            return df
        if fmt == "jsonl":
            return pd.DataFrame(_read_jsonl(path, text))
        if fmt == "json":
            obj = json.loads(text)
            rows = obj.get("data", obj) if isinstance(obj, dict) else obj
            if not isinstance(rows, (list, dict)) or (
                isinstance(rows, list) and not all(isinstance(r, dict) for r in rows)
            ):
                raise DataError(
                    f'{path}: JSON must be a list of objects like [{{"text": ..., "label": ...}}] (or '
                    f'{{"data": [...]}}); got a {type(rows).__name__}.'
                )
            return pd.DataFrame(rows)
        if fmt == "txt":
            return pd.DataFrame({"text": text.splitlines()})
    except DataError:
        raise
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: could not be parsed as {fmt.upper()} ({e}).") from e
    raise DataError(f"{path}: unknown format {fmt!r}.")


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid {encoding} (byte 0x{raw[e.start]:02x} at offset {e.start}). "
            f"Re-save the file as UTF-8, or pass its real encoding, e.g. --encoding latin-1."
        ) from e


def _read_jsonl(path: Path, text: str) -> list[dict]:
    return [
        json_record(line, path, f"line {n}")
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def json_record(line: str, path: Path, where: str) -> dict:
    """One JSONL line's object; a line that is not valid JSON or not an object is refused, naming the file and
    ``where`` the line is ("line 7", or a byte offset where lines are not counted)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: {where} is not valid JSON ({e.msg}). Each line must be one JSON object."
        ) from e
    if not isinstance(rec, dict):
        raise DataError(
            f'{path}: {where} is a JSON {type(rec).__name__}, expected an object like {{"text": ...}}.'
        )
    return rec


def _pick_column(
    df: pd.DataFrame,
    wanted: str | None,
    candidates: tuple[str, ...],
    role: str,
    path: Path,
    flag: str,
    exclude: str | None = None,
) -> str | None:
    cols = [str(c) for c in df.columns]
    if wanted is not None:
        if wanted in cols:
            return wanted
        raise DataError(
            f"{path}: no column {wanted!r} for the {role}; the columns are {cols}. Pass {flag} with one of them."
        )
    lower = {c.lower(): c for c in cols if c != exclude}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    return None


def load_text(
    path: str | Path,
    text_col: str | None = None,
    label_col: str | None = None,
    *,
    encoding: str = "utf-8",
    require_labels: bool = True,
    drop_empty: bool = False,
    fmt: str | None = None,
    label_sep: str | None = None,
) -> Dataset:
    """Load a text classification file.

    Columns default to the first of ``TEXT_COLUMNS`` / ``LABEL_COLUMNS`` present (case-insensitive).
    Empty texts or labels are an error naming the rows, unless ``drop_empty`` is set.

    Multi-label data: with ``label_sep`` (e.g. ``"|"``) each label cell is split into a tuple of labels, and an
    empty cell is a row with no labels; in JSON/JSONL a label that is a list is read as a tuple either way.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
        >>> _ = p.write_text("text,label\\ngood film,pos\\nawful,neg\\n")
        >>> ds = load_text(p)
        >>> ds.inputs, ds.labels
        (['good film', 'awful'], ['pos', 'neg'])
    """
    path = Path(path)
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise DataError(
            f"--encoding {encoding!r}: not a known text encoding; use e.g. utf-8 or latin-1."
        ) from e
    df = read_table(path, encoding=encoding, fmt=fmt)
    _refuse_duplicate_columns(df, path)
    if len(df) == 0:
        raise DataError(f"{path}: no data rows. The file needs a header and at least one row.")
    tcol, lcol = _columns(df, text_col, label_col, require_labels, path)
    values = df[tcol].tolist()
    odd = next(
        (
            i
            for i, v in enumerate(values)
            if not (isinstance(v, str) or v is None or (isinstance(v, float) and v != v))
        ),
        None,
    )
    if odd is not None:
        raise DataError(
            f"{path}: the text column {tcol!r} holds a {type(values[odd]).__name__} in data row {odd + 1} "
            f"({values[odd]!r:.40}), not text. Pass --text-col naming the column that holds the texts."
        )
    texts = [_cell(v) for v in values]
    raw = df[lcol].tolist() if lcol is not None else None
    multi = raw is not None and (label_sep is not None or any(isinstance(v, (list, tuple)) for v in raw))
    labels = None if raw is None else [_label_cell(v, label_sep) if multi else _cell(v) for v in raw]
    rows = list(range(1, len(texts) + 1))
    bad = [i for i, t in enumerate(texts) if not t.strip()]
    if labels is not None and not multi:  # a multi-label row may have no labels
        bad_l = [i for i, lab in enumerate(labels) if not lab.strip()]
        bad = sorted(set(bad) | set(bad_l))
    if bad:
        if not drop_empty:
            shown = ", ".join(str(rows[i]) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
            what = "text or label" if labels is not None else "text"
            raise DataError(
                f"{path}: {len(bad)} row(s) with an empty {what} (data rows {shown}, counting from 1 "
                f"after the header). Fill them in, or pass --drop-empty to skip them."
            )
        keep = sorted(set(range(len(texts))) - set(bad))
        texts = [texts[i] for i in keep]
        labels = None if labels is None else [labels[i] for i in keep]
        rows = [rows[i] for i in keep]
    return Dataset(texts, labels, "text", str(path), rows)


def _columns(
    df: pd.DataFrame, text_col: str | None, label_col: str | None, require_labels: bool, path: Path
) -> tuple[str, str | None]:
    """The text column and the label column (None when labels are not required and none is found)."""
    tcol = _pick_column(df, text_col, TEXT_COLUMNS, "text", path, "--text-col")
    if tcol is None:
        string_cols = [str(c) for c in df.columns if df[c].map(lambda v: isinstance(v, str)).all()]
        if len(string_cols) == 1 or (len(df.columns) == 1):
            tcol = string_cols[0] if string_cols else str(df.columns[0])
        else:
            raise DataError(
                f"{path}: cannot tell which column holds the text among {list(map(str, df.columns))}. "
                f"Pass --text-col NAME."
            )
    lcol = _pick_column(df, label_col, LABEL_COLUMNS, "label", path, "--label-col", exclude=tcol)
    if lcol is None and require_labels:
        others = [str(c) for c in df.columns if str(c) != tcol]
        if len(others) == 1:
            lcol = others[0]
        else:
            raise DataError(
                f"{path}: cannot tell which column holds the labels among {others or 'no other columns'}. "
                f"Pass --label-col NAME."
            )
    return tcol, lcol


def _refuse_duplicate_columns(df: pd.DataFrame, path: Path) -> None:
    """pandas renames a repeated header name ``text`` to ``text.1``; which one was meant is a guess, so refuse."""
    import re

    cols = [str(c) for c in df.columns]
    for c in cols:
        m = re.fullmatch(r"(.+)\.(\d+)", c)
        if m and m.group(1) in cols:
            raise DataError(
                f"{path}: the header names the column {m.group(1)!r} more than once; rename the copies so each "
                f"column has its own name."
            )


def _label_cell(v: object, sep: str | None) -> tuple[str, ...]:
    parts = [_cell(x) for x in v] if isinstance(v, (list, tuple)) else _cell(v).split(sep or "\x00")
    return tuple(sorted({p.strip() for p in parts if p.strip()}))


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
