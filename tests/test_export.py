"""ONNX export: parity with PyTorch for text and images, merged adapters, int8, refusal on a parity failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_images
from warmstart.artifact import save_artifact
from warmstart.data import Dataset, from_arrays
from warmstart.errors import ArtifactError, ExportError
from warmstart.export import OnnxModel, export_onnx
from warmstart.run import fit_run
from warmstart.techniques import get_technique

pytest.importorskip("onnxruntime")


def fit_text(tiny_bert_dir, text_data, text_test, tmp_path, technique="probe", **params):
    out = tmp_path / f"art-{technique}"
    fit_run(
        text_data,
        test=text_test,
        backbone=str(tiny_bert_dir),
        technique=technique,
        seed=0,
        params={"progress": False, "precision": "fp32", **params},  # compared with fp32 ONNX to 1e-4
        output=out,
    )
    return out


def test_text_probe_export_matches_pytorch_and_runs_without_torch_preprocessing(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    from warmstart.artifact import load_artifact

    art = fit_text(tiny_bert_dir, text_data, text_test, tmp_path)
    rep = export_onnx(art, tmp_path / "onnx", data=text_test, int8=True)
    assert rep.parity["fp32"]["max_abs_diff"] <= 1e-4 and rep.parity["fp32"]["argmax_agreement"] == 1.0
    assert set(rep.rows_per_second) == {"torch", "fp32", "int8"} and rep.accuracy is not None
    files = {
        p.relative_to(tmp_path / "onnx").as_posix() for p in (tmp_path / "onnx").rglob("*") if p.is_file()
    }
    assert {"model.onnx", "model.int8.onnx", "preprocess.json", "labels.json", "export.json"} <= files
    assert "tokenizer/tokenizer.json" in files
    meta = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert meta["parity"]["fp32"]["argmax_agreement"] == 1.0 and meta["rows"] == len(text_test)
    # the standalone runner (tokenizers + onnxruntime) predicts what the artifact predicts, on new texts too
    model = load_artifact(art)
    texts = ["the team won the match", "new laptop chip and code", "", "soup " * 200]
    onnx = OnnxModel(tmp_path / "onnx")
    np.testing.assert_allclose(onnx.predict_proba(texts), model.predict_proba(texts), atol=1e-4)
    assert list(onnx.predict(texts)) == list(model.predict(texts))
    int8 = OnnxModel(tmp_path / "onnx", model_file="model.int8.onnx")
    assert int8.predict_proba(texts).shape == (4, 3)


def test_tuned_text_export_with_an_unmerged_lora_adapter(tiny_bert_dir, text_data, text_test, tmp_path):
    art = fit_text(tiny_bert_dir, text_data, text_test, tmp_path, "lora", epochs=1, merge=False)
    rep = export_onnx(art, tmp_path / "onnx", data=text_test)
    assert rep.parity["fp32"]["max_abs_diff"] <= 1e-4 and rep.parity["fp32"]["argmax_agreement"] == 1.0


def test_image_finetune_export_takes_raw_pixels_and_matches(tiny_image_backbone, tmp_path):
    x, y = make_images(8, size=40)
    data = from_arrays(x, y)
    est = get_technique(
        "finetune", backbone=tiny_image_backbone, epochs=1, progress=False, seed=0, precision="fp32"
    ).fit(data)
    save_artifact(est, tmp_path / "art", embed_backbone=True)
    xt, yt = make_images(4, size=40, seed=5)
    test = from_arrays(xt, yt)
    rep = export_onnx(tmp_path / "art", tmp_path / "onnx", data=test)
    assert rep.parity["fp32"]["argmax_agreement"] == 1.0 and rep.parity["fp32"]["max_abs_diff"] <= 1e-4
    pre = json.loads((tmp_path / "onnx" / "preprocess.json").read_text())
    assert pre["inputs"] == ["pixels"] and pre["size"] == 32
    np.testing.assert_allclose(
        OnnxModel(tmp_path / "onnx").predict_proba(xt), est.predict_proba(xt), atol=1e-4
    )
    assert rep.artifact is None and "predicts in" not in rep.summary()  # fp32: the reference is the artifact


def test_the_report_says_how_a_bf16_artifact_itself_predicts(tiny_image_backbone, tmp_path, monkeypatch):
    """An artifact that predicts in bf16 is compared with the fp32 export as it predicts: the share of rows with
    the same top class and its own accuracy, with a note when they differ on more than 1% of rows."""
    import warmstart.export as ex
    from warmstart.artifact import load_artifact

    x, y = make_images(8, size=40)
    est = get_technique(
        "finetune", backbone=tiny_image_backbone, epochs=1, progress=False, seed=0, precision="bf16"
    ).fit(from_arrays(x, y))
    save_artifact(est, tmp_path / "art", embed_backbone=True)
    xt, yt = make_images(12, size=40, seed=5)
    test = from_arrays(xt, yt)
    monkeypatch.setattr(ex, "AGREEMENT_NOTE", 1.01)  # so that the note shows whatever the agreement
    rep = export_onnx(tmp_path / "art", tmp_path / "onnx", data=test, rounds=1)
    own = load_artifact(tmp_path / "art", device="cpu").predict_proba(test)
    exported = OnnxModel(tmp_path / "onnx").predict_proba(xt)
    assert rep.artifact["precision"] == "bf16"
    assert rep.artifact["argmax_agreement"] == pytest.approx((own.argmax(1) == exported.argmax(1)).mean())
    truth = np.asarray([str(v) for v in yt])
    assert rep.artifact["accuracy"] == pytest.approx(
        (est.classes_[own.argmax(1)].astype(str) == truth).mean()
    )
    text = rep.summary()
    assert "the artifact itself predicts in bf16 here" in text and "refit with --precision fp32" in text
    saved = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert saved["artifact"] == rep.artifact


def _skew_export(monkeypatch, shift: float) -> None:
    """Export a graph whose head's biases are ``shift``, 0 and ``-shift`` off the model checked against."""
    import warmstart.export as ex

    real = ex._torch_export

    def skewed(pipe, bb, path):
        with torch.no_grad():
            pipe.head.linear.bias.add_(torch.tensor([shift, 0.0, -shift]))
            real(pipe, bb, path)
            pipe.head.linear.bias.sub_(torch.tensor([shift, 0.0, -shift]))

    monkeypatch.setattr(ex, "_torch_export", skewed)


