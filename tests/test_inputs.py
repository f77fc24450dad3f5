"""Every input type ``fit(X, y)`` and ``predict(X)`` accept gives the same rows and the same predictions; anything
else, or a shape that could be read two ways, is a clear error (``data.inputs.as_dataset``)."""

from __future__ import annotations

import json

import datasets as hf
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from warmstart.data import Dataset
from warmstart.data.inputs import as_dataset
from warmstart.errors import DataError
from warmstart.techniques import get_technique

from .conftest import make_images, make_sentences

TEXTS, LABELS = make_sentences(6, seed=0)


def _same(ds: Dataset, texts=TEXTS, labels=LABELS):
    assert ds.modality == "text"
    assert list(ds.inputs) == list(texts)
    assert ds.labels == (None if labels is None else list(labels))


# -- text inputs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: (TEXTS, LABELS),
        lambda: (tuple(TEXTS), tuple(LABELS)),
        lambda: (np.array(TEXTS), np.array(LABELS)),
        lambda: (np.array(TEXTS, dtype=object), pd.Series(LABELS)),
        lambda: (pd.Series(TEXTS, name="t"), pd.Series(LABELS)),
        lambda: (Dataset(TEXTS, None, "text"), LABELS),
    ],
    ids=["list", "tuple", "numpy", "object-array", "series", "dataset-plus-y"],
)
def test_text_sequences(make):
    X, y = make()
    _same(as_dataset(X, y, modality="text"))


def test_dataframe_columns_found_by_name_or_given():
    df = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS, "label": LABELS})
    _same(as_dataset(df, modality="text"))  # the usual names
    renamed = df.rename(columns={"text": "body_text", "label": "topic_name"})
    _same(as_dataset(renamed, modality="text", input_col="body_text", label_col="topic_name"))
    with pytest.raises(DataError, match=r"among \['id', 'body_text', 'topic_name'\]; pass input_col=NAME"):
        as_dataset(renamed, modality="text")
    with pytest.raises(DataError, match=r"no column 'txt' \(input_col\)"):
        as_dataset(df, modality="text", input_col="txt")
    # y given: the label column is not needed, and a one-column frame needs no name
    _same(as_dataset(df[["text"]], LABELS, modality="text"))


def test_dataframe_predict_returns_one_prediction_per_row(tiny_bert_dir):
    """It returned one per column name (2 for a 3-row frame of two columns)."""
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(TEXTS, LABELS)
    df = pd.DataFrame({"text": TEXTS[:3], "label": LABELS[:3]})
    assert est.predict(df).tolist() == est.predict(TEXTS[:3]).tolist()
    assert est.predict(df["text"]).tolist() == est.predict(TEXTS[:3]).tolist()
    assert est.score(df) == est.score(TEXTS[:3], LABELS[:3])  # labels from the frame's label column


def test_row_dicts_are_read_by_column_not_as_strings(tiny_bert_dir):
    """Iterating a datasets.Dataset yields row dicts; they were encoded as str(dict)."""
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(TEXTS, LABELS)
    rows = [{"text": t, "label": lab} for t, lab in zip(TEXTS, LABELS, strict=True)]
    np.testing.assert_allclose(est.predict_proba(rows), est.predict_proba(TEXTS), atol=1e-6)
    _same(as_dataset(rows, modality="text"))
    _same(as_dataset({"text": TEXTS, "label": LABELS}, modality="text"))  # a dict of columns (ds[:])
    with pytest.raises(DataError, match=r"row 1 \(counting from 0\) has keys \['text'\] but row 0"):
        as_dataset([{"text": "a", "label": "x"}, {"text": "b"}], modality="text")


