import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from warmstart.data import (
    Dataset,
    check_labels_seen,
    few_shot,
    from_arrays,
    load_image_folder,
    load_text,
    stratified_split,
)
from warmstart.errors import DataError, ParameterError


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "tab"])
def test_load_every_format_with_default_columns(tmp_path, fmt):
    rows = [("great film", "pos"), ("dull, long film", "neg"), ("loved it", "pos")]
    p = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        write(p, "text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in rows) + "\n")
    elif fmt == "tsv":
        write(p, "sentence\tcategory\n" + "\n".join(f"{t}\t{lab}" for t, lab in rows) + "\n")
    elif fmt == "jsonl":
        write(p, "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows) + "\n")
    elif fmt == "parquet":
        pd.DataFrame(rows, columns=["review", "sentiment"]).to_parquet(p)
    else:
        write(p, "Category\tText\nd\tstring\nclass\t\n" + "\n".join(f"{lab}\t{t}" for t, lab in rows) + "\n")
    ds = load_text(p)
    assert ds.inputs == [t for t, _ in rows]
    assert ds.labels == [lab for _, lab in rows]
    assert ds.modality == "text" and ds.classes == ["neg", "pos"]


def test_explicit_columns_and_missing_column_error(tmp_path):
    p = write(tmp_path / "d.csv", "body,y,other\nhello,a,x\nbye,b,y\n")
    ds = load_text(p, text_col="body", label_col="other")
    assert ds.labels == ["x", "y"]
    with pytest.raises(DataError, match=r"no column 'txt'.*columns are \['body', 'y', 'other'\].*--text-col"):
        load_text(p, text_col="txt")


def test_ambiguous_columns_ask_for_a_flag(tmp_path):
    p = write(tmp_path / "d.csv", "a,b,c\nx,y,z\nu,v,w\n")
    with pytest.raises(DataError, match="--text-col"):
        load_text(p)


def test_empty_text_names_rows_and_drop_empty(tmp_path):
    p = write(tmp_path / "d.csv", 'text,label\nok,a\n"",b\n"   ",a\nfine,b\n')
    with pytest.raises(DataError, match=r"2 row\(s\) with an empty text or label \(data rows 2, 3"):
        load_text(p)
    ds = load_text(p, drop_empty=True)
    assert ds.inputs == ["ok", "fine"] and ds.rows == [1, 4]


def test_non_utf8_names_line_and_encoding_option(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\nok,a\ncaf\xe9 au lait,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"d.csv: line 3 is not valid utf-8 \(byte 0xe9.*--encoding latin-1"):
        load_text(p)
    assert load_text(p, encoding="latin-1").inputs[1] == "café au lait"


def test_bad_jsonl_line_is_named(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_text(p)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_text(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_text(write(tmp_path / "d.xyz", "text,label\n"))


def test_single_class_is_a_clear_error(tmp_path):
    ds = load_text(write(tmp_path / "d.csv", "text,label\na,spam\nb,spam\n"))
    with pytest.raises(DataError, match=r"found 1 class \('spam'\).*at least 2"):
        ds.require_labels()


def test_unseen_labels_in_test_are_named():
    train = Dataset(["a", "b"], ["x", "y"], "text", "train.csv")
    test = Dataset(["c", "d", "e"], ["x", "z", "z"], "text", "test.csv")
    with pytest.raises(DataError, match=r"test.csv: the test set has label\(s\) \['z'\].*first at row 2"):
        check_labels_seen(train, test, "test")


def test_stratified_split_is_stratified_deterministic_and_disjoint():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    s1, s2 = stratified_split(labels, 0.1, 0.2, seed=3), stratified_split(labels, 0.1, 0.2, seed=3)
    assert all(np.array_equal(getattr(s1, k), getattr(s2, k)) for k in ("train", "val", "test"))
    allidx = np.concatenate([s1.train, s1.val, s1.test])
    assert sorted(allidx.tolist()) == list(range(100))
    test_labels = [labels[i] for i in s1.test]
    assert test_labels.count("a") == 10 and test_labels.count("b") == 6 and test_labels.count("c") == 4
    assert not np.array_equal(stratified_split(labels, 0.1, 0.2, seed=4).test, s1.test)


def test_split_keeps_tiny_classes_in_train():
    s = stratified_split(["a"] * 10 + ["b"], 0.1, 0.2, seed=0)
    assert 10 in s.train


def test_split_rejects_bad_fractions():
    with pytest.raises(ParameterError, match="'test_size' parameter must be a float in \\[0, 1\\)"):
        stratified_split(["a", "b"], test_size=1.5)


def test_few_shot_k_per_class_nested_and_seeded():
    labels = ["a"] * 100 + ["b"] * 100 + ["c"] * 5
    k8, k64 = few_shot(labels, 8, seed=1), few_shot(labels, 64, seed=1)
    counts = {c: sum(labels[i] == c for i in k8) for c in "abc"}
    assert counts == {"a": 8, "b": 8, "c": 5}
    assert set(k8) <= set(k64)
    assert not np.array_equal(k8, few_shot(labels, 8, seed=2))
    with pytest.raises(DataError, match="class 'c' has only 5"):
        few_shot(labels, 8, strict=True)
    with pytest.raises(ParameterError, match="'k' parameter of few_shot must be an int in \\[1, inf\\)"):
        few_shot(labels, 0)


def _save_png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path)


def test_image_folder_labels_from_subfolders(tmp_path):
    _save_png(tmp_path / "cat" / "1.png", "red")
    _save_png(tmp_path / "cat" / "2.png", "red")
    _save_png(tmp_path / "dog" / "1.png", "blue")
    ds = load_image_folder(tmp_path)
    assert ds.labels == ["cat", "cat", "dog"] and ds.modality == "image"


def test_truncated_image_is_named(tmp_path):
    _save_png(tmp_path / "cat" / "ok.png", "red")
    bad = tmp_path / "dog" / "broken.jpg"
    bad.parent.mkdir()
    Image.new("RGB", (64, 64), "blue").save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"broken.jpg: the image is truncated or corrupt"):
        load_image_folder(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    _save_png(tmp_path / "cat" / "ok.png", "red")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.png: not a readable image"):
        load_image_folder(tmp_path)


def test_image_folder_errors_for_empty_or_flat_folder(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_image_folder(tmp_path)


def test_from_arrays_checks_shape_and_range():
    ds = from_arrays(np.random.rand(4, 8, 8).astype(np.float32), [0, 1, 0, 1])
    assert ds.inputs.dtype == np.uint8 and ds.labels == ["0", "1", "0", "1"]
    with pytest.raises(DataError, match=r"shape \(N, H, W\)"):
        from_arrays(np.zeros((4, 8)))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        from_arrays(np.full((2, 4, 4), 3.0))
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        from_arrays(np.zeros((4, 8, 8), np.uint8), [0, 1, 2])


def test_fingerprint_tracks_content():
    a = Dataset(["x", "y"], ["1", "2"], "text")
    assert (
        a.fingerprint() == Dataset(["x", "y"], ["2", "1"], "text").fingerprint()
    )  # labels don't change features
    assert a.fingerprint() != Dataset(["x", "y "], None, "text").fingerprint()
    assert a.fingerprint() != Dataset(["xy", ""], None, "text").fingerprint()


def test_image_folder_check_decodes_no_png_or_jpeg_pixels(tmp_path, monkeypatch):
    """Loading a folder checks each PNG and JPEG without decoding it, so each is decoded once, when used; a
    truncated JPEG (a whole header, half its scan) is still named at load time."""
    from PIL import Image as PILImage

    from warmstart.data import image_at

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "1.png")
    Image.fromarray(pixels).save(tmp_path / "b" / "1.jpg", quality=90)
    loads = []  # one pixel decoder is made per decode
    real = PILImage._getdecoder
    monkeypatch.setattr(PILImage, "_getdecoder", lambda *a, **k: loads.append(a[1]) or real(*a, **k))
    ds = load_image_folder(tmp_path)
    assert loads == []
    for i in range(len(ds)):
        image_at(ds, i)
    assert len(loads) == 2
    whole = (tmp_path / "b" / "1.jpg").read_bytes()
    (tmp_path / "b" / "1.jpg").write_bytes(whole[: len(whole) * 3 // 4])
    with pytest.raises(DataError, match=r"1.jpg: the image is truncated or corrupt"):
        load_image_folder(tmp_path)
