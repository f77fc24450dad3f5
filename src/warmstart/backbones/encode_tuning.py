"""How a transformer text encoder runs extraction on this CPU, at every precision, chosen by measurement on this
CPU.

What is fastest differs between CPUs. On an AMD EPYC with AVX-512-bf16, plain matmul-softmax-matmul attention
beat SDPA's fused kernel by 1.3x; on an Intel Xeon with AMX, SDPA was 1.17 to 1.43x faster than it on long text,
and linear layers with their weights stored transposed (``x @ W`` then the bias, instead of ``addmm`` on
``W.T``) were faster in some runs and slower in others (docs/backbones.md). So instead of one machine's defaults, a short calibration on synthetic batches times the
candidates (attention, linear layout, padded tokens per batch, threads) and keeps the fastest, once per CPU model,
torch version, thread count, precision, encoder shape and length class (the power of two nearest the texts'
median token count), in ``$WARMSTART_HOME/encode-settings.json``.

Each choice can be forced with an environment variable (``WARMSTART_ENCODE_ATTENTION=eager|sdpa``,
``WARMSTART_ENCODE_LINEAR=standard|transposed``, ``WARMSTART_ENCODE_TOKENS=N``, ``WARMSTART_ENCODE_THREADS=N``);
``WARMSTART_ENCODE_TUNE=off`` keeps the defaults without measuring, ``force`` measures again.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_json, warmstart_home
from ..errors import ParameterError

ATTENTIONS = ("eager", "sdpa")
LINEARS = ("standard", "transposed")
TOKEN_CAPS = (1024, 2048, 4096)
MARGIN = 0.05
# below this many tokens in one encode the defaults are used rather than measured: the calibration costs about
# 60,000 tokens' worth of encoding (seconds for MiniLM-L6 on a 2-core CPU), once per machine, encoder shape and
# length class
MIN_TOKENS = 100_000
_ENV = {
    "attention": "WARMSTART_ENCODE_ATTENTION",
    "linear": "WARMSTART_ENCODE_LINEAR",
    "max_batch_tokens": "WARMSTART_ENCODE_TOKENS",
    "threads": "WARMSTART_ENCODE_THREADS",
}
TUNE_ENV = "WARMSTART_ENCODE_TUNE"


@dataclass(frozen=True)
class EncodeSettings:
    """How the bf16 copy of an encoder runs: its attention implementation (``model``: its own, for a model that
    cannot switch), its linear layers' weight layout, the padded tokens per batch and the threads (0: torch's
    own count); ``source`` says where they came from (``default``, ``measured``, ``cached``, with
    ``+override`` where a variable forced any)."""

    attention: str = "eager"
    linear: str = "standard"
    max_batch_tokens: int = 2048
    threads: int = 0
    source: str = "default"

    def describe(self) -> dict[str, Any]:
        return asdict(self)


class TransposedLinear(torch.nn.Module):
    """``nn.Linear`` for inference with its weight stored as ``W.T``, contiguous: ``x @ W.T + b`` as a plain
    matmul and an in-place bias add, which oneDNN runs faster on AMX than ``addmm`` on the transposed view."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y.add_(self.bias)


def inference_copy(
    module: torch.nn.Module, dtype: torch.dtype, attention: str | None, linear: str
) -> torch.nn.Module:
    """A frozen copy of ``module`` in ``dtype`` with the given attention implementation (None: the module's
    own; a model without that implementation keeps its own) and linear layout (``transposed``: every
    ``nn.Linear`` replaced by a ``TransposedLinear``, for inference only)."""
    copied = copy.deepcopy(module).to(dtype).eval().requires_grad_(False)
    if attention not in (None, "model") and switchable_attention(copied):
        with contextlib.suppress(ValueError, ImportError):
            copied.set_attn_implementation(attention)
    if linear == "transposed":
        _transpose_linears(copied)
    return copied