def test_failed_parity_is_loud_and_writes_nothing(tiny_bert_dir, text_data, text_test, tmp_path, monkeypatch):
    art = fit_text(tiny_bert_dir, text_data, text_test, tmp_path)
    _skew_export(monkeypatch, 3.0)
    with pytest.raises(ExportError, match="does not reproduce PyTorch"):
        export_onnx(art, tmp_path / "onnx", data=text_test)
    assert not (tmp_path / "onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx")]


def test_a_model_that_sensitive_to_rounding_is_checked_against_fp64(
    tiny_bert_dir, text_data, text_test, tmp_path, monkeypatch
):
    """Where PyTorch fp32 itself is off the exact (fp64) result by more than ``atol``, the export is judged
    against fp64 instead, within ten times PyTorch fp32's own error; a wrong graph is still refused."""
    import warmstart.export as ex

    art = fit_text(tiny_bert_dir, text_data, text_test, tmp_path)
    real = ex._torch_proba

    def rounded(pipe, bb, rows, batch_size, dtype=torch.float32):  # fp32 as coarse as a deep model's can be
        out = real(pipe, bb, rows, batch_size, dtype)
        if dtype == torch.float32:
            out = out + np.where(np.arange(out.shape[1]) == 0, 3e-4, -3e-4 / (out.shape[1] - 1))
        return out.astype(np.float32)

    monkeypatch.setattr(ex, "_torch_proba", rounded)
    rep = export_onnx(art, tmp_path / "onnx", data=text_test, rounds=1)
    fp = rep.parity["fp32"]
    assert fp["max_abs_diff"] > 1e-4 and fp["reference"] == "torch fp64"
    assert 2.9e-4 < fp["torch_fp32_vs_fp64"] < 3.1e-4 and fp["allowed"] == pytest.approx(
        10 * fp["torch_fp32_vs_fp64"]
    )
    assert fp["fp64_max_abs_diff"] < 1e-5 and fp["fp64_argmax_agreement"] == 1.0
    assert fp["fp64_near_ties_flipped"] == 0
    meta = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert meta["parity"]["fp32"]["reference"] == "torch fp64"
    assert "vs the model in fp64" in rep.summary() and "every row but 0 near tie(s)" in rep.summary()
    # ten times that noise is the most it forgives: a graph 5e-3 off is refused
    _skew_export(monkeypatch, 0.03)
    with pytest.raises(ExportError, match="against the model in fp64"):
        export_onnx(art, tmp_path / "onnx2", data=text_test, rounds=1)
    assert not (tmp_path / "onnx2").exists()


