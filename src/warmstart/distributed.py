"""Data-parallel training through torch.distributed: gloo on CPU, NCCL on GPU.

Launch any training command with ``torchrun`` and it runs data-parallel::

    torchrun --nproc_per_node 2 -m warmstart.cli fit --data trec --technique finetune --output runs/trec-ddp

Semantics (see docs/scaling.md): every rank builds the same seeded batches; each global batch of ``batch_size``
rows is split by rank (rows ``rank::world_size``), each rank's loss is its rows' summed loss divided by the
global batch size, and gradients are summed across ranks before the optimizer step, so a step equals the
single-process step on the whole batch (up to floating-point summation order; dropout masks and BatchNorm
statistics are drawn per rank). Only rank 0 writes checkpoints and the artifact and shows progress; every rank
resumes from the same checkpoint.
"""

from __future__ import annotations

import os

import torch


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` (or any launcher setting WORLD_SIZE, RANK, MASTER_ADDR and
    MASTER_PORT) describes; gloo on CPU, NCCL when CUDA is available. Returns whether this run is distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum gradients across ranks. A parameter that has a gradient on any rank gets one on every rank (zeros
    where it had none), and one that has none anywhere keeps none, as in a single process."""
    if not is_distributed() or not params:
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    flat = torch.cat([p.grad.reshape(-1).float() for p in live])
    torch.distributed.all_reduce(flat)
    start = 0
    for p in live:
        n = p.grad.numel()
        p.grad.copy_(flat[start : start + n].view_as(p.grad))
        start += n


def all_reduce_sum(value: float) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t.item())
