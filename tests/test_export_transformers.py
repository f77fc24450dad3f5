"""The transformers export: the folder loads with plain transformers (and sentence-transformers), the recipe in
its README reproduces the artifact's probabilities, and what cannot be exported is refused."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from transformers import AutoModel, AutoTokenizer

from warmstart.artifact import save_artifact
from warmstart.errors import ExportError
from warmstart.export_transformers import export_transformers
from warmstart.techniques import get_technique

from .conftest import make_sentences

TRAIN, LABELS = make_sentences(8, seed=0)
HELD_OUT, _ = make_sentences(4, seed=1)
FAST = {"epochs": 1, "min_steps": 3, "progress": False, "precision": "fp32"}


def _artifact(tmp_path, name, tiny_bert_dir, **params):
    est = get_technique(name, backbone=str(tiny_bert_dir), **params).fit(TRAIN, LABELS)
    return est, save_artifact(est, tmp_path / name)


def _readme_recipe(folder) -> dict:
    """Run the Python block of the exported README as a user would paste it."""
    text = (folder / "README.md").read_text()
    code = re.search(r"## Load with transformers.*?```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(code.replace("THIS_FOLDER", str(folder)), namespace)
    return namespace


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("probe", {"progress": False, "precision": "fp32"}),
        ("finetune", FAST),
        ("lora", {**FAST, "merge": False}),  # an unmerged adapter is merged into the exported weights
        ("contrastive", {**FAST, "steps": 3}),
    ],
)
def test_exported_folder_reproduces_the_artifact(name, params, tiny_bert_dir, tmp_path):
    est, art = _artifact(tmp_path, name, tiny_bert_dir, **params)
    report = export_transformers(art, data=HELD_OUT)
    out = tmp_path / f"{name}-transformers"
    assert report["folder"] == str(out) and report["rows"] == len(HELD_OUT)
    assert report["max_abs_diff"] <= 1e-4 and report["top_class_agreement"] == 1.0

    ns = _readme_recipe(out)  # the documented recipe, run outside warmstart
    want = est.predict_proba(HELD_OUT)
    np.testing.assert_allclose(ns["proba"].shape, (1, len(est.classes_)))
    got = ns["predict_proba_transformers"](str(out), HELD_OUT)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert ns["classes"] == [str(c) for c in est.classes_]

    # and the pieces load with transformers' own classes
    model = AutoModel.from_pretrained(out)
    assert type(model).__name__ == "BertModel"
    assert AutoTokenizer.from_pretrained(out)("ball goal")["input_ids"][0] == 2  # [CLS]
    assert json.loads((out / "export.json").read_text())["rows"] == len(HELD_OUT)


def test_sentence_transformers_loads_the_encoder(tiny_bert_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    est, art = _artifact(tmp_path, "finetune", tiny_bert_dir, **FAST)
    out = tmp_path / "st"
    export_transformers(art, out, data=HELD_OUT)
    st = SentenceTransformer(str(out), device="cpu")
    features = est.backbone_.encode(HELD_OUT, progress=False, precision="fp32")
    np.testing.assert_allclose(st.encode(HELD_OUT), features, atol=1e-5)


def test_a_failed_check_writes_nothing(tiny_bert_dir, tmp_path, monkeypatch):
    import warmstart.export_transformers as et

    _, art = _artifact(tmp_path, "probe", tiny_bert_dir, progress=False)
    real = et.predict_proba_transformers
    monkeypatch.setattr(et, "predict_proba_transformers", lambda f, t: real(f, t)[:, ::-1].copy())
    with pytest.raises(ExportError, match="does not reproduce the model on 12 held-out rows"):
        export_transformers(art, tmp_path / "out", data=HELD_OUT)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_image_models_are_refused(tiny_image_backbone, tmp_path):
    from .conftest import make_images

    x, y = make_images(3, size=24)
    est = get_technique("probe", backbone=tiny_image_backbone, progress=False).fit(x, y)
    art = save_artifact(est, tmp_path / "img", embed_backbone=True)
    with pytest.raises(ExportError, match="the transformers export is for text models.*Use --onnx"):
        export_transformers(art, data=x)


def test_cli_export_transformers(tiny_bert_dir, tmp_path, capsys):
    import pandas as pd

    from warmstart.cli import main

    pd.DataFrame({"text": TRAIN, "label": LABELS}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": HELD_OUT, "label": _}).to_csv(tmp_path / "test.csv", index=False)
    art = tmp_path / "art"
    fit = [
        "fit",
        "--data",
        str(tmp_path / "train.csv"),
        "--backbone",
        str(tiny_bert_dir),
        "--output",
        str(art),
    ]
    assert main(fit) == 0
    assert main(["export", str(art), "--transformers"]) == 0  # checked on the artifact's own test rows
    out = capsys.readouterr().out
    assert f"transformers folder: {tmp_path / 'art-transformers'}" in out and "same top class on 100%" in out
    assert main(["export", str(art), "--onnx", "--transformers", "--output", str(tmp_path / "x")]) == 2
    assert "export one format at a time" in capsys.readouterr().err
