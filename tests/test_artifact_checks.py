"""Artifact integrity, rule by rule: each way an artifact folder can be wrong is refused with a message naming
the file, output locations are refused before work, old parameters are upgraded, and a replaced artifact
leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from warmstart._io import sha256_file
from warmstart.artifact import (
    _find_backbone,
    _read_json,
    _upgrade_params,
    check_output,
    is_artifact,
    load_artifact,
    save_artifact,
    verify_artifact,
)
from warmstart.errors import ArtifactError


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir):
    from tests.conftest import make_sentences
    from warmstart.data import Dataset
    from warmstart.techniques import get_technique

    texts, labels = make_sentences(5)
    data = Dataset(texts, labels, "text")
    return get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(data), data


@pytest.fixture
def art(fitted, tmp_path):
    est, _ = fitted
    return save_artifact(est, tmp_path / "art", metrics={"accuracy": 1.0}, embed_backbone=True)


def _relist(art: Path) -> None:
    files = [p for p in art.rglob("*") if p.is_file() and p.name != "manifest.json"]
    (art / "manifest.json").write_text(json.dumps({str(p.relative_to(art)): sha256_file(p) for p in files}))


def test_a_saved_artifact_verifies_and_lists_every_file(art):
    manifest = verify_artifact(art)
    on_disk = {str(p.relative_to(art)) for p in art.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest) == on_disk and "metrics.json" in manifest and "backbone/config.json" in manifest
    assert all(manifest[k] == sha256_file(art / k) for k in manifest)
    assert is_artifact(art) and not is_artifact(art / "backbone")
    meta = json.loads((art / "warmstart.json").read_text())
    assert meta["format_version"] == 1 and meta["technique"] == "probe" and meta["modality"] == "text"
    assert "backbone" not in meta["params"] and meta["created"][:2] == "20"
    assert json.loads((art / "backbone.json").read_text())["embedded"] is True
    assert not (art / "config.json").exists()  # what was not given is not written


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-folder", "no such artifact folder"),
        ("no-manifest", "no manifest.json"),
        ("manifest-list", "not a manifest"),
        ("manifest-numbers", "not a manifest"),
        ("pickle", "weights.pt: a pickle-format file (.pt)"),
        ("pickle-upper", "W.PKL: a pickle-format file"),
        ("unlisted", "evil.py: not part of the artifact as saved (1 unlisted file(s))"),
        ("missing", "labels.json: listed in the manifest but missing"),
        ("changed", "labels.json: contents differ from the hash"),
        ("bad-json", "manifest.json: not valid JSON"),
    ],
)
def test_each_kind_of_damage_is_refused_naming_the_file(art, damage, message):
    if damage == "no-folder":
        shutil.rmtree(art)
    elif damage == "no-manifest":
        (art / "manifest.json").unlink()
    elif damage == "manifest-list":
        (art / "manifest.json").write_text("[]")
    elif damage == "manifest-numbers":
        (art / "manifest.json").write_text(json.dumps({"labels.json": 1}))
    elif damage in ("pickle", "pickle-upper"):
        (art / ("weights.pt" if damage == "pickle" else "W.PKL")).write_bytes(b"\x80\x04")
        _relist(art)  # even when the manifest lists it
    elif damage == "unlisted":
        (art / "evil.py").write_text("import os")
    elif damage == "missing":
        (art / "labels.json").unlink()
    elif damage == "changed":
        (art / "labels.json").write_text('["x", "y", "z"]')
    elif damage == "bad-json":
        (art / "manifest.json").write_text("{nope")
    with pytest.raises(ArtifactError) as e:
        verify_artifact(art)
    assert message in str(e.value)
    with pytest.raises(ArtifactError):
        load_artifact(art)


def test_load_refuses_other_formats_techniques_and_unlisted_records(art):
    meta = json.loads((art / "warmstart.json").read_text())
    (art / "warmstart.json").write_text(json.dumps({**meta, "format_version": 2}))
    _relist(art)
    with pytest.raises(
        ArtifactError, match="artifact format 2 is not supported by this warmstart \\(expects 1\\)"
    ):
        load_artifact(art)
    (art / "warmstart.json").write_text(json.dumps({**meta, "technique": "teleport"}))
    _relist(art)
    with pytest.raises(ArtifactError, match="technique 'teleport' is not available"):
        load_artifact(art)
    (art / "warmstart.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "params"}))
    _relist(art)
    with pytest.raises(ArtifactError, match="lacks the technique or its parameters"):
        load_artifact(art)
    (art / "warmstart.json").write_text("[1]")
    _relist(art)
    with pytest.raises(ArtifactError, match="lacks the technique"):
        load_artifact(art)
    (art / "warmstart.json").write_text(json.dumps(meta))
    (art / "evil.txt").write_text("x")
    load_artifact(art, verify=False)  # verify=False skips the folder checks (export's own copy uses it)


def test_load_predicts_as_saved_and_takes_the_device(art, fitted):
    est, data = fitted
    loaded = load_artifact(art, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(data), est.predict_proba(data))
    assert loaded.get_params()["device"] == "cpu"


def test_changed_backbone_fingerprint_is_refused(art):
    ref = json.loads((art / "backbone.json").read_text())
    (art / "backbone.json").write_text(json.dumps({**ref, "fingerprint": "0" * 16}))
    _relist(art)
    with pytest.raises(ArtifactError, match="has different weights or preprocessing.*--embed-backbone"):
        load_artifact(art)


def test_old_parameter_names_are_upgraded():
    assert _upgrade_params({"bf16": True, "C": 1}) == {"precision": "bf16", "C": 1}
    assert _upgrade_params({"bf16": False}) == {"precision": "fp32"}
    assert _upgrade_params({"bf16": "auto"}) == {"precision": "auto"}
    assert _upgrade_params({"bf16": True, "precision": "fp16"}) == {"precision": "fp16"}
    old = {"bf16": True}
    _upgrade_params(old)
    assert old == {"bf16": True}  # the caller's dict is left alone
    assert _upgrade_params({"C": 2}) == {"C": 2}


def test_a_backbone_is_found_by_source_then_by_name(tiny_bert_dir, tmp_path):
    bb = _find_backbone({"source": str(tiny_bert_dir), "name": "unused"})
    assert bb.num_features == 32
    bb = _find_backbone({"source": str(tmp_path / "gone"), "name": str(tiny_bert_dir)})
    assert bb.num_features == 32
    with pytest.raises(Exception, match="gone"):
        _find_backbone({"source": str(tmp_path / "gone"), "name": str(tmp_path / "gone")})
    with pytest.raises(Exception, match="gone"):
        _find_backbone({"source": str(tmp_path / "gone")})


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="x.json: missing; the artifact is incomplete"):
        _read_json(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ArtifactError, match="y.json: not valid JSON"):
        _read_json(tmp_path / "y.json")
    (tmp_path / "z.json").write_text('{"a": 1}')
    assert _read_json(tmp_path / "z.json") == {"a": 1}


def test_output_locations(tmp_path, monkeypatch, art):
    check_output(tmp_path / "new" / "deeper")  # does not exist yet: fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty")
    check_output(art)  # an artifact is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    with pytest.raises(ArtifactError, match="mine: exists and is not a warmstart artifact"):
        check_output(tmp_path / "mine")
    check_output(tmp_path / "mine", overwrite=True)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ArtifactError, match="f.txt: is a file, not an artifact folder"):
        check_output(tmp_path / "f.txt")
    check_output(tmp_path / "f.txt", overwrite=True)
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="needs a folder of its own"):
        check_output(".")
    monkeypatch.setenv("HOME", str(tmp_path / "mine"))
    with pytest.raises(ArtifactError, match="needs a folder of its own"):
        check_output(tmp_path / "mine", overwrite=True)
    with pytest.raises(ArtifactError, match="needs a folder of its own"):
        check_output("/", overwrite=True)
    with pytest.raises(ArtifactError, match="is a file, not a folder"):
        check_output(tmp_path / "f.txt" / "run")


def test_replacing_an_artifact_leaves_no_copy_and_a_crash_keeps_the_old_one(fitted, art, monkeypatch):
    est, _ = fitted
    before = sha256_file(art / "head.safetensors")
    save_artifact(est, art, metrics={"accuracy": 0.5})
    assert json.loads((art / "metrics.json").read_text()) == {"accuracy": 0.5}
    assert sorted(p.name for p in art.parent.iterdir()) == ["art"]  # no .old or temporary folder left
    assert sha256_file(art / "head.safetensors") == before
    import warmstart.artifact as artifact

    monkeypatch.setattr(artifact, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_artifact(est, art, metrics={"accuracy": 0.1})
    assert json.loads((art / "metrics.json").read_text()) == {"accuracy": 0.5}
    assert sorted(p.name for p in art.parent.iterdir()) == ["art"]
    verify_artifact(art)


def test_a_file_output_is_replaced_only_with_overwrite(fitted, tmp_path):
    est, _ = fitted
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(ArtifactError):
        save_artifact(est, target)
    save_artifact(est, target, overwrite=True)
    assert is_artifact(target) and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
