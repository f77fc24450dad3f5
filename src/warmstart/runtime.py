"""Where tensors live and in what precision they are computed, resolved once and used everywhere.

``resolve(device, precision)`` turns the user's words into a ``Runtime``:

- device ``auto``: the CUDA device if one is visible (under ``torchrun``, the one of this process's
  ``LOCAL_RANK``), else Apple's MPS, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` ask for one.
- precision ``auto``: bf16 where the hardware computes it natively (a CUDA GPU that supports it, a CPU with
  AVX512-BF16 or AMX), else fp32; ``fp16`` trains with a gradient scaler.

Encoding, the training loop, predict, serve and the cost records all take their device and precision from a
``Runtime``, so no code path assumes the CPU.

Example:
    >>> rt = resolve("cpu", "fp32")
    >>> rt.device.type, rt.precision, rt.amp_dtype is None
    ('cpu', 'fp32', True)
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .errors import ParameterError
from .parallel import one_blas_thread  # noqa: F401  (its home is torch-free; imported from here too)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """This CPU's model name and instruction-set flags, from ``/proc/cpuinfo`` once per process (reading it
    queries every core: milliseconds on a large machine); ``("unknown CPU", {})`` where it cannot be read."""
    model, flags = "unknown CPU", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def fast_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX). Without it, bf16 on CPU is
    emulated and slower than fp32, so precision ``auto`` stays in fp32 there."""
    flags = cpu_info()[1]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``device`` (see the module docstring), with a clear error when it is absent."""
    if isinstance(device, torch.device):
        device = str(device)
    spec = str(device).strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise ParameterError(
                "device 'mps' was asked for, but Apple's Metal backend is not available here "
                "(torch.backends.mps.is_available() is False). Use --device cpu or --device auto."
            )
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ParameterError(
                f"device {device!r} was asked for, but no CUDA device is visible (torch {torch.__version__}, "
                f"torch.cuda.is_available() is False). Install a CUDA build of torch, or use --device cpu."
            )
        count = torch.cuda.device_count()
        if spec == "cuda":
            return torch.device("cuda", local_rank % count)
        index = spec.split(":", 1)[1]
        if not index.isdigit() or int(index) >= count:
            raise ParameterError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}."
            )
        return torch.device("cuda", int(index))
    raise ParameterError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N (N a GPU index) or mps.")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``precision`` on ``device``; ``auto`` picks bf16 where it is native."""
    if precision not in PRECISIONS:
        raise ParameterError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        if device.type == "cpu":
            return "bf16" if fast_bf16_cpu() else "fp32"
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ParameterError(
            f"precision 'bf16' was asked for, but {torch.cuda.get_device_name(device)} does not support it; "
            f"use --precision fp16 (with a gradient scaler) or fp32."
        )
    return precision


@dataclass(frozen=True)
class Runtime:
    """A resolved device and precision (``fp32``, ``bf16`` or ``fp16``)."""

    device: torch.device
    precision: str

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None in fp32."""
        return _DTYPES[self.precision]

    def autocast(self):
        """Mixed-precision autocast on this device, or a no-op context in fp32."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collated batch moved here; pinned host memory makes the copy to a GPU asynchronous."""
        if self.device.type == "cpu":
            return batch
        pin = self.device.type == "cuda"
        return {k: (v.pin_memory() if pin else v).to(self.device, non_blocking=pin) for k, v in batch.items()}

    def grad_scaler(self) -> Any | None:
        """A gradient scaler for fp16 training (fp16 gradients underflow without one), else None."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def describe(self) -> dict:
        """What a run records about where it ran."""
        out: dict[str, Any] = {"device": str(self.device), "precision": self.precision}
        if self.device.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(self.device)
        elif self.device.type == "cpu":
            # bf16 kernels differ between AMX, AVX512-BF16 and emulation, and so do their roundings: runs in bf16
            # on two CPUs can end apart, so a record says which CPU computed it
            model, flags = cpu_info()
            out["device_name"] = model
            out["bf16_isa"] = next((f for f in ("amx_bf16", "avx512_bf16") if f in flags), "none")
        return out


def resolve(device: str | torch.device = "auto", precision: str = "auto") -> Runtime:
    """Resolve the user's ``device`` and ``precision`` once (see the module docstring)."""
    dev = resolve_device(device)
    return Runtime(dev, resolve_precision(precision, dev))


def runtime_of(est: Any) -> dict:
    """What a run records about where a fitted estimator computed: its resolved device and precision, and
    how its backbone last extracted features (``encode``: attention, linear layout, tokens per batch, threads
    and whether they were measured on this CPU), where it says."""
    rt = getattr(est, "runtime_", None)
    if rt is None:
        params = est.get_params()
        rt = resolve(params.get("device", "auto"), params.get("precision", "fp32"))
    out = rt.describe()
    bb = getattr(est, "backbone_", None) or getattr(est, "backbone", None)
    settings = getattr(bb, "last_encode_settings", None)
    if settings is not None:
        out["encode"] = settings.describe()
    return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of ``t`` from whatever device it is on."""
    return t.detach().float().cpu().numpy()


# -- random state: every generator a resumed run must restore --------------------------------------------------
def tensor_version(tensor: torch.Tensor) -> int:
    """``tensor``'s version counter (it grows with each change in place), for caches of what was made from it;
    -1 for an inference tensor, which has none (made under ``torch.inference_mode``, it cannot be changed in
    place outside it)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return -1


def rng_state() -> dict[str, Any]:
    """torch's CPU generator and, where CUDA is in use, every CUDA generator."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | torch.Tensor) -> None:
    if isinstance(state, torch.Tensor):  # checkpoints of version 1 kept the CPU generator only
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


# -- accelerator memory and peak throughput, for the cost records ---------------------------------------------
def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated by torch on an accelerator since the last reset, or None on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


# Dense tensor-core peaks (FLOP/s, no sparsity) of common datacenter GPUs, from their makers' data sheets,
# keyed by a substring of torch.cuda.get_device_name; model FLOPs utilisation is reported only where known.
_PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 30e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "fp32": 31e12},
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
}


def peak_flops(rt: Runtime) -> float | None:
    """The device's documented peak FLOP/s at this precision, or None where it is not known."""
    if rt.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(rt.device)
    for key, peaks in _PEAK_FLOPS.items():
        if key in name:
            return peaks.get(rt.precision)
    return None
