"""Data-parallel training on CPU (gloo): two processes take the same steps as one process on the same batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import _build_tiny_bert, make_sentences
from warmstart.data import Dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")


def _fit(model_dir: str, data: Dataset, **kw):
    from warmstart.techniques import get_technique

    return get_technique(
        "finetune",
        backbone=model_dir,
        epochs=2,
        batch_size=8,
        seed=0,
        progress=False,
        lr=1e-3,
        precision="fp32",  # the comparison is exact to rounding
        **{"device": "cpu", **kw},
    ).fit(data)


def _worker(rank: int, world: int, init_file: str, model_dir: str, data: Dataset, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        est = _fit(model_dir, data)
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in est.model_.state_dict().items()}, out)
            with open(out + ".json", "w") as f:
                json.dump({"history": est.history_, "flops": est.train_flops_}, f)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    model_dir = str(_build_tiny_bert(tmp_path / "bert", dropout=0.0))  # dropout masks would differ per rank
    texts, labels = make_sentences(15, seed=0)
    data = Dataset(texts, labels, "text", "synthetic")
    out = str(tmp_path / "ddp.pt")
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / "init"), model_dir, data, out), nprocs=2)
    ddp = torch.load(out, weights_only=True)
    meta = json.loads(open(out + ".json").read())

    torch.set_num_threads(1)
    single = _fit(model_dir, data)
    ref = single.model_.state_dict()
    from warmstart.backbones import get_backbone

    start = get_backbone(model_dir).module.state_dict()
    moved = max(float((ref[f"body.{k}"] - v).abs().max()) for k, v in start.items() if f"body.{k}" in ref)
    assert moved > 1e-3  # training really changed the weights
    for k, v in ref.items():
        assert torch.allclose(ddp[k], v, atol=2e-5, rtol=1e-4), k
    # the logged loss is the global batch's, and FLOPs add up over the ranks
    assert [h["train_loss"] for h in meta["history"]] == pytest.approx(
        [h["train_loss"] for h in single.history_], rel=1e-4
    )
    assert meta["flops"] == pytest.approx(single.train_flops_, rel=0.25)


def test_torchrun_fit_writes_one_artifact_from_rank_zero(tmp_path):
    model_dir = _build_tiny_bert(tmp_path / "bert")
    texts, labels = make_sentences(10, seed=0)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "warmstart.cli", "fit"]
    cmd += ["--data", str(tmp_path / "train.csv"), "--backbone", str(model_dir), "--technique", "finetune"]
    cmd += ["--param", "epochs=1", "--output", str(tmp_path / "art")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("artifact:") == 1  # rank 0 reports
    config = json.loads((tmp_path / "art" / "config.json").read_text())
    assert config["world_size"] == 2
    from warmstart.artifact import load_artifact

    assert len(load_artifact(tmp_path / "art").predict(texts[:3])) == 3