class CopyCache:
    """One low-precision copy of a module, made again whenever a weight changes or ``how`` differs.

    Changes are seen through the tensors themselves: an in-place update (an optimizer step, ``load_state_dict``)
    bumps a tensor's version, and a replaced tensor (an adapter wrapped around a layer) is a different object.
    """

    def __init__(self) -> None:
        self._made: tuple[list, Any, torch.nn.Module] | None = None

    def clear(self) -> None:
        self._made = None

    def get(self, source: torch.nn.Module, how: Any, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        tensors = [*source.parameters(), *source.buffers()]
        if self._made is not None:
            refs, made, module = self._made
            device = next(iter(source.parameters())).device
            if (
                made == how
                and len(refs) == len(tensors)
                and next(iter(module.parameters())).device == device
                and all(r() is t and v == t._version for (r, v), t in zip(refs, tensors, strict=True))
            ):
                return module
        module = make()
        self._made = ([(weakref.ref(t), t._version) for t in tensors], how, module)
        return module


def switchable_attention(module: torch.nn.Module) -> bool:
    """Whether the model can change its attention implementation after loading (transformers models built on
    its attention interface can; MPNet, for one, cannot and keeps its own, recorded as ``model``)."""
    can = getattr(module, "_can_set_attn_implementation", None)
    return hasattr(module, "set_attn_implementation") and (can is None or bool(can()))


def _transpose_linears(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, TransposedLinear(child))
        else:
            _transpose_linears(child)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block (0: left alone)."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def overrides() -> dict[str, Any]:
    """The settings forced by environment variables, checked."""
    out: dict[str, Any] = {}
    allowed = {"attention": ATTENTIONS, "linear": LINEARS}
    for field, var in _ENV.items():
        raw = os.environ.get(var, "").strip()
        if not raw:
            continue
        if field in allowed:
            if raw not in allowed[field]:
                raise ParameterError(
                    f"{var} must be one of {', '.join(allowed[field])}. Got {raw!r} instead; unset it to let "
                    "warmstart measure."
                )
            out[field] = raw
        else:
            low = 1 if field == "threads" else 16
            if not raw.isdigit() or int(raw) < low:
                raise ParameterError(
                    f"{var} must be an integer >= {low}. Got {raw!r} instead; unset it to let warmstart measure."
                )
            out[field] = int(raw)
    return out


def tune_mode() -> str:
    raw = os.environ.get(TUNE_ENV, "auto").strip().lower() or "auto"
    if raw not in ("auto", "off", "force"):
        raise ParameterError(
            f"{TUNE_ENV} must be auto, off or force. Got {raw!r} instead; unset it for auto (measure once per CPU)."
        )
    return raw


def cpu_signature() -> str:
    """The CPU's model name and the instruction sets that decide bf16 speed."""
    from ..runtime import cpu_info

    model, flags = cpu_info()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model} [{' '.join(isa)}]"


def settings_key(config: Any, precision: str) -> str:
    """Cache key: CPU, torch version, threads, precision and the encoder's shape (not its weights)."""
    shape = "/".join(
        str(getattr(config, k, "-"))
        for k in (
            "model_type",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        )
    )
    return f"{cpu_signature()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {precision} | {shape}"


def _cache_path():
    return warmstart_home() / "encode-settings.json"


def _read_cache() -> dict:
    import json

    path = _cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def length_class(lengths: np.ndarray, max_length: int) -> int:
    """The texts' typical length for calibration: the power of two nearest their median token count, from 16
    to ``max_length`` (short and long texts favour different batch shapes)."""
    median = float(np.median(lengths)) if len(lengths) else 16.0
    return int(min(max_length, max(16, 2 ** round(np.log2(max(median, 1.0))))))


def choose(
    backbone: Any,
    precision: str,
    dtype: torch.dtype,
    lengths: np.ndarray,
    default: EncodeSettings | None = None,
) -> EncodeSettings:
    """The settings for a CPU encode in ``dtype`` of texts with these token ``lengths``: cached for this
    machine, encoder shape and length class, else measured (when the encode is large enough to be worth it),
    else ``default`` (plain matmul attention, standard layers, 2,048 tokens); then any variable's override on
    top."""
    default = default or EncodeSettings()
    forced = overrides()
    mode = tune_mode()
    length = length_class(lengths, backbone.max_length)
    tokens = int(np.sum(lengths))
    key = f"{settings_key(backbone.module.config, precision)} | ~{length} tokens"
    cached = _read_cache().get(key)
    fields = {"attention", "linear", "max_batch_tokens", "threads"}
    if set(forced) >= fields - {"threads"}:
        base = default
    elif isinstance(cached, dict) and mode != "force" and set(cached) >= fields:
        base = EncodeSettings(**{k: cached[k] for k in fields}, source="cached")
    elif mode == "off" or (mode == "auto" and tokens < MIN_TOKENS):
        base = default
    else:
        base = calibrate(backbone, dtype, length, default=default)
        data = _read_cache()
        data[key] = {k: v for k, v in base.describe().items() if k in fields}
        with contextlib.suppress(OSError):  # a read-only home still encodes, it just measures again next time
            atomic_write_json(_cache_path(), data)
    if not switchable_attention(backbone.module):
        if forced.get("attention"):
            warnings.warn(
                f"{_ENV['attention']}={forced['attention']} is ignored for {backbone.name}: "
                f"{type(backbone.module).__name__} cannot change its attention implementation.",
                stacklevel=3,
            )
        forced.pop("attention", None)
        base = replace(base, attention="model")
    if not forced:
        return base
    return replace(base, **forced, source=f"{base.source}+override")


