"""What a run cost: wall time, CPU time, peak resident memory, energy, FLOPs.

Energy comes from Intel RAPL (``/sys/class/powercap/intel-rapl:N/energy_uj``, the CPU packages, so every
process on them counts) when those files are readable; otherwise it is an estimate, CPU-seconds times an assumed
power per busy core (``WARMSTART_WATTS_PER_CORE``, default 10 W), and says so in ``energy_method``.

On a CUDA device, the run also records torch's peak GPU memory (``torch.cuda.max_memory_allocated``) and, where
NVIDIA's management library answers (the ``nvidia-ml-py`` package, Volta or newer), the GPU's own energy counter.

Peak memory is sampled from ``/proc/self/statm`` every 20 ms on a background thread (and once at the end), so it
reports this run's peak rather than the process's lifetime maximum that ``getrusage`` gives. Short spikes
between samples can be missed; it is a measurement of the order of magnitude, not an exact bound.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident memory of this process now (falls back to the lifetime peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


WATTS_PER_CORE = 10.0
POWERCAP = "/sys/class/powercap"


def _rapl_domains(root: str | None = None) -> list[str]:
    """Top-level RAPL package domains whose energy counter this process can read."""
    try:
        root = root or POWERCAP
        names = sorted(n for n in os.listdir(root) if n.startswith("intel-rapl:") and n.count(":") == 1)
    except OSError:
        return []
    out = []
    for n in names:
        try:
            with open(os.path.join(root, n, "energy_uj")) as f:
                int(f.read())
            out.append(os.path.join(root, n))
        except (OSError, ValueError):
            continue
    return out


def _rapl_read(domains: list[str]) -> list[tuple[int, int]]:
    out = []
    for d in domains:
        with open(os.path.join(d, "energy_uj")) as f:
            e = int(f.read())
        try:
            with open(os.path.join(d, "max_energy_range_uj")) as f:
                top = int(f.read())
        except (OSError, ValueError):
            top = 0
        out.append((e, top))
    return out


def energy_estimate(cpu_seconds: float) -> tuple[float, str]:
    """Joules for ``cpu_seconds`` of busy CPU at the assumed power per core, and how that was reached."""
    watts = float(os.environ.get("WARMSTART_WATTS_PER_CORE", WATTS_PER_CORE))
    return cpu_seconds * watts, (
        f"estimate: CPU-seconds x {watts:g} W per busy core (RAPL not readable here; set "
        f"WARMSTART_WATTS_PER_CORE to your CPU's power per core)"
    )


@dataclass
class Cost:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    energy_joules: float = 0.0
    energy_method: str = ""
    gpu_peak_mb: float | None = None  # on a CUDA device: torch's peak allocated memory
    gpu_energy_joules: float | None = None  # on a CUDA device, where NVML reads its energy counter

    def to_dict(self) -> dict:
        return {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in asdict(self).items()
            if not (k.startswith("gpu_") and v is None)
        }


def _cuda_device() -> int | None:
    """The current CUDA device, if this process uses CUDA (torch is imported and has touched a GPU)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.current_device()


def _nvml_energy_mj(device: int) -> int | None:
    """The GPU's total energy counter in millijoules through NVML, or None where it cannot be read."""
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            pci = f"{props.pci_domain_id:08x}:{bus:02x}:{props.pci_device_id:02x}.0"
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device)
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # no library, no permission, an older GPU: the GPU's energy is not recorded
        return None


@contextmanager
def measure(interval: float = 0.02) -> Iterator[Cost]:
    """Measure the block: ``with measure() as cost: ...`` then read ``cost.wall_seconds`` etc.

    Example:
        >>> with measure() as c:
        ...     _ = sum(range(10000))
        >>> c.wall_seconds >= 0 and c.peak_rss_mb > 0
        True
    """
    cost = Cost()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    domains = _rapl_domains()
    energy_start = _rapl_read(domains) if domains else []
    gpu = _cuda_device()
    if gpu is not None:
        import torch

        torch.cuda.reset_peak_memory_stats(gpu)
    gpu_energy = _nvml_energy_mj(gpu) if gpu is not None else None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield cost
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], rss_bytes())
        cost.wall_seconds = time.perf_counter() - wall
        cost.cpu_seconds = time.process_time() - cpu
        cost.peak_rss_mb = peak[0] / 2**20
        cost.start_rss_mb = start_rss / 2**20
        if domains:
            used = 0
            for (e0, top), (e1, _) in zip(energy_start, _rapl_read(domains), strict=True):
                used += e1 - e0 if e1 >= e0 else e1 + top - e0  # the counter wrapped
            cost.energy_joules = used / 1e6
            cost.energy_method = f"RAPL ({len(domains)} CPU package(s), all processes on them)"
        else:
            cost.energy_joules, cost.energy_method = energy_estimate(cost.cpu_seconds)
        gpu = gpu if gpu is not None else _cuda_device()  # a block that first touched the GPU counts too
        if gpu is not None:
            import torch

            cost.gpu_peak_mb = torch.cuda.max_memory_allocated(gpu) / 2**20
            end = _nvml_energy_mj(gpu)
            if gpu_energy is not None and end is not None:
                cost.gpu_energy_joules = (end - gpu_energy) / 1e3


def forward_flops(backbone: Any, data: Any, sample_rows: int = 16) -> float:
    """Floating-point operations of one forward pass of ``backbone`` over every row of ``data`` (feature
    extraction): counted with torch's FlopCounterMode on a batch of the first ``sample_rows`` rows, per input
    element, and scaled by the rows' own sizes (tokens without padding; one image per row)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    source = backbone.batch_source(data)
    n = len(source)
    if n == 0:
        return 0.0
    idx = np.arange(min(sample_rows, n))
    batch = {k: v.to(backbone.device) for k, v in source.collate(idx).items()}
    first = next(iter(batch.values()))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        backbone.forward_features(**batch)
    per_unit = counter.get_total_flops() / max(int(first.numel()), 1)
    if source.lengths is not None:  # text: units are tokens
        return float(per_unit * float(np.sum(source.lengths)))
    return float(per_unit * first.numel() / len(idx) * n)
