"""Unlabelled texts read from their file when used (data/stream.py): the same texts, rows and refusals as the
whole-file loader, read back in any order, and used by self-training through ``--unlabeled``."""

import json
import os
import pickle

import numpy as np
import pytest

from warmstart.data import Dataset
from warmstart.data.load import load_unlabeled
from warmstart.data.stream import TextRows, stream_texts, streams
from warmstart.data.text import load_text
from warmstart.errors import DataError

ODD = [
    "plain",
    'with "quotes", and a comma',
    "two\nlines",
    "tab\there",
    "naïve café 東京",
    " spaced ",
    "x" * 300,
]


def write(path, fmt, texts, encoding="utf-8"):
    """``texts`` as a file of ``fmt`` with a label column beside them."""
    if fmt == "txt":
        body = "".join(f"{t}\r\n" if i % 2 else f"{t}\n" for i, t in enumerate(texts))
    elif (
        fmt == "json"
    ):  # one array of objects, spaced and split over lines as writers do, characters unescaped
        records = [{"label": i % 2, "text": t} for i, t in enumerate(texts)]
        body = (
            " [\n"
            + ",\r\n ".join(
                json.dumps(r, ensure_ascii=False, indent=i % 2 or None) for i, r in enumerate(records)
            )
            + "\n]\n"
        )
    elif fmt == "jsonl":
        body = "\n".join(json.dumps({"label": i % 2, "text": t}) for i, t in enumerate(texts)) + "\n\n"
    elif fmt == "csv":
        cells = ['"' + t.replace('"', '""') + '"' if any(c in t for c in ',"\n') else t for t in texts]
        body = "label,text\n" + "".join(f"{i % 2},{c}\n" for i, c in enumerate(cells))
    else:  # tsv, tab
        extra = "d\tstring\n\tmeta\n" if fmt == "tab" else ""
        body = "label\ttext\n" + extra + "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(texts))
    path.write_bytes(body.encode(encoding))
    return path


@pytest.mark.parametrize("fmt", ["txt", "csv", "tsv", "tab", "jsonl", "json"])
def test_streamed_rows_are_the_whole_file_loaders_rows(tmp_path, fmt):
    texts = [t for t in ODD if fmt not in ("txt", "tsv", "tab") or ("\n" not in t and "\t" not in t)]
    texts = texts * 3
    path = write(tmp_path / f"u.{fmt}", fmt, texts)
    whole = load_text(path, None, None, require_labels=False)
    got = stream_texts(path)
    assert isinstance(got.inputs, TextRows) and got.labels is None
    assert list(got.inputs) == whole.inputs == texts
    assert got.rows.tolist() == whole.rows
    assert got.fingerprint() == whole.fingerprint()  # the feature cache's key: the same entries either way
    rng = np.random.default_rng(0)
    idx = rng.integers(-len(texts), len(texts), 40)
    assert got.inputs.take(idx) == [texts[i] for i in idx]  # any order, repeats, from the end
    assert got.inputs[3:9:2] == texts[3:9:2] and got.inputs[-1] == texts[-1]
    part = got.subset([5, 1, 2])  # still read from the file when used
    assert isinstance(part.inputs, TextRows) and list(part.inputs) == [texts[5], texts[1], texts[2]]
    assert part.rows == [6, 2, 3] and part.fingerprint() == whole.subset([5, 1, 2]).fingerprint()
    assert list(part.subset([2, 0]).inputs) == [texts[2], texts[5]]
    with pytest.raises(IndexError):
        got.inputs[len(texts)]


