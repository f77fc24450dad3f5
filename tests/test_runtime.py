"""The device and precision layer, on the CPU: resolution and its errors, every precision through the training
loop (fp16 with its gradient scaler), resume with the new checkpoint contents, and the feature-cache key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from warmstart import runtime
from warmstart.backbones import get_backbone
from warmstart.cli import main
from warmstart.errors import ParameterError
from warmstart.features import FeatureCache
from warmstart.techniques import get_technique
from warmstart.techniques.train import CHECKPOINT_VERSION, Interrupted

from .conftest import ctrl_c_at_step

FAST = {"epochs": 2, "min_steps": 0, "batch_size": 16, "progress": False, "device": "cpu"}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")


def test_resolve_names_the_cpu_and_each_precision():
    for p in ("fp32", "bf16", "fp16"):
        rt = runtime.resolve("cpu", p)
        assert rt.device == torch.device("cpu") and rt.precision == p
    assert runtime.resolve("cpu", "fp32").amp_dtype is None
    assert runtime.resolve("cpu", "bf16").amp_dtype is torch.bfloat16
    assert runtime.resolve("cpu", "fp16").grad_scaler() is not None
    assert runtime.resolve("cpu", "bf16").grad_scaler() is None


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    monkeypatch.setattr(runtime, "fast_bf16_cpu", lambda: True)
    assert runtime.resolve("cpu", "auto").precision == "bf16"
    monkeypatch.setattr(runtime, "fast_bf16_cpu", lambda: False)
    assert runtime.resolve("cpu", "auto").precision == "fp32"


@no_cuda
def test_auto_device_is_the_cpu_without_an_accelerator():
    if runtime._mps_available():
        pytest.skip("this machine has MPS")
    assert runtime.resolve("auto", "fp32").device.type == "cpu"


@no_cuda
@pytest.mark.parametrize(
    "device, msg",
    [
        ("cuda", r"no CUDA device is visible .* use --device cpu"),
        ("cuda:1", r"no CUDA device is visible"),
        ("tpu", r"unknown device 'tpu'; use auto, cpu, cuda, cuda:N"),
    ],
)
def test_devices_that_are_not_there_are_refused_by_name(device, msg):
    with pytest.raises(ParameterError, match=msg):
        runtime.resolve(device, "auto")


def test_unknown_precision_is_refused():
    with pytest.raises(ParameterError, match=r"unknown precision 'fp8'"):
        runtime.resolve("cpu", "fp8")


@no_cuda
def test_cli_reports_a_missing_gpu_without_a_traceback(tmp_path, tiny_bert_dir, capsys):
    import pandas as pd

    from tests.conftest import make_sentences

    texts, labels = make_sentences(4)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "t.csv", index=False)
    args = ["fit", "--data", str(tmp_path / "t.csv"), "--backbone", str(tiny_bert_dir), "--device", "cuda"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err


def test_cli_refuses_conflicting_precisions(tmp_path, tiny_bert_dir, capsys):
    import pandas as pd

    from tests.conftest import make_sentences

    texts, labels = make_sentences(4)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "t.csv", index=False)
    args = ["rank", "--data", str(tmp_path / "t.csv"), "--backbones", str(tiny_bert_dir)]
    assert main([*args, "--bf16", "--precision", "fp16"]) == 2
    assert "conflicting precisions" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_learns_and_really_runs_in_low_precision(
    precision, tiny_bert_dir, text_data, text_test
):
    bb = get_backbone(str(tiny_bert_dir))
    params = {**FAST, "epochs": 4, "lr": 1e-3}
    low = get_technique("finetune", backbone=bb, precision=precision, **params).fit(text_data)
    full = get_technique("finetune", backbone=bb, precision="fp32", **params).fit(text_data)
    assert low.runtime_.precision == precision and low.fitted_config()["runtime"]["precision"] == precision
    assert (low.predict(text_data) == np.array(text_data.labels)).mean() >= 0.95  # it learned (fp32: 1.0)
    assert low.history_[-1]["train_loss"] < 0.5 * low.history_[0]["train_loss"]
    p_low, p_full = low.predict_proba(text_test), full.predict_proba(text_test)
    assert (p_low.argmax(1) == p_full.argmax(1)).mean() >= 0.9
    assert np.abs(p_low - p_full).max() > 1e-6  # autocast was on: the numbers are not fp32's


def test_fp16_checkpoint_holds_the_scaler_and_rng_states_and_resumes_exactly(
    tmp_path, tiny_bert_dir, text_data, text_test
):
    bb = get_backbone(str(tiny_bert_dir))
    params = {**FAST, "precision": "fp16", "checkpoint_dir": str(tmp_path / "ckpt")}
    whole = get_technique("finetune", backbone=bb, **params).fit(text_data)
    broken = get_technique("finetune", backbone=bb, **params)
    with ctrl_c_at_step(3), pytest.raises(Interrupted):
        broken.fit(text_data)
    folder = next((tmp_path / "ckpt").glob("*"))
    tensors = torch.load(folder / "state.pt", weights_only=True)
    assert set(tensors["rng"]) >= {"cpu"} and "scale" in tensors["scaler"]
    assert (
        json.loads((folder / "state.json").read_text())["version"] == CHECKPOINT_VERSION >= 2
    )  # scaler, RNGs
    resumed = get_technique("finetune", backbone=bb, **params).fit(text_data)
    assert resumed.history_ == whole.history_
    np.testing.assert_allclose(resumed.predict_proba(text_test), whole.predict_proba(text_test), atol=1e-6)


def test_feature_cache_keys_differ_by_precision(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache()
    keys = {p: cache.key(bb, text_data, p) for p in ("fp32", "bf16", "fp16")}
    assert len(set(keys.values())) == 3
    resolved = runtime.resolve("cpu", "auto").precision
    assert cache.key(bb, text_data, "auto") == keys[resolved]


def test_fp16_features_agree_with_fp32(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))
    a = bb.encode(text_data.inputs, progress=False, precision="fp32")
    b = bb.encode(text_data.inputs, progress=False, precision="fp16")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999 and np.abs(a - b).max() > 0


def test_backbone_to_moves_and_reports_its_device(tiny_bert_dir):
    bb = get_backbone(str(tiny_bert_dir))
    assert bb.to("cpu") is bb and bb.device == torch.device("cpu")
    with pytest.raises(ParameterError, match="unknown device"):
        bb.to("gpu0")


def test_old_artifact_parameters_are_read_in_todays_names():
    from warmstart.artifact import _upgrade_params

    assert _upgrade_params({"bf16": True, "C": 1})["precision"] == "bf16"
    assert _upgrade_params({"bf16": False})["precision"] == "fp32"
    assert _upgrade_params({"bf16": "auto"}) == {"precision": "auto"}


def test_worker_processes_collate_the_same_batches(tiny_image_backbone):
    """The DataLoader path (used by default where a GPU waits for decoded images) gives the same features and
    the same training as collating in this process."""
    from tests.conftest import make_images
    from warmstart.data import from_arrays

    x, y = make_images(6, size=32)
    data = from_arrays(x, y)
    here = tiny_image_backbone.encode(data, progress=False, num_workers=0)
    workers = tiny_image_backbone.encode(data, progress=False, num_workers=2, batch_size=4)
    np.testing.assert_allclose(workers, here, atol=1e-6)
    params = {**FAST, "precision": "fp32", "seed": 0}
    a = get_technique("finetune", backbone=tiny_image_backbone, num_workers=0, **params).fit(data)
    b = get_technique("finetune", backbone=tiny_image_backbone, num_workers=2, **params).fit(data)
    assert a.history_ == b.history_
    np.testing.assert_allclose(a.predict_proba(data), b.predict_proba(data), atol=1e-6)


def test_a_cpu_run_records_which_cpu_and_bf16_instructions_computed_it(monkeypatch):
    # bf16 results differ between AMX, AVX512-BF16 and emulated kernels, so a record must name the CPU
    from warmstart import runtime

    monkeypatch.setattr(runtime, "cpu_info", lambda: ("Some CPU", frozenset({"avx2", "avx512_bf16"})))
    record = runtime.resolve("cpu", "fp32").describe()
    assert record == {
        "device": "cpu",
        "precision": "fp32",
        "device_name": "Some CPU",
        "bf16_isa": "avx512_bf16",
    }
    monkeypatch.setattr(runtime, "cpu_info", lambda: ("Other", frozenset({"amx_bf16", "avx512_bf16"})))
    assert runtime.resolve("cpu", "fp32").describe()["bf16_isa"] == "amx_bf16"
    monkeypatch.setattr(runtime, "cpu_info", lambda: ("Old", frozenset({"avx2"})))
    assert runtime.resolve("cpu", "fp32").describe()["bf16_isa"] == "none"


def test_logistic_regression_fits_run_with_one_blas_thread(tiny_bert_dir, text_data, monkeypatch):
    # two BLAS threads made L-BFGS's small updates 3x slower in CPU time; the probe, its word-feature variant and
    # the TF-IDF baseline must fit under one, and leave the thread count as it was
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    from warmstart.baselines import tfidf_logreg
    from warmstart.techniques import get_technique

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen, real = [], LogisticRegression.fit
    monkeypatch.setattr(
        LogisticRegression, "fit", lambda self, *a, **k: seen.append(blas_threads()) or real(self, *a, **k)
    )
    before = blas_threads()
    get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(text_data)
    get_technique("probe", backbone=str(tiny_bert_dir), lexical="tfidf", progress=False).fit(text_data)
    tfidf_logreg(text_data, text_data)
    # the features' own phase, which the contrastive head and the technique recommender call directly
    rng = np.random.default_rng(0)
    get_technique("probe", progress=False).fit_features(rng.normal(size=(30, 4)), np.arange(30) % 3, 3)
    assert seen and all(s == {1} for s in seen), seen
    assert blas_threads() == before
