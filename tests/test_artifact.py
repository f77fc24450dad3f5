import json

import numpy as np
import pytest

from warmstart.artifact import load_artifact, save_artifact, verify_artifact
from warmstart.backbones import register_backbone
from warmstart.data import from_arrays
from warmstart.errors import ArtifactError
from warmstart.run import fit_run


def test_fit_run_writes_complete_artifact_and_load_predicts_identically(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    out = tmp_path / "art"
    r = fit_run(
        text_data,
        test=text_test,
        backbone=str(tiny_bert_dir),
        shots=5,
        seed=1,
        params={"progress": False},
        output=out,
    )
    files = {p.name for p in out.iterdir()}
    assert {
        "warmstart.json",
        "labels.json",
        "backbone.json",
        "head.safetensors",
        "config.json",
        "splits.json",
        "metrics.json",
        "manifest.json",
    } <= files
    assert not any(p.suffix in (".pkl", ".pt", ".bin") for p in out.rglob("*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "timings"}
    assert np.array(metrics["confusion_matrix"]).sum() == len(text_test)
    config = json.loads((out / "config.json").read_text())
    assert config["n_train"] == 15 and config["shots"] == 5 and config["seed"] == 1
    assert len(json.loads((out / "splits.json").read_text())["train"]) == 15
    loaded = load_artifact(out)
    np.testing.assert_array_equal(loaded.predict_proba(text_test), r.estimator.predict_proba(text_test))
    assert list(loaded.classes_) == ["food", "sports", "tech"]


def test_tampered_file_is_refused(tiny_bert_dir, text_data, tmp_path):
    out = tmp_path / "art"
    fit_run(text_data, backbone=str(tiny_bert_dir), params={"progress": False}, output=out)
    labels = out / "labels.json"
    labels.write_text(labels.read_text().replace("food", "fool"))
    with pytest.raises(
        ArtifactError, match=r"labels.json: contents differ from the hash recorded at save time"
    ):
        load_artifact(out)


def test_half_written_artifact_is_refused(tiny_bert_dir, text_data, tmp_path):
    out = tmp_path / "art"
    fit_run(text_data, backbone=str(tiny_bert_dir), params={"progress": False}, output=out)
    (out / "head.safetensors").unlink()
    with pytest.raises(ArtifactError, match="head.safetensors: listed in the manifest but missing"):
        verify_artifact(out)
    (out / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_artifact(out)
    with pytest.raises(ArtifactError, match="no such artifact folder"):
        load_artifact(tmp_path / "nothing")


def test_crash_while_saving_keeps_the_previous_artifact(tiny_bert_dir, text_data, tmp_path, monkeypatch):
    out = tmp_path / "art"
    r = fit_run(text_data, backbone=str(tiny_bert_dir), params={"progress": False}, output=out)
    before = (out / "manifest.json").read_text()
    import warmstart.artifact as art

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(art, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_artifact(r.estimator, out)
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_changed_backbone_weights_are_detected(tiny_bert_dir, tiny_bert_dir_b, text_data, tmp_path):
    import shutil

    work = tmp_path / "bb"
    shutil.copytree(tiny_bert_dir, work)
    out = tmp_path / "art"
    fit_run(text_data, backbone=str(work), params={"progress": False}, output=out)
    shutil.copy(tiny_bert_dir_b / "model.safetensors", work / "model.safetensors")
    with pytest.raises(ArtifactError, match="different weights or preprocessing.*--embed-backbone"):
        load_artifact(out)


def test_embedded_backbone_survives_the_original_being_deleted(tiny_bert_dir, text_data, tmp_path):
    import shutil

    work = tmp_path / "bb"
    shutil.copytree(tiny_bert_dir, work)
    out = tmp_path / "art"
    r = fit_run(text_data, backbone=str(work), params={"progress": False}, output=out, embed_backbone=True)
    shutil.rmtree(work)
    loaded = load_artifact(out)
    np.testing.assert_array_equal(loaded.predict_proba(text_data), r.estimator.predict_proba(text_data))


def test_image_artifact_round_trip_by_registered_name(tiny_image_backbone, tmp_path):
    from tests.conftest import make_images

    register_backbone("tiny-lite-test", "image", "test only")(lambda **kw: tiny_image_backbone)
    tiny_image_backbone.name = tiny_image_backbone.source = "tiny-lite-test"
    x, y = make_images(10)
    out = tmp_path / "img-art"
    r = fit_run(
        from_arrays(x, y), backbone="tiny-lite-test", test_size=0.3, params={"progress": False}, output=out
    )
    assert r.metrics["accuracy"] >= 0.8
    xt, _ = make_images(3, seed=5)
    np.testing.assert_array_equal(load_artifact(out).predict_proba(xt), r.estimator.predict_proba(xt))