def test_hugging_face_datasets(tiny_bert_dir, tmp_path):
    names = sorted(set(LABELS))
    features = hf.Features({"sentence": hf.Value("string"), "topic": hf.ClassLabel(names=names)})
    ds = hf.Dataset.from_dict(
        {"sentence": TEXTS, "topic": [names.index(x) for x in LABELS]}, features=features
    )
    _same(as_dataset(ds, modality="text", label_col="topic"))  # class indices come back as class names
    splits = hf.DatasetDict({"train": ds, "test": ds.select(range(4))})
    with pytest.raises(DataError, match=r"DatasetDict with splits \['train', 'test'\]; pass one split"):
        as_dataset(splits, modality="text")
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, label_col="topic")
    est.fit(splits["train"])
    assert list(est.classes_) == names
    assert est.predict(splits["test"]).tolist() == est.predict(TEXTS[:4]).tolist()
    assert est.score(splits["test"]) == est.score(TEXTS[:4], LABELS[:4])


def test_multi_label_sequences_become_sorted_tuples():
    ds = as_dataset(["a b", "c"], [["y", "x"], np.array(["x"])], modality="text")
    assert ds.labels == [("x", "y"), ("x",)]


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        ("one text", None, "a single string; wrap it in a list"),
        ((t for t in TEXTS), None, r"generator: wrap it in list\(\)"),
        (set(TEXTS), None, "cannot read inputs from a builtins.set"),
        (np.array([TEXTS[:2], TEXTS[2:4]]), None, "a 2-d array, but text needs one string per row"),
        (["fine", None, "also fine"], None, r"row 1 \(counting from 0\) is a missing value"),
        (["fine", 3], None, r"row 1 \(counting from 0\) is 3 \(int\), not a string"),
        ([], None, "no rows"),
        (["a", "b"], ["x"], "2 inputs but 1 labels"),
        (["a", "b"], ["x", None], r"row 1 \(counting from 0\) has no label"),
        (["a", "b"], [0.5, 1.5], r"the label 0.5 \(float\); labels are class names or integers"),
        (["a", "b"], ["x", 1], r"the labels mix \['int', 'str'\]"),
        (["a", "b"], np.zeros((2, 3)), "a 2-d array of shape"),
        (["a", "b"], "xy", "a single string; give one label per input"),
    ],
    ids=[
        "string",
        "generator",
        "set",
        "2d-text",
        "none-text",
        "int-text",
        "empty",
        "length",
        "none-label",
        "float-label",
        "mixed-labels",
        "2d-labels",
        "string-labels",
    ],
)
def test_refused_inputs_say_what_to_do(X, y, message):
    with pytest.raises(DataError, match=message):
        as_dataset(X, y, modality="text")


def test_a_dataset_with_labels_and_y_or_of_another_modality_is_refused():
    labelled = Dataset(TEXTS, LABELS, "text", "mine.csv")
    with pytest.raises(DataError, match="mine.csv: the Dataset already has labels and y gives them again"):
        as_dataset(labelled, LABELS, modality="text")
    with pytest.raises(DataError, match="mine.csv: a text data set, but the backbone reads image"):
        as_dataset(labelled, modality="image")
    with pytest.raises(DataError, match="no labels. Pass them as y"):
        as_dataset(TEXTS, modality="text", need_labels=True)


# -- image inputs ----------------------------------------------------------------------------------------------
def test_image_inputs_all_give_the_same_predictions(tiny_image_backbone, tmp_path):
    x, labels = make_images(4, size=24)
    est = get_technique("probe", backbone=tiny_image_backbone, progress=False).fit(x, labels)
    want = est.predict_proba(x)
    paths = []
    for i, img in enumerate(x):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    pil = [Image.fromarray(img) for img in x]
    variants = {
        "list of arrays": list(x),
        "float array": x.astype(np.float32) / 255,
        "paths": [str(p) for p in paths],
        "Path objects": paths,
        "PIL images": pil,
        "object array of paths": np.array([str(p) for p in paths], dtype=object),
        "DataFrame of paths": pd.DataFrame({"image": [str(p) for p in paths], "label": labels}),
        "datasets.Dataset": hf.Dataset.from_dict({"image": pil, "label": labels}, features=_image_features()),
    }
    for name, X in variants.items():
        np.testing.assert_allclose(est.predict_proba(X), want, atol=1e-5, err_msg=name)
    refit = get_technique("probe", backbone=tiny_image_backbone, progress=False).fit(
        variants["DataFrame of paths"]
    )
    np.testing.assert_allclose(refit.predict_proba(x), want, atol=1e-5)