def test_lines_with_other_breaks_and_encodings_split_as_the_whole_file_does(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes("one\x0ctwo\r\nthree\u2028four\nlast without newline".encode())
    assert list(stream_texts(path).inputs) == load_text(path, None, None, require_labels=False).inputs
    assert stream_texts(path).inputs.take([4, 1]) == ["last without newline", "two"]
    latin = write(tmp_path / "l.csv", "csv", ["café", "über"], encoding="latin-1")
    assert list(stream_texts(latin, encoding="latin-1").inputs) == ["café", "über"]
    assert not streams(tmp_path / "u.txt", "utf-16")  # a newline is not one byte: read whole
    with pytest.raises(DataError, match=r"not valid utf-8.*--encoding latin-1"):
        stream_texts(latin)


def test_empty_rows_and_bad_cells_are_refused_naming_the_rows(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text,label\nfine,a\n,b\n  ,c\nalso fine,d\n")
    with pytest.raises(DataError, match=r"2 row\(s\) with an empty text \(data rows 2, 3"):
        stream_texts(path)
    kept = stream_texts(path, drop_empty=True)
    assert list(kept.inputs) == ["fine", "also fine"] and kept.rows.tolist() == [1, 4]
    assert kept.rows.tolist() == load_text(path, None, None, require_labels=False, drop_empty=True).rows
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(DataError, match="holds a int in data row 2"):
        stream_texts(bad)
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match="not valid JSON"):
        stream_texts(bad)
    wide = tmp_path / "w.csv"
    wide.write_text("text,label\na,b\nc,d,e\n")
    with pytest.raises(DataError, match="3 fields but the header names 2"):
        stream_texts(wide)
    two = tmp_path / "t.csv"
    two.write_text("a,b\nx,y\n")
    with pytest.raises(DataError, match="--text-col"):
        stream_texts(two)
    assert list(stream_texts(two, "b").inputs) == ["y"]
    with pytest.raises(DataError, match="no column 'c'"):
        stream_texts(two, "c")


def test_a_file_that_changes_after_loading_is_refused(tmp_path):
    path = write(tmp_path / "u.csv", "csv", ["a", "b", "c"])
    rows = stream_texts(path)
    assert rows.inputs[2] == "c"
    path.write_text("label,text\n0,other\n")
    os.utime(path, ns=(1, 1))  # a new time even where the clock is coarse
    with pytest.raises(DataError, match="changed after"):
        rows.inputs.take([0])


def test_unlabeled_text_files_stream_and_self_training_reads_them_in_chunks(
    tmp_path, monkeypatch, tiny_bert_dir, text_data
):
    """``--unlabeled`` text files stream; self-training predicts them a chunk at a time (each chunk read in one
    pass) and learns the same model as from the same rows in memory."""
    from warmstart import selftrain
    from warmstart.techniques import get_technique

    texts = [str(t) for t in text_data.inputs] * 2
    path = write(tmp_path / "pool.csv", "csv", texts)
    rows = load_unlabeled(str(path), "text")
    assert isinstance(rows.inputs, TextRows)
    monkeypatch.setattr("warmstart.data.stream.CHUNK", 7)
    reads = []
    take = TextRows.take
    monkeypatch.setattr(TextRows, "take", lambda self, idx: reads.append(len(idx)) or take(self, idx))

    def fit(unlabeled):
        est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, calibrate="none")
        return selftrain.fit_self_training(est, text_data, unlabeled, self_train_rounds=1)

    streamed = fit(rows)
    pseudo = streamed.self_training_["rounds"][0]["rows"]
    # never more rows read at once than a chunk to predict or the pseudo-labelled rows to train on
    assert reads and 7 in reads and max(reads) <= max(7, pseudo) < len(texts)
    in_memory = fit(Dataset(texts, None, "text", "<memory>"))
    np.testing.assert_allclose(
        streamed.predict_proba(text_data.inputs), in_memory.predict_proba(text_data.inputs), atol=1e-6
    )