def _thread_candidates() -> list[int]:
    now = torch.get_num_threads()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or now
    return sorted({now, usable})


def calibrate(
    backbone: Any,
    dtype: torch.dtype,
    length: int = 128,
    timer: Callable[..., float] | None = None,
    repeats: int = 5,
    stage_seconds: float = 4.0,
    default: EncodeSettings | None = None,
) -> EncodeSettings:
    """Time the candidates on synthetic batches of ``length``-token texts and keep the fastest.

    First attention x linear layout at 2,048 padded tokens per batch (``default``'s attention and layout
    listed first: the one to keep unless another is clearly faster), then the winner at 1,024, 2,048 and 4,096
    tokens, then (where torch's thread count and the usable CPUs differ) each thread count. A candidate's time
    is the least of ``repeats`` runs taken in turn with the others (other work on the machine only ever
    inflates a timing; fewer, at least one, where a round of runs takes more than ``stage_seconds / repeats``,
    so a base-size encoder is not timed for a minute), and it displaces the default (the first listed) only
    when faster by more than ``MARGIN``: within that, timings on a busy machine cannot tell them apart. ``timer(module, batch,
    threads)`` returns seconds for one forward pass; tests pass their own.
    """
    timer = timer or _time_forward
    gen = np.random.default_rng(0)
    vocab = int(getattr(backbone.tokenizer, "vocab_size", 1000) or 1000)

    def batch(cap: int) -> dict[str, torch.Tensor]:
        ids = gen.integers(min(1000, vocab // 2), vocab, size=(max(1, cap // length), length)).tolist()
        return backbone.collate(ids)

    def fastest(cands: dict[Any, tuple[torch.nn.Module, int, int]]) -> Any:
        data = {cap: batch(cap) for cap in {c[1] for c in cands.values()}}
        return fastest_of(
            {
                key: (lambda m=module, c=cap, t=threads: timer(m, data[c], t) / data[c]["input_ids"].numel())
                for key, (module, cap, threads) in cands.items()
            },
            repeats,
            stage_seconds,
        )

    default = default or EncodeSettings()
    attentions = ATTENTIONS if switchable_attention(backbone.module) else ("model",)
    attentions = sorted(attentions, key=lambda a: a != default.attention)
    linears = sorted(LINEARS, key=lambda lin: lin != default.linear)
    copies = {(a, lin): inference_copy(backbone.module, dtype, a, lin) for lin in linears for a in attentions}
    attention, linear = fastest({k: (m, 2048, 0) for k, m in copies.items()})
    module = copies[(attention, linear)]
    del copies
    default_cap = default.max_batch_tokens
    cap = fastest({c: (module, c, 0) for c in (default_cap, *[c for c in TOKEN_CAPS if c != default_cap])})
    threads = 0
    options = _thread_candidates()
    if len(options) > 1:
        now = torch.get_num_threads()
        threads = fastest({n: (module, cap, n) for n in sorted(options, key=lambda n: n != now)})
        threads = 0 if threads == now else threads
    return EncodeSettings(attention, linear, cap, threads, source="measured")


def fastest_of(cands: dict[Any, Callable[[], float]], repeats: int, stage_seconds: float) -> Any:
    """The key of the fastest candidate: each ``cands[key]()`` runs it once and returns its time per unit of work.

    A candidate's time is the least of ``repeats`` runs taken in turn with the others (other work on the machine
    only ever inflates a timing); the first pass warms each one up and is not counted, and fewer rounds (at least
    one) are taken where a round would exceed ``stage_seconds / repeats``. The first listed (the default) is
    displaced only by a candidate faster by more than ``MARGIN``: within that, timings on a busy machine cannot
    tell them apart.
    """
    best = dict.fromkeys(cands, float("inf"))
    rounds, rep = repeats, 0
    while rep <= rounds:
        start = time.perf_counter()
        for key, run in cands.items():
            took = run()
            best[key] = min(best[key], took) if rep else best[key]
        if not rep:  # a slow model gets fewer rounds: each stage stays near ``stage_seconds``
            rounds = min(repeats, max(1, int(stage_seconds / max(time.perf_counter() - start, 1e-9))))
        rep += 1
    choice = next(iter(cands))
    for key, took in best.items():
        if took < best[choice] * (1 - MARGIN):
            choice = key
    return choice


def _time_forward(module: torch.nn.Module, batch: dict[str, torch.Tensor], threads: int) -> float:
    with num_threads(threads), torch.inference_mode():
        start = time.perf_counter()
        module(**batch)
        return time.perf_counter() - start
