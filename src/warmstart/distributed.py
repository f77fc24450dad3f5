"""Data-parallel training through torch.distributed: gloo on CPU, NCCL on GPU.

The process group is joined here; the gradient reduction itself is torch's ``DistributedDataParallel``, which the
training loop (``techniques/train.py``) wraps around the model.

Launch any training command with ``torchrun`` and it runs data-parallel::

    torchrun --nproc_per_node 2 -m warmstart.cli fit --data trec --technique finetune --output runs/trec-ddp

Semantics (see docs/scaling.md): every rank builds the same seeded batches; each global batch of ``batch_size``
rows is split by rank (rows ``rank::world_size``), each rank's loss is its rows' summed loss divided by the
global batch size, and ``DistributedDataParallel`` reduces the gradients across ranks before the optimizer step
(the loop scales each rank's backward pass by the world size, so the reduction sums them), so a step equals the
single-process step on the whole batch (up to floating-point summation order; dropout masks and BatchNorm
statistics are drawn per rank). Only rank 0 writes checkpoints and the artifact and shows progress; every rank
resumes from the same checkpoint, with its own random generators (the other ranks write theirs beside it).
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


def init_from_env(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` (or any launcher setting WORLD_SIZE, RANK, MASTER_ADDR and
    MASTER_PORT) describes: NCCL when this process trains on a CUDA device (``device``, resolved as
    ``runtime.resolve_device`` does), else gloo. Returns whether this run is distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from .runtime import resolve_device

    dev = resolve_device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(dev)
    torch.distributed.init_process_group(backend)
    return True


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the GPU only; gloo on the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(value: float) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t)
    return float(t.item())


def broadcast_flag(value: bool) -> bool:
    """Rank 0's ``value`` on every rank (a decision that must be the same everywhere, e.g. from rank 0's clock)."""
    if not is_distributed():
        return value
    t = torch.tensor([int(value)], dtype=torch.int64, device=_collective_device())
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())