def test_parquet_streams_its_text_column_a_batch_at_a_time(tmp_path, monkeypatch):
    """A Parquet file streams: only its text column is read, a batch at a time from the row groups that hold the
    rows asked for; texts, rows, fingerprint and refusals are the whole-file loader's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from warmstart.data import stream

    texts = [f"{t} {i}" for i, t in enumerate(ODD * 5)]
    table = pa.table(
        {"id": list(range(len(texts))), "label": [i % 2 for i in range(len(texts))], "text": texts}
    )
    path = tmp_path / "u.parquet"
    pq.write_table(table, path, row_group_size=9)  # several row groups
    monkeypatch.setattr(stream, "PARQUET_BATCH", 4)  # several batches in each
    assert streams(path, "utf-16")  # binary: the encoding does not matter
    whole = load_text(path, None, None, require_labels=False)
    got = stream_texts(path)
    assert isinstance(got.inputs, stream.ParquetRows)
    assert list(got.inputs) == whole.inputs == texts and got.rows.tolist() == whole.rows
    assert got.fingerprint() == whole.fingerprint()
    read = []
    batches = pq.ParquetFile.iter_batches

    def counting(self, batch_size=65536, row_groups=None, columns=None, **kw):
        read.append((tuple(row_groups or ()), tuple(columns or ())))
        return batches(self, batch_size, row_groups=row_groups, columns=columns, **kw)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    idx = np.random.default_rng(0).integers(-len(texts), len(texts), 25)
    assert got.inputs.take(idx) == [texts[i] for i in idx]  # any order, repeats, from the end
    read.clear()
    part = got.subset([20, 2])
    assert isinstance(part.inputs, stream.ParquetRows) and list(part.inputs) == [texts[20], texts[2]]
    assert read == [((0,), ("text",)), ((2,), ("text",))]  # only the row groups holding them, only the text
    assert part.rows == [21, 3] and part.fingerprint() == whole.subset([20, 2]).fingerprint()
    read.clear()
    assert list(got.inputs) == texts  # chunk after chunk in file order: one pass, each row group started once
    assert read == [((g,), ("text",)) for g in range(pq.ParquetFile(path).num_row_groups)]
    with pytest.raises(IndexError):
        got.inputs[len(texts)]
    copied = pickle.loads(pickle.dumps(part))  # to a worker process: the file is opened again there
    assert list(copied.inputs) == [texts[20], texts[2]] and copied.inputs._cursor is not part.inputs._cursor

    holes = tmp_path / "h.parquet"
    pq.write_table(pa.table({"text": ["a", None, " ", "b"], "n": [1, 2, 3, 4]}), holes)
    with pytest.raises(DataError, match=r"2 row\(s\) with an empty text \(data rows 2, 3"):
        stream_texts(holes)
    kept = stream_texts(holes, drop_empty=True)
    assert list(kept.inputs) == ["a", "b"] and kept.rows.tolist() == [1, 4]
    with pytest.raises(DataError, match="holds a int in data row 1"):
        stream_texts(holes, "n")
    with pytest.raises(DataError, match="no column 'c'"):
        stream_texts(holes, "c")
    two = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": ["x", "y"], "b": ["z", None]}), two)
    assert list(stream_texts(two).inputs) == ["x", "y"]  # the only column whose every value is text
    assert load_text(two, None, None, require_labels=False).inputs == ["x", "y"]
    junk = tmp_path / "j.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        stream_texts(junk)
    rows = load_unlabeled(str(path), "text")
    assert isinstance(rows.inputs, stream.ParquetRows)
    pq.write_table(table.slice(0, 3), path)
    os.utime(path, ns=(1, 1))
    with pytest.raises(DataError, match="changed after"):
        rows.inputs.take([0])


def test_joined_rows_keep_streamed_rows_streamed_and_read_each_part_once(tmp_path, monkeypatch):
    """``join_datasets`` of rows in memory and streamed rows (distillation's transfer set) keeps the streamed
    ones in their file: every read goes to the part that holds the rows, a streamed part's rows in one pass."""
    from warmstart.data import join_datasets
    from warmstart.data.datasets import JoinedRows

    texts = [f"unlabelled text number {i}" for i in range(30)]
    streamed = load_unlabeled(str(write(tmp_path / "u.csv", "csv", texts)), "text")
    labelled = Dataset(["one", "two", "three"], ["a", "b", "a"], "text", "labelled", [7, 8, 9])
    joined = join_datasets([labelled, streamed], "transfer set")
    whole = [*labelled.inputs, *texts]
    assert isinstance(joined.inputs, JoinedRows) and joined.labels is None and len(joined) == 33
    assert joined.rows.tolist() == [7, 8, 9, *range(1, 31)]
    reads = []
    take = TextRows.take
    monkeypatch.setattr(TextRows, "take", lambda self, idx: reads.append(len(idx)) or take(self, idx))
    idx = np.random.default_rng(0).integers(-33, 33, 50)
    assert (
        joined.inputs.take(idx) == [whole[i] for i in idx] and len(reads) == 1
    )  # any order, repeats, from the end
    assert joined.inputs[1:6] == whole[1:6] and joined.inputs[-1] == whole[-1]
    with pytest.raises(IndexError):
        joined.inputs[33]
    monkeypatch.setattr("warmstart.data.stream.CHUNK", 8)
    reads.clear()
    assert list(joined.inputs) == whole and max(reads) == 8  # iteration: a chunk at a time
    part = joined.subset([31, 0, 2, 5])  # runs of one part each, still read from the file
    assert isinstance(part.inputs, JoinedRows) and list(part.inputs) == [whole[31], "one", "three", whole[5]]
    assert isinstance(joined.subset([4, 6]).inputs, TextRows)  # one streamed part: that part's own rows
    assert joined.subset([]).inputs == [] and len(joined.subset([])) == 0
    assert (
        joined.fingerprint() == Dataset(whole, None, "text").fingerprint()
    )  # the same feature-cache entries
    copy = pickle.loads(pickle.dumps(joined.inputs))
    assert list(copy) == whole
    in_memory = join_datasets([labelled, Dataset(texts, None, "text", "u")], "transfer set")
    assert isinstance(in_memory.inputs, list) and in_memory.rows == [7, 8, 9, *range(1, 31)]


def test_a_hugging_face_data_set_streams_its_text_column_as_load_reads_it(tmp_path, monkeypatch):
    """``--unlabeled`` of a saved Hugging Face data set (or ``hf:NAME``) reads the texts from its memory-mapped
    files when used, a chunk at a time and the text column alone: texts, rows, source and fingerprint are
    ``load``'s, a non-text row is refused as ``load`` refuses it, and no column is read whole."""
    hf = pytest.importorskip("datasets")
    from warmstart.data import inputs
    from warmstart.data.load import Columns, load
    from warmstart.data.stream import HFRows

    texts = [f"an unlabelled sentence, number {i}" for i in range(23)]
    feats = hf.Features({"body": hf.Value("string"), "label": hf.ClassLabel(names=["a", "b"])})
    table = hf.Dataset.from_dict({"body": texts, "label": [i % 2 for i in range(23)]}, features=feats)
    hf.DatasetDict({"train": table, "test": table.select(range(3))}).save_to_disk(str(tmp_path / "hfd"))
    whole, _ = load(str(tmp_path / "hfd"), Columns(), require_labels=False)
    monkeypatch.setattr("warmstart.data.stream.PARQUET_BATCH", 5)  # the checking pass's batch
    monkeypatch.setattr(inputs, "_hf_column", lambda *a: pytest.fail("a column read whole"))
    got = load_unlabeled(str(tmp_path / "hfd"), "text")
    assert isinstance(got.inputs, HFRows) and got.labels is None
    assert list(got.inputs) == whole.inputs == texts and got.rows.tolist() == whole.rows
    assert got.source == whole.source == f"{tmp_path / 'hfd'}[train] column 'body'"
    assert got.fingerprint() == whole.fingerprint()
    idx = np.random.default_rng(0).integers(-23, 23, 30)
    assert got.inputs.take(idx) == [texts[i] for i in idx]
    part = got.subset([20, 2, 2])
    assert isinstance(part.inputs, HFRows) and list(part.inputs) == [texts[20], texts[2], texts[2]]
    assert list(pickle.loads(pickle.dumps(part.inputs))) == list(part.inputs)
    assert list(load_unlabeled(str(tmp_path / "hfd"), "text", Columns(split="test")).inputs) == texts[:3]
    with pytest.raises(DataError, match="no column 'nope'"):
        load_unlabeled(str(tmp_path / "hfd"), "text", Columns(text_col="nope"))
    bad = hf.Dataset.from_dict({"text": [*texts[:12], None, *texts[13:]]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(
        DataError, match=r"bad column 'text': row 12 \(counting from 0\) is a missing value.*--text-col="
    ):
        load_unlabeled(str(tmp_path / "bad"), "text")
    hf.Dataset.from_dict({"text": [None, *texts[1:]]}).save_to_disk(str(tmp_path / "first"))
    with pytest.raises(DataError, match=r"first column 'text': row 0 \(counting from 0\) is a missing value"):
        load_unlabeled(str(tmp_path / "first"), "text")


def test_a_json_array_streams_a_block_at_a_time_and_other_json_is_read_whole(tmp_path, monkeypatch):
    """A JSON document that is one array of objects streams: read a block at a time (an element or a character
    may span blocks), each element found again from its byte; broken arrays are refused naming the byte; a
    ``{"data": [...]}`` document streams its array; a table of columns streams in the next test."""
    monkeypatch.setattr("warmstart.data.stream.JSON_BLOCK", 7)
    texts = [t for t in ODD * 2]
    path = write(tmp_path / "u.json", "json", texts)
    assert streams(path, "utf-8")
    got = load_unlabeled(str(path), "text")
    assert isinstance(got.inputs, TextRows) and list(got.inputs) == texts
    assert got.inputs.take([9, 0, 13]) == [texts[9], texts[0], texts[13]]
    (tmp_path / "empty.json").write_text(" [ ] ")
    with pytest.raises(DataError, match="cannot tell which column holds the text"):
        stream_texts(tmp_path / "empty.json")
    # {"data": [...]} streams too, the keys before "data" skipped (within the first JSON_BLOCK bytes)
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [{"text": t} for t in texts], "version": 2}))
    got = load_unlabeled(str(wrapped), "text")
    assert streams(wrapped, "utf-8") and isinstance(got.inputs, TextRows) and list(got.inputs) == texts
    assert got.inputs.take([12, 3]) == [texts[12], texts[3]]
    monkeypatch.setattr("warmstart.data.stream.JSON_BLOCK", 64)
    later = tmp_path / "later.json"
    later.write_text(json.dumps({"v": [1, {"a": "]"}], "data": [{"text": t} for t in texts]}, indent=1))
    assert streams(later, "utf-8") and list(load_unlabeled(str(later), "text").inputs) == texts
    # keys before "data" are skipped a value at a time, however far into the file "data" comes
    late = tmp_path / "late.json"
    late.write_text(json.dumps({"notes": ["x" * 80] * 3, "data": [{"text": t} for t in texts]}))
    assert streams(late, "utf-8") and list(load_unlabeled(str(late), "text").inputs) == texts
    # "data" not an array of objects is read whole, which refuses it
    (tmp_path / "flat.json").write_text('{"data": "one text"}')
    assert not streams(tmp_path / "flat.json", "utf-8")
    with pytest.raises(DataError, match="JSON must be a list of objects"):
        load_unlabeled(str(tmp_path / "flat.json"), "text")
    for body, says in [
        ('[{"text": "a"}, "b"]', r'expected an object \({"text": ...}\) at byte 16'),
        ('[{"text": "a"} {"text": "b"}]', r"expected ',' or ']' after the element at byte 15"),
        ('[{"text": "a"}, {"text": "b', r"the element at byte 16 is not valid JSON \(Unterminated string"),
        ('[{"text": "a"}, {"text": 3}]', r"holds a int in data row 2"),
        ('{"data": [{"text": "a"}, 7]}', r'expected an object \({"text": ...}\) at byte 25'),
        ('{"v": 1 "data": []}', r"expected ',' or '}' after the value of key 'v' at byte 8"),
        ('{"v": [1, "data": []}', r"expected ',' or '\]' in the value of key 'v' at byte 16"),
        ('{"v": [1, 2], "text": ["a" "b"]}', r"expected ',' or '\]' in the value of key 'text' at byte 27"),
        ('{"text": {"0": "a", 1: "b"}}', r"expected a key in the value of key 'text' at byte 20"),
        ('{"data" [{"text": "a"}]}', r"expected ':' after a key at byte 8"),
    ]:
        (tmp_path / "bad.json").write_text(body)
        with pytest.raises(DataError, match=says):
            stream_texts(tmp_path / "bad.json")


