"""A real `warmstart fit` process, killed with SIGKILL just after a periodic checkpoint or stopped with Ctrl-C,
resumes from that checkpoint when the command is run again and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_sentences

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def torch_distributed_available() -> bool:
    import torch

    return torch.distributed.is_available()


CODE = "import sys; from warmstart.cli import main; sys.exit(main(sys.argv[1:]))"
EPOCHS = 30  # long enough (210 optimiser steps) to be caught mid-run; patience off so no epoch is skipped


def _argv(data: Path, bert: Path, out: Path) -> list[str]:
    params = [
        f"epochs={EPOCHS}",
        "patience=null",
        "batch_size=4",
        "checkpoint_every=3",
        "checkpoint_seconds=0",
    ]
    argv = [
        "fit",
        "--data",
        str(data),
        "--backbone",
        str(bert),
        "--technique",
        "finetune",
        "--precision",
        "fp32",
    ]
    for p in params:
        argv += ["--param", p]
    return [*argv, "-o", str(out)]


def _start(argv: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "WARMSTART_HOME": str(home), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CODE, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT at its default, as a terminal gives it: a suite run in the background of a non-interactive shell
        # has it ignored, and a child inheriting that would never see Ctrl-C
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _step_on_disk(home: Path) -> int:
    """The optimiser step of the newest complete checkpoint (state.json is written last), 0 when none."""
    for meta in (home / "checkpoints").glob("*/state.json"):
        try:
            return json.loads(meta.read_text())["state"]["step"]
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def _interrupt_after(proc: subprocess.Popen, home: Path, step: int, sig: int) -> int:
    """Send ``sig`` once a checkpoint at ``step`` or later is on disk; the checkpoint's step."""
    deadline = time.monotonic() + 240
    while (seen := _step_on_disk(home)) < step:
        assert proc.poll() is None, f"the fit ended before step {step}: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(sig)
    return seen


def _result(out: Path) -> dict:
    """What must match an uninterrupted run: the epoch history, the test scores, and the trained weights' bytes."""
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    weights = {k: v for k, v in manifest.items() if k.endswith(".safetensors")}
    return {k: metrics[k] for k in ("history", "accuracy", "confusion_matrix")} | {"weights": weights}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert_dir):
    """The data, and the result of one uninterrupted run."""
    root = tmp_path_factory.mktemp("crash")
    texts, labels = make_sentences(12, seed=3)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "data.csv", index=False)
    proc = _start(_argv(root / "data.csv", tiny_bert_dir, root / "ref"), root / "home-ref")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return root, _result(root / "ref")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_killed_fit_resumes_from_its_checkpoint(reference, tiny_bert_dir, tmp_path, sig):
    root, expected = reference
    argv = _argv(root / "data.csv", tiny_bert_dir, tmp_path / "out")
    home = tmp_path / "home"
    proc = _start(argv, home)
    killed_at = _interrupt_after(proc, home, 30, sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: a final checkpoint, a message, exit status 130
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted" in err.lower() and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "out" / "warmstart.json").exists()
    at = _step_on_disk(home)
    assert at >= killed_at > 0

    again = _start(argv, home)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    line = next(ln for ln in err.splitlines() if ln.startswith("resuming from step"))
    resumed, total = (int(v) for v in line.split()[3].split("/"))
    assert resumed == at and 0 < resumed < total  # from the checkpoint on disk, not from the start
    assert _result(tmp_path / "out") == expected  # and it ends where the uninterrupted run ends
    assert not list((home / "checkpoints").glob("*/state.json"))  # a finished run removes its checkpoint


@pytest.mark.skipif(not torch_distributed_available(), reason="torch.distributed missing")
def test_a_killed_torchrun_fit_resumes_on_both_ranks(reference, tiny_bert_dir, tmp_path):
    """Two gloo ranks under torchrun, killed together with SIGKILL after a checkpoint; the rerun resumes from
    rank 0's checkpoint on both ranks and ends where an uninterrupted torchrun run ends."""
    root, _ = reference
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")

    def start(out: Path, home: Path) -> subprocess.Popen:
        argv = _argv(root / "data.csv", tiny_bert_dir, out)
        env = {**os.environ, "WARMSTART_HOME": str(home), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "warmstart.cli", *argv]
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )

    ref = start(tmp_path / "ref", tmp_path / "home-ref")
    _, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]
    home = tmp_path / "home"
    proc = start(tmp_path / "out", home)
    deadline = time.monotonic() + 240
    while _step_on_disk(home) < 30:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    psutil = pytest.importorskip("psutil")
    tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in tree:  # torchrun and both workers at once (the workers run in sessions of their own)
        os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    at = _step_on_disk(home)
    assert at >= 30, sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    again = start(tmp_path / "out", home)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    lines = [ln for ln in err.splitlines() if "resuming from step" in ln]
    assert lines and f"resuming from step {at}/" in lines[0], (at, err[-3000:])
    got, want = _result(tmp_path / "out"), _result(tmp_path / "ref")
    assert got["weights"] == want["weights"] and got["accuracy"] == want["accuracy"]
    assert got["confusion_matrix"] == want["confusion_matrix"]
    # every epoch's steps, validation scores and training loss: the loss is what shows each rank's dropout
    # masks (rank 1 resuming with rank 0's generators logged other losses from the resumed epoch on), while the
    # weights compared above are the best epoch's, which may come before the kill
    assert got["history"] == want["history"]