def test_fp64_parity_forgives_only_near_ties_and_rounding_sized_differences():
    from pathlib import Path

    from warmstart.export import _check_parity

    exact = np.array([[0.5, 0.499, 0.001], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    ref = exact + np.array([[4e-4, -4e-4, 0], [0, 0, 0], [0, 0, 0]])  # PyTorch fp32: 4e-4 off, over atol
    # ONNX swaps the first row's near tie (0.001 apart, within 10 x 4e-4): accepted, and counted
    onnx = exact + np.array([[-1e-3, 1e-3, 0], [0, 0, 0], [0, 0, 0]])
    fp = {"max_abs_diff": float(np.abs(onnx - ref).max()), "argmax_agreement": 2 / 3}
    _check_parity(Path("a"), fp, onnx, ref, lambda: exact, 1e-4)
    assert fp["fp64_near_ties_flipped"] == 1 and fp["allowed"] == pytest.approx(4e-3)
    assert fp["fp64_argmax_agreement"] == pytest.approx(2 / 3)
    # a swap the exact model does not call close is refused, however small the probabilities' difference
    wide = np.array([[0.5, 0.49, 0.01], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    onnx = wide + np.array([[-6e-3, 6e-3, 0], [0, 0, 0], [0, 0, 0]])
    fp = {"max_abs_diff": 1.0, "argmax_agreement": 2 / 3}
    with pytest.raises(ExportError, match="another top class on 1 row"):
        _check_parity(Path("a"), fp, onnx, wide + (ref - exact), lambda: wide, 1e-4)
    # so is one rounding-sized swap where the probabilities are off by more than allowed elsewhere
    onnx = exact + np.array([[-1e-3, 1e-3, 0], [0, 0, 0], [-5e-3, 0, 5e-3]])
    with pytest.raises(ExportError, match="allowed 0.004"):
        _check_parity(
            Path("a"), {"max_abs_diff": 1.0, "argmax_agreement": 0.5}, onnx, ref, lambda: exact, 1e-4
        )
    # a model within atol of PyTorch is never compared with fp64
    _check_parity(Path("a"), {"max_abs_diff": 5e-5, "argmax_agreement": 1.0}, ref, ref, None, 1e-4)


def test_export_needs_held_out_rows_and_a_complete_artifact(tiny_bert_dir, text_data, text_test, tmp_path):
    art = fit_text(tiny_bert_dir, text_data, text_test, tmp_path)
    with pytest.raises(ExportError, match="held-out"):
        export_onnx(art, tmp_path / "onnx")
    with pytest.raises(ExportError, match="empty"):
        export_onnx(art, tmp_path / "onnx", data=Dataset([], None, "text"))
    export_onnx(art, tmp_path / "onnx", data=text_test)
    (tmp_path / "onnx" / "labels.json").write_text('["x", "y", "z"]')
    with pytest.raises(ArtifactError, match="differ"):
        OnnxModel(tmp_path / "onnx")


def test_the_quantizer_warning_is_dropped_and_the_root_logger_left_as_it_was(caplog):
    """It was silenced by raising the root logger's level to ERROR during quantisation, and the module-level
    ``logging.warning`` installed a handler on a bare root logger."""
    import logging

    from warmstart.export import quiet_quantizer

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with caplog.at_level(logging.WARNING), quiet_quantizer():
        logging.warning("Please consider pre-processing before quantization. See ...")
        logging.warning("a warning of the user's own")
    assert [r.getMessage() for r in caplog.records] == ["a warning of the user's own"]
    assert root.level == level and root.handlers == handlers and root.filters == []


def test_quiet_transformers_leaves_progress_bars_as_the_user_set_them():
    from transformers.utils import logging as hf_logging

    from warmstart.backbones.hf_common import quiet_transformers

    hf_logging.disable_progress_bar()
    try:
        with quiet_transformers():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # it turned them back on
    finally:
        hf_logging.enable_progress_bar()
    with quiet_transformers():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