def test_a_json_table_of_columns_streams_its_text_column(tmp_path, monkeypatch):
    """pandas' ``to_json()`` writes a table of columns (``{"text": {"0": ...}, "label": {...}}``; arrays of columns
    too): the text column's values stream, read a block at a time and found again from their bytes, the same
    rows, row numbers and fingerprint as the whole-file loader's; a table whose columns differ in length or
    in their rows' keys is read whole (which refuses or aligns it as pandas does)."""
    import pandas as pd

    monkeypatch.setattr("warmstart.data.stream.JSON_BLOCK", 7)
    texts = [t for t in ODD * 2]
    frame = pd.DataFrame({"label": [i % 3 for i in range(len(texts))], "text": texts})
    for name, body in [
        ("objects", frame.to_json()),  # {"label": {"0": 0, ...}, "text": {"0": ..., ...}}
        ("arrays", json.dumps({"label": frame.label.tolist(), "text": texts}, ensure_ascii=False, indent=2)),
    ]:
        path = tmp_path / f"{name}.json"
        path.write_text(body, encoding="utf-8")
        assert streams(path, "utf-8"), name
        whole = load_text(path, None, None, require_labels=False)
        got = load_unlabeled(str(path), "text")
        assert isinstance(got.inputs, TextRows) and list(got.inputs) == whole.inputs == texts
        assert got.rows.tolist() == whole.rows and got.fingerprint() == whole.without_labels().fingerprint()
        assert got.inputs.take([9, 0, 13, 9]) == [texts[9], texts[0], texts[13], texts[9]]
        assert list(got.subset([4, 2]).inputs) == [texts[4], texts[2]]
    # the column is chosen as for other files: --text-col, a known name, or the only column of texts
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"n": [1, 2], "body": ["one", "two"], "title": ["a", None]}))
    assert list(stream_texts(two).inputs) == ["one", "two"]  # "body" is a text column's name
    only = tmp_path / "only.json"
    only.write_text(json.dumps({"n": [1, 2], "words": ["one", "two"], "title": ["a", None]}))
    assert list(stream_texts(only).inputs) == ["one", "two"]  # the only column whose every value is text
    assert list(stream_texts(two, "title", drop_empty=True).inputs) == ["a"]
    with pytest.raises(
        DataError, match=r"no column 'txt' for the text; the columns are \['n', 'body', 'title'\]"
    ):
        stream_texts(two, "txt")
    # columns of other lengths, or rows under other keys: read whole, as pandas reads them
    uneven = tmp_path / "uneven.json"
    uneven.write_text(json.dumps({"text": ["a", "b"], "label": [1]}))
    assert not streams(uneven, "utf-8")
    with pytest.raises(DataError, match="could not be parsed as JSON"):
        load_unlabeled(str(uneven), "text")
    shuffled = tmp_path / "shuffled.json"
    shuffled.write_text(json.dumps({"label": {"1": 0, "0": 1}, "text": {"0": "a", "1": "b"}}))
    assert not streams(shuffled, "utf-8") and load_unlabeled(str(shuffled), "text").inputs == ["b", "a"]
    scalar = tmp_path / "scalar.json"
    scalar.write_text(json.dumps({"text": ["a"], "version": 2}))
    assert not streams(scalar, "utf-8")