def _image_features():
    return hf.Features({"image": hf.Image(), "label": hf.Value("string")})


def test_refused_image_inputs():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(DataError, match=r"row 1 \(counting from 0\) is a int; an image is a file path"):
        as_dataset([img, 5], modality="image")
    with pytest.raises(DataError, match="a 2-d array; images must be"):
        as_dataset(np.zeros((4, 16)), modality="image")
    with pytest.raises(DataError, match="float images must hold values in"):
        as_dataset([np.full((8, 8, 3), 2.0)], modality="image")


# -- the command line: Hugging Face data sets ----------------------------------------------------------------
@pytest.fixture
def hf_folder(tmp_path):
    names = sorted(set(LABELS))
    feats = hf.Features({"sentence": hf.Value("string"), "topic": hf.ClassLabel(names=names)})
    tr, trl = make_sentences(10, seed=0)
    te, tel = make_sentences(4, seed=1)
    splits = hf.DatasetDict(
        {
            "train": hf.Dataset.from_dict(
                {"sentence": tr, "topic": [names.index(x) for x in trl]}, features=feats
            ),
            "test": hf.Dataset.from_dict(
                {"sentence": te, "topic": [names.index(x) for x in tel]}, features=feats
            ),
        }
    )
    splits.save_to_disk(str(tmp_path / "hfdata"))
    splits["train"].save_to_disk(str(tmp_path / "one-split"))
    return tmp_path


def test_cli_fits_on_a_saved_hugging_face_dataset(hf_folder, tiny_bert_dir, capsys):
    from warmstart.cli import main

    args = [
        "fit",
        "--data",
        str(hf_folder / "hfdata"),
        "--backbone",
        str(tiny_bert_dir),
        "--label-col",
        "topic",
    ]
    assert main([*args, "--output", str(hf_folder / "art")]) == 0
    assert "tested on 12" in capsys.readouterr().out  # the test split is the test data (3 x 4 rows)
    config = json.loads((hf_folder / "art" / "config.json").read_text())
    assert config["record"]["split"] is None and config["record"]["label_col"] == "topic"

    from warmstart.data.load import Columns, load

    one, test = load(str(hf_folder / "one-split"), Columns(label_col="topic"))
    assert len(one) == 30 and test is None and one.source.startswith(str(hf_folder / "one-split"))
    with pytest.raises(DataError, match=r"no split 'validation'; the splits are \['train', 'test'\]"):
        load(str(hf_folder / "hfdata"), Columns(label_col="topic", split="validation"))
    with pytest.raises(DataError, match="holds one split only; drop --split"):
        load(str(hf_folder / "one-split"), Columns(split="train"))
    odd = hf.Dataset.from_dict({"alpha": TEXTS, "beta": TEXTS, "topic": LABELS})
    odd.save_to_disk(str(hf_folder / "odd"))
    with pytest.raises(
        DataError, match=r"odd: cannot tell which column holds the inputs.*pass --text-col=NAME"
    ):
        load(str(hf_folder / "odd"), Columns(label_col="topic"))
    assert load(str(hf_folder / "odd"), Columns(text_col="alpha", label_col="topic"))[0].inputs == TEXTS


def test_hf_prefix_loads_with_load_dataset(tmp_path, monkeypatch):
    """``hf:NAME`` goes through datasets.load_dataset, which reads a hub id or, as here, a folder of data files."""
    monkeypatch.setattr(hf.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    from warmstart.data.load import Columns, load

    folder = tmp_path / "files"
    folder.mkdir()
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"text": TEXTS[:5], "label": LABELS[:5]}).to_csv(folder / "test.csv", index=False)
    data, test = load(f"hf:{folder}", Columns())
    _same(data)
    assert test.inputs == TEXTS[:5] and data.source == f"hf:{folder}[train] column 'text'"
    with pytest.raises(DataError, match=r"hf:.*nothing-here: could not load it with datasets.load_dataset"):
        load(f"hf:{tmp_path / 'nothing-here'}", Columns())
