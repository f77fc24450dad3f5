"""CUDA paths (marked ``gpu``; skipped without a CUDA device). scripts/gpu-check.sh runs them on a GPU machine.

Every technique fits on CUDA in bf16 and fp16; features agree with the CPU's; a run interrupted on CUDA resumes to
the uninterrupted result; the cost records hold GPU memory; two NCCL processes train as one (with 2 GPUs);
the server answers from a model on the GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from warmstart.backbones import get_backbone
from warmstart.techniques import TunedTechnique, available_techniques, get_technique
from warmstart.techniques.train import Interrupted

from .conftest import ctrl_c_at_step, make_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
FAST = {"epochs": 2, "min_steps": 0, "batch_size": 16, "progress": False}


def _params(name: str, **extra) -> dict:
    return {"progress": False, **extra} if name == "probe" else {**FAST, **extra}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", sorted(available_techniques()))
def test_every_technique_fits_and_predicts_on_cuda(name, precision, tiny_bert_dir, text_data, text_test):
    extra = {"merge": False} if name == "ia3" else {}
    est = get_technique(
        name, backbone=str(tiny_bert_dir), device="cuda", precision=precision, **_params(name, **extra)
    ).fit(text_data)
    proba = est.predict_proba(text_test)
    assert proba.shape == (len(text_test), 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-4)
    assert est.backbone_.device.type == "cuda"
    if isinstance(est, TunedTechnique):
        ran = est.fitted_config()["runtime"]
        assert ran["device"].startswith("cuda") and ran["precision"] == precision
        assert est.train_flops_ > 0


@pytest.mark.parametrize("name", ["finetune", "lora", "bitfit"])
def test_image_techniques_fit_on_cuda(name, tiny_image_backbone):
    x, y = make_images(8, size=32)
    from warmstart.data import from_arrays

    est = get_technique(name, backbone=tiny_image_backbone, device="cuda", precision="bf16", **FAST)
    est.fit(from_arrays(x, y))
    assert np.isfinite(est.predict_proba(x)).all() and est.backbone_.device.type == "cuda"


def test_finetune_learns_on_cuda(tiny_bert_dir, text_data):
    est = get_technique(
        "finetune",
        backbone=str(tiny_bert_dir),
        device="cuda",
        precision="bf16",
        lr=1e-3,
        **{**FAST, "epochs": 4},
    ).fit(text_data)
    assert (est.predict(text_data) == np.array(text_data.labels)).mean() >= 0.95


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_text_features_on_cuda_agree_with_the_cpu(precision, tiny_bert_dir, text_data):
    cpu = get_backbone(str(tiny_bert_dir)).encode(text_data.inputs, progress=False, precision="fp32")
    gpu = (
        get_backbone(str(tiny_bert_dir))
        .to("cuda")
        .encode(text_data.inputs, progress=False, precision=precision)
    )
    assert _cos(cpu, gpu).min() >= 0.999


def test_image_features_on_cuda_agree_with_the_cpu(tiny_image_backbone):
    import copy

    x, _ = make_images(6, size=32)
    cpu = tiny_image_backbone.encode(list(x), progress=False, precision="fp32")
    gpu = copy.deepcopy(tiny_image_backbone).to("cuda").encode(list(x), progress=False, precision="fp32")
    assert _cos(cpu, gpu).min() >= 0.999


def test_feature_cache_keeps_gpu_features_apart(tiny_bert_dir, text_data):
    from warmstart.features import FeatureCache

    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache()
    on_cpu = cache.key(bb, text_data, "fp32")
    assert cache.key(bb.to("cuda"), text_data, "fp32") != on_cpu


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_on_cuda_matches_the_uninterrupted_run(
    precision, tmp_path, tiny_bert_dir, text_data, text_test
):
    params = {**FAST, "device": "cuda", "precision": precision, "checkpoint_dir": str(tmp_path / "ckpt")}
    whole = get_technique("finetune", backbone=str(tiny_bert_dir), **params).fit(text_data)
    broken = get_technique("finetune", backbone=str(tiny_bert_dir), **params)
    with ctrl_c_at_step(5), pytest.raises(Interrupted):
        broken.fit(text_data)
    tensors = torch.load(next((tmp_path / "ckpt").glob("*/state.pt")), weights_only=True)
    assert "cuda" in tensors["rng"]  # the CUDA generators are part of the checkpoint
    resumed = get_technique("finetune", backbone=str(tiny_bert_dir), **params).fit(text_data)
    # CUDA's embedding backward adds with atomics, so the same steps agree to rounding, not bit for bit
    assert [h["train_loss"] for h in resumed.history_] == pytest.approx(
        [h["train_loss"] for h in whole.history_], rel=1e-3
    )
    np.testing.assert_allclose(resumed.predict_proba(text_test), whole.predict_proba(text_test), atol=1e-3)


def test_fit_run_records_the_gpu_and_its_memory(tmp_path, tiny_bert_dir, text_data, text_test):
    from warmstart.run import fit_run

    r = fit_run(
        text_data,
        test=text_test,
        backbone=str(tiny_bert_dir),
        technique="finetune",
        params={**FAST, "device": "cuda", "precision": "bf16"},
        output=tmp_path / "art",
    )
    assert r.metrics["runtime"]["device"].startswith("cuda") and r.metrics["runtime"]["precision"] == "bf16"
    assert r.metrics["cost"]["fit_gpu_peak_mb"] > 0 and r.metrics["cost"]["train_flops_per_s"] > 0
    config = json.loads((tmp_path / "art" / "config.json").read_text())
    assert config["runtime"]["device"].startswith("cuda")


def _nccl_worker(rank: int, world: int, init_file: str, model_dir: str, data, out: str) -> None:
    torch.cuda.set_device(rank)
    torch.distributed.init_process_group(
        "nccl", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        est = get_technique(
            "finetune", backbone=model_dir, device=f"cuda:{rank}", precision="fp32", lr=1e-3, seed=0, **FAST
        ).fit(data)
        if rank == 0:
            torch.save({k: v.detach().cpu() for k, v in est.model_.state_dict().items()}, out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs two GPUs")
def test_two_nccl_processes_match_one_process(tmp_path):
    from tests.conftest import _build_tiny_bert, make_sentences
    from warmstart.data import Dataset

    model_dir = str(_build_tiny_bert(tmp_path / "bert", dropout=0.0))
    texts, labels = make_sentences(15, seed=0)
    data = Dataset(texts, labels, "text", "synthetic")
    out = str(tmp_path / "ddp.pt")
    torch.multiprocessing.spawn(
        _nccl_worker, args=(2, str(tmp_path / "init"), model_dir, data, out), nprocs=2
    )
    ddp = torch.load(out, weights_only=True)
    single = get_technique(
        "finetune", backbone=model_dir, device="cuda:0", precision="fp32", lr=1e-3, seed=0, **FAST
    ).fit(data)
    for k, v in single.model_.state_dict().items():
        assert torch.allclose(ddp[k], v.cpu(), atol=1e-4, rtol=1e-3), k


def test_serve_answers_from_a_model_on_the_gpu(tmp_path, tiny_bert_dir, text_data, text_test):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from warmstart.artifact import save_artifact
    from warmstart.serve import create_app

    est = get_technique("finetune", backbone=str(tiny_bert_dir), device="cuda", **FAST).fit(text_data)
    folder = save_artifact(est, tmp_path / "art", embed_backbone=True)
    with TestClient(create_app(folder, device="cuda")) as client:
        info = client.get("/info").json()
        assert info["runtime"]["device"].startswith("cuda")
        r = client.post("/predict", json={"texts": list(text_test.inputs[:4])})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 4
    expected = est.predict_proba(text_test.subset(np.arange(4)))
    got = np.array([[p["probabilities"][str(c)] for c in est.classes_] for p in r.json()["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-4)