def test_a_hugging_face_image_column_streams_decoded_when_used(tmp_path, tiny_image_backbone, monkeypatch):
    """Unlabelled images in a Hugging Face data set's ``Image`` column are decoded only when used, a chunk at a
    time (no row is decoded when loading): the arrays, rows and fingerprint are ``load``'s, and so are the
    features a backbone makes of them."""
    hf = pytest.importorskip("datasets")
    from tests.conftest import make_images
    from warmstart.data import inputs
    from warmstart.data.load import Columns, load
    from warmstart.data.stream import HFRows
    from warmstart.features import FeatureCache

    images, labels = make_images(4, size=20)
    feats = hf.Features({"image": hf.Image(), "label": hf.Value("string")})
    table = hf.Dataset.from_dict({"image": list(images), "label": labels}, features=feats)
    table.save_to_disk(str(tmp_path / "pics"))
    whole, _ = load(str(tmp_path / "pics"), Columns(), require_labels=False)
    decoded, convert = [], inputs.image_item
    monkeypatch.setattr(inputs, "image_item", lambda v, i, *a: decoded.append(i) or convert(v, i, *a))
    got = load_unlabeled(str(tmp_path / "pics"), "image")
    assert decoded == []  # loading decodes nothing
    assert isinstance(got.inputs, HFRows) and got.modality == "image" and got.source == whole.source
    for a, b in zip(got.inputs, whole.inputs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got.fingerprint() == whole.fingerprint() and got.rows.tolist() == whole.rows
    assert sorted(set(decoded)) == list(range(12))  # each when read
    part = got.subset([7, 1])
    assert isinstance(part.inputs, HFRows)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(part.inputs))[0], whole.inputs[7])
    cache = FeatureCache(enabled=False)
    np.testing.assert_allclose(
        cache.get(tiny_image_backbone, got, progress=False),
        cache.get(tiny_image_backbone, whole, progress=False),
        atol=1e-6,
    )
    with pytest.raises(DataError, match="holds text rows but the labelled data is image"):
        load_unlabeled(str(tmp_path / "pics"), "image", Columns(text_col="label"))


