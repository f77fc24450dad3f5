"""How an image backbone runs extraction on this CPU (images per batch; in bf16 or fp16 also how it casts),
chosen by measurement on this CPU.

Two ways to compute in low precision: ``autocast`` (fp32 weights, each convolution and matmul cast on the fly)
or ``weights`` (a bf16 copy of the whole model, activations kept in bf16 between layers, as text encoders do).
Which is faster, and at what batch size, depends on the CPU and the model: on one Intel Xeon with AMX the two
casts ran EfficientNet-Lite0 at 224 px equally fast at 64 images per batch, and 32 per batch was 1.35x faster
than 64 (docs/backbones.md). So, as for text (``encode_tuning``), a short calibration on synthetic images at the
backbone's input size times both, then the winner at 32, 64 and 128 images per batch, and keeps the fastest,
once per CPU model, torch version, thread count, precision, architecture and input size, in
``$WARMSTART_HOME/encode-settings.json``.

``WARMSTART_ENCODE_IMAGE_CAST=autocast|weights`` and ``WARMSTART_ENCODE_IMAGE_BATCH=N`` force a choice;
``WARMSTART_ENCODE_TUNE=off|force`` works as for text.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from .._io import atomic_write_json
from ..errors import ParameterError
from .encode_tuning import _cache_path, _read_cache, cpu_signature, fastest_of, tune_mode

CASTS = ("autocast", "weights")
BATCHES = (32, 64, 128)
# below this many images in one encode the defaults are used rather than measured: calibration encodes a few
# hundred images' worth of synthetic batches, once per machine, architecture and input size
MIN_IMAGES = 2_000
_ENV = {"cast": "WARMSTART_ENCODE_IMAGE_CAST", "batch_size": "WARMSTART_ENCODE_IMAGE_BATCH"}


@dataclass(frozen=True)
class ImageEncodeSettings:
    """How an image backbone computes in bf16/fp16: ``cast`` (``autocast`` or a low-precision copy of the
    ``weights``) and images per batch; ``source`` as in ``EncodeSettings``."""

    cast: str = "autocast"
    batch_size: int = 64
    source: str = "default"

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def overrides() -> dict[str, Any]:
    """The image settings forced by environment variables, checked."""
    out: dict[str, Any] = {}
    cast = os.environ.get(_ENV["cast"], "").strip()
    if cast:
        if cast not in CASTS:
            raise ParameterError(
                f"{_ENV['cast']} must be one of {', '.join(CASTS)}. Got {cast!r} instead; unset it to let "
                "warmstart measure."
            )
        out["cast"] = cast
    batch = os.environ.get(_ENV["batch_size"], "").strip()
    if batch:
        if not batch.isdigit() or int(batch) < 1:
            raise ParameterError(
                f"{_ENV['batch_size']} must be an integer >= 1. Got {batch!r} instead; unset it to let warmstart "
                "measure."
            )
        out["batch_size"] = int(batch)
    return out


def settings_key(backbone: Any, precision: str) -> str:
    """Cache key: CPU, torch version, threads, precision, the architecture and input size (not the weights)."""
    shape = json.dumps(backbone.preprocess_config(), sort_keys=True)
    arch = f"{type(backbone.module).__name__} {backbone.num_features}"
    return (
        f"image | {cpu_signature()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{precision} | {arch} | {shape}"
    )


def choose(backbone: Any, precision: str, dtype: torch.dtype, n_images: int) -> ImageEncodeSettings:
    """The settings for a CPU encode of ``n_images`` in ``dtype`` (fp32, bf16 or fp16): cached for this machine
    and backbone shape, else measured (when the encode is large enough to be worth it), else the defaults;
    overrides on top."""
    forced = overrides()
    if dtype == torch.float32:
        forced.pop("cast", None)  # nothing is cast in fp32
    mode = tune_mode()
    key = settings_key(backbone, precision)
    cached = _read_cache().get(key)
    fields = {"cast", "batch_size"}
    if set(forced) >= fields:
        base = ImageEncodeSettings()
    elif isinstance(cached, dict) and mode != "force" and set(cached) >= fields:
        base = ImageEncodeSettings(**{k: cached[k] for k in fields}, source="cached")
    elif mode == "off" or (mode == "auto" and n_images < MIN_IMAGES):
        base = ImageEncodeSettings()
    else:
        base = calibrate(backbone, dtype)
        data = _read_cache()
        data[key] = {k: v for k, v in base.describe().items() if k in fields}
        with contextlib.suppress(OSError):  # a read-only home still encodes, it just measures again next time
            atomic_write_json(_cache_path(), data)
    if not forced:
        return base
    return replace(base, **forced, source=f"{base.source}+override")


def calibrate(
    backbone: Any,
    dtype: torch.dtype,
    timer: Callable[[Callable[[torch.Tensor], Any], torch.Tensor], float] | None = None,
    repeats: int = 5,
    stage_seconds: float = 4.0,
) -> ImageEncodeSettings:
    """Time ``autocast`` against the low-precision copy at 64 images per batch, then the winner at 32, 64 and
    128, on synthetic normalised pixels at the backbone's input size; keep the fastest per image. In fp32
    (``dtype`` float32) there is nothing to cast, and only the batch size is timed.

    Each stage picks by ``encode_tuning.fastest_of``, as text calibration does. ``timer(forward, pixels)``
    returns seconds for one call; tests pass their own.
    """
    timer = timer or _time_call
    h, w = backbone.image_preprocess.output_size
    gen = torch.Generator().manual_seed(0)
    pixels = {b: torch.randn(b, 3, h, w, generator=gen) for b in BATCHES}
    if dtype == torch.float32:  # nothing to cast: only the batch size is chosen
        forwards = {"autocast": fp32_forward(backbone)}
    else:
        forwards = {cast: low_precision_forward(backbone, dtype, cast) for cast in CASTS}

    def fastest(cands: dict[Any, tuple[str, int]]) -> Any:
        return fastest_of(
            {
                key: (lambda c=cast, b=batch: timer(forwards[c], pixels[b]) / b)
                for key, (cast, batch) in cands.items()
            },
            repeats,
            stage_seconds,
        )

    default = ImageEncodeSettings()
    cast = (
        fastest({c: (c, default.batch_size) for c in forwards}) if len(forwards) > 1 else next(iter(forwards))
    )
    batch = fastest(
        {b: (cast, b) for b in (default.batch_size, *[b for b in BATCHES if b != default.batch_size])}
    )
    return ImageEncodeSettings(cast, batch, source="measured")


def fp32_forward(backbone: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``pixels -> features`` in fp32: the model as it is (recorded as cast ``autocast``, a no-op in fp32)."""

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return backbone.forward_features(pixels)

    forward.cast = "autocast"  # type: ignore[attr-defined]
    return forward


def low_precision_forward(
    backbone: Any, dtype: torch.dtype, cast: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``pixels -> features`` in ``dtype`` by ``cast`` (kept as the function's ``cast``): autocast around the
    fp32 model, or the backbone's low-precision copy (``backbone.low_precision_module``) fed pixels in
    ``dtype``."""
    if cast == "weights":
        module = backbone.low_precision_module(dtype)

        def forward(pixels: torch.Tensor) -> torch.Tensor:
            return backbone.forward_features(pixels.to(dtype), module=module)
    else:

        def forward(pixels: torch.Tensor) -> torch.Tensor:
            with torch.autocast(backbone.device.type, dtype=dtype):
                return backbone.forward_features(pixels)

    forward.cast = cast  # type: ignore[attr-defined]  # what a test's timer reads
    return forward


def _time_call(forward: Callable[[torch.Tensor], Any], pixels: torch.Tensor) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        forward(pixels)
        return time.perf_counter() - start