def test_hugging_face_images_stored_as_arrays_load_and_stream(tmp_path):
    """Images in a Hugging Face array column (``Array3D`` colour, ``Array2D`` grey) are images, not texts: the
    labelled loader reads them as an array of them in memory is read, and as unlabelled rows they stay in the data set's files,
    read when used."""
    hf = pytest.importorskip("datasets")
    from warmstart.data import from_arrays
    from warmstart.data.load import Columns, load
    from warmstart.data.stream import HFRows

    rng = np.random.default_rng(0)
    colour, grey = (
        rng.integers(0, 256, (6, 8, 8, 3)).astype(np.uint8),
        rng.integers(0, 256, (6, 9, 7)).astype(np.uint8),
    )
    for name, imgs, kind in [
        ("colour", colour, hf.Array3D((8, 8, 3), "uint8")),
        ("grey", grey, hf.Array2D((9, 7), "uint8")),
    ]:
        feats = hf.Features({"pixels": kind, "label": hf.Value("string")})
        hf.Dataset.from_dict({"pixels": list(imgs), "label": list("abcabc")}, features=feats).save_to_disk(
            str(tmp_path / name)
        )
        whole, _ = load(str(tmp_path / name), Columns())
        want = np.stack(from_arrays(imgs).inputs)  # as an array of the images in memory is held
        assert whole.modality == "image" and whole.labels == list("abcabc")
        np.testing.assert_array_equal(np.stack(whole.inputs), want)
        got = load_unlabeled(str(tmp_path / name), "image")
        assert isinstance(got.inputs, HFRows) and got.labels is None
        np.testing.assert_array_equal(np.stack(got.inputs.take([5, 0])), want[[5, 0]])
        assert got.fingerprint() == whole.without_labels().fingerprint()


def test_what_the_whole_file_loader_decides_the_streamed_rows_decide_too(tmp_path):
    """The cases the streamed reader decides on its own, each as ``load_text`` does: the text column of JSON
    records by which keys hold text in every row, a short CSV row's missing text, a line's later pieces read on
    their own, more than ten empty rows, and files that say nothing."""
    records = tmp_path / "r.json"
    records.write_text(json.dumps([{"body": "one", "n": 1}, {"body": "two", "n": 2}]))
    assert (
        list(stream_texts(records).inputs)
        == ["one", "two"]
        == load_text(records, None, None, require_labels=False).inputs
    )
    mixed = tmp_path / "m.jsonl"
    mixed.write_text('{"a": "x", "b": "y"}\n{"a": "x2", "b": 3}\n')
    assert list(stream_texts(mixed).inputs) == ["x", "x2"]  # "b" holds a number in row 2: not text
    short = tmp_path / "s.csv"
    short.write_text("label,text\n0,fine\n1\n")
    with pytest.raises(DataError, match=r"s.csv: 1 row\(s\) with an empty text \(data rows 2, counting"):
        stream_texts(short)
    assert list(stream_texts(short, drop_empty=True).inputs) == ["fine"]
    pieces = tmp_path / "p.txt"
    pieces.write_text("a\x0cb\x0cc\nd\n")
    assert stream_texts(pieces).inputs.take([2, 1, 3]) == ["c", "b", "d"]
    many = tmp_path / "e.csv"
    many.write_text("text\n" + "x\n" + '""\n' * 12)
    with pytest.raises(
        DataError,
        match=r"12 row\(s\) with an empty text \(data rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 \.\.\., counting",
    ):
        stream_texts(many)
    (tmp_path / "h.csv").write_text("")
    with pytest.raises(DataError, match=r"h.csv: no data rows"):
        stream_texts(tmp_path / "h.csv")
    (tmp_path / "d.csv").write_text("text,text\na,b\n")
    with pytest.raises(DataError, match=r"d.csv: the header names a column more than once"):
        stream_texts(tmp_path / "d.csv")
    (tmp_path / "blank.json").write_text("  \n ")
    assert not streams(tmp_path / "blank.json", "utf-8")  # not an array: read whole, which refuses it
    assert not streams(records, "no-such-encoding")
    bad = tmp_path / "x.json"
    bad.write_text('[{"text": "a"}, {"text": 3}]')
    with pytest.raises(DataError, match=r"x.json: the text column 'text' holds a int in data row 2"):
        stream_texts(bad)
    bad.write_bytes(b'[{"text": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"x.json: the text after byte \d+ is not valid utf-8"):
        stream_texts(bad)


def test_a_row_that_moved_under_an_unchanged_stamp_is_refused(tmp_path):
    """A file rewritten at the same size with its time put back passes the stamp check; a row that is no longer
    where it was (here the second piece of a line that now has one) is refused, not taken from the next line."""
    path = tmp_path / "u.txt"
    path.write_text("a\x0cb\nc\n")
    rows = stream_texts(path)
    assert list(rows.inputs) == ["a", "b", "c"]
    st = os.stat(path)
    path.write_text("abc\nc\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataError, match=r"u.txt: no row starts at byte 0 any more"):
        rows.inputs.take([1])
