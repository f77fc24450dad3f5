"""Text feature extraction: warmstart's encode against sentence-transformers' encode, and against the CPU's
measured matmul ceiling.

In one process and on the same sentences (2,000 rows of 20 Newsgroups truncated to 128 tokens, and 2,000 SMS
messages), with all-MiniLM-L6-v2 for both:

- sentence-transformers ``encode`` (batch 32, its default; max_seq_length 128) in fp32, and in bf16 with its
  weights loaded as bfloat16 (``model_kwargs={"torch_dtype": torch.bfloat16}``, its documented way to lower the
  precision);
- warmstart ``encode`` in fp32 and in bf16.

bf16 rows are timed only where the CPU computes bf16 natively (AVX512-BF16 or AMX; ``--bf16 on`` forces them):
elsewhere bf16 is emulated, many times slower than fp32, and precision ``auto`` never picks it.

Each warmstart row is compared with sentence-transformers at the same precision (like for like), and the bf16
rows also with sentence-transformers fp32. The table starts with the commit it measured.

Each text method runs once untimed, then ``--repeats`` passes taken in turn, and its least time is reported:
other work on the machine only ever inflates a timing, and taking turns exposes every method to the same
swings (on a shared Intel Xeon host the bf16 matmul rate read 590 to 2,580 GFLOP/s within one minute).
Embeddings are compared per row by cosine similarity with sentence-transformers' (required: >= 0.9999 fp32,
>= 0.99 bf16). Achieved GFLOP/s counts the encoder's matrix products on the real (unpadded) token counts: per
layer and token, 2 x (4 d^2 + 2 d d_ff) for the projections and feed-forward, plus 2 x 2 x n x d for attention
over a sequence of n tokens. The ceiling is torch.matmul's GFLOP/s on (2048 x 384) @ (384 x 1536), the shape of
the feed-forward layer, fp32 and bf16, read for half a second before the timings and after every pass: the
highest reading is used.

warmstart runs with the settings measured for this CPU at each precision (attention implementation, linear
layout, padded tokens per batch, threads: src/warmstart/backbones/encode_tuning.py), which the run prints, and
once more with the fixed settings every CPU used before (standard linear layers, 2,048 tokens per batch; in bf16
eager attention, in fp32 the model's own); ``--profile N`` adds an operator profile of N rows with each.

Then EfficientNet-Lite0 images/s on Fashion-MNIST upscaled to 224 px, taking turns: a plain fp32 loop (NCHW,
batch 64) against warmstart's encode (channels-last) in fp32 at 64 per batch and at the batch size measured for
this CPU, and in bf16 by autocast (the old fixed way), by a
bf16 copy of the weights, and with the cast and batch size measured for this CPU
(src/warmstart/backbones/image_tuning.py), with the same cosine checks against the plain loop.

    pip install -e ".[bench]"      # sentence-transformers, for this benchmark only
    python benchmarks/extraction.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from common import code_version


def matmul_ceiling(
    dtype: torch.dtype, m: int = 2048, k: int = 384, n: int = 1536, seconds: float = 2.0
) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def encoder_flops(token_counts: np.ndarray, d: int = 384, d_ff: int = 1536, layers: int = 6) -> float:
    n = token_counts.astype(np.float64)
    per_layer = 2 * (4 * d * d + 2 * d * d_ff) * n.sum() + 2 * 2 * d * (n**2).sum()
    return float(layers * per_layer)


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def interleaved(methods: dict, repeats: int, between) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each method's least time over ``repeats`` passes taken in turn (one untimed warm-up pass each first):
    other work on the machine only ever inflates a timing, and taking turns exposes every method to the same
    swings. ``between()`` runs after every pass."""
    outs = {name: fn() for name, fn in methods.items()}
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            outs[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
            between()
    return best, outs


def with_env(fn, **env: str):
    """``fn()`` with the environment variables ``env`` set, each restored (or removed) afterwards."""
    import os

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fn()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def fixed_settings(fn, attention: str = "eager"):
    """``fn()`` with extraction forced to the settings used on every CPU before they were measured per CPU:
    standard linear layers, 2,048 padded tokens per batch, and ``attention``: in bf16 plain matmul attention
    (``eager``), in fp32 the model's own (transformers' default, SDPA)."""
    fixed = {"ATTENTION": attention, "LINEAR": "standard", "TOKENS": "2048"}
    return with_env(fn, **{f"WARMSTART_ENCODE_{k}": v for k, v in fixed.items()})


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000, help="texts per data set for the text part (0: skip)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--images", type=int, default=512, help="Fashion-MNIST images for the image part (0: skip)"
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        help="also profile warmstart bf16 on this many 20 Newsgroups rows, with the old fixed settings and with "
        "the ones measured for this CPU (0: skip)",
    )
    ap.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="time the bf16 rows: auto (default) only where the CPU computes bf16 natively (AVX512-BF16 or "
        "AMX); elsewhere bf16 is emulated, many times slower than fp32, and precision auto never picks it",
    )
    args = ap.parse_args(argv)
    from warmstart.runtime import fast_bf16_cpu

    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and fast_bf16_cpu())
    if not bf16:
        print(
            "bf16 rows skipped: this CPU has no native bf16 (AVX512-BF16 or AMX); --bf16 on times them anyway"
        )
    if not args.rows:
        return 0 if not args.images or images(args.images, args.repeats, bf16) else 1
    from sentence_transformers import SentenceTransformer

    from warmstart.backbones import minilm_l6_folder
    from warmstart.backbones.encode_tuning import cpu_signature
    from warmstart.backbones.text_transformers import TransformerTextBackbone
    from warmstart.data import load_packaged

    folder = minilm_l6_folder()
    st = SentenceTransformer(str(folder), device="cpu")
    st.max_seq_length = 128
    st_bf16 = SentenceTransformer(str(folder), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16})
    st_bf16.max_seq_length = 128
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    ours = TransformerTextBackbone.from_pretrained(folder, max_length=128)
    own_attention = ours.module.config._attn_implementation
    sets = {
        "20 Newsgroups (128 tokens)": [
            str(t) for t in load_packaged("20newsgroups").train.inputs[: args.rows]
        ],
        "SMS spam": [str(t) for t in load_packaged("sms-spam").train.inputs[: args.rows]],
    }
    print(f"CPU: {cpu_signature()}")
    readings: dict[str, list[float]] = {p: [] for p in precisions}

    def read_ceiling() -> None:
        for key in precisions:
            dtype = torch.bfloat16 if key == "bf16" else torch.float32
            readings[key].append(matmul_ceiling(dtype, seconds=0.5))

    read_ceiling()
    results = []
    for name, texts in sets.items():
        tokens = np.array([len(x) for x in ours.tokenize(texts)])
        flops = encoder_flops(tokens)
        methods = {
            "sentence-transformers fp32": lambda x=texts: st.encode(x, batch_size=32, convert_to_numpy=True),
            "warmstart fp32, fixed settings": lambda x=texts: fixed_settings(
                lambda: ours.encode(x, progress=False, precision="fp32"), own_attention
            ),
            "warmstart fp32": lambda x=texts: ours.encode(x, progress=False, precision="fp32"),
        }
        if bf16:
            methods |= {
                "sentence-transformers bf16": lambda x=texts: st_bf16.encode(
                    x, batch_size=32, convert_to_numpy=True
                ).astype(np.float32),
                "warmstart bf16, fixed settings": lambda x=texts: fixed_settings(
                    lambda: ours.encode(x, progress=False, precision="bf16")
                ),
                "warmstart bf16": lambda x=texts: ours.encode(x, progress=False, precision="bf16"),
            }
        # measure this CPU's choice for these texts once, at each precision (a real run measures on its first
        # encode of 100,000 tokens or more, and uses the cached choice after that)
        used = {}
        for prec in precisions:
            with_env(
                lambda p=prec, x=texts: ours.encode(x, progress=False, precision=p),
                WARMSTART_ENCODE_TUNE="force",
            )
            used[prec] = ours.last_encode_settings.describe()
        best, embs = interleaved(methods, args.repeats, read_ceiling)
        t_st, e_st = best["sentence-transformers fp32"], embs["sentence-transformers fp32"]
        same = {"fp32": t_st, "bf16": best.get("sentence-transformers bf16", t_st)}
        rows = []
        for method, t in best.items():
            prec = "bf16" if "bf16" in method else "fp32"
            need = None if method == "sentence-transformers fp32" else (0.99 if prec == "bf16" else 0.9999)
            rows.append((method, t, embs[method], prec, need, same[prec]))
        results.append((name, texts, tokens, flops, t_st, e_st, rows))
        for prec, settings in used.items():
            print(f"timed {name}; warmstart {prec} ran with {settings}", flush=True)
    # the machine's matmul rate swings between readings (by 3x within a minute on a shared host): the ceiling
    # is the highest reading, taken before the timings and after every pass, so a slow reading cannot flatter
    # the fraction
    ceiling = {k: max(v) for k, v in readings.items()}
    read = ", ".join(f"{k} {ceiling[k]:.0f} GFLOP/s (lowest {min(v):.0f})" for k, v in readings.items())
    print(
        f"matmul ceiling, the highest of {len(readings['fp32'])} readings: {read}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(f"commit {code_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        "| data | method | sentences/s | vs ST same precision | vs ST fp32 | GFLOP/s | of ceiling | "
        "min cosine to ST fp32 | check |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name, texts, tokens, flops, t_st, e_st, rows in results:
        for method, t, e, prec, need, t_same in rows:
            gflops = flops / t / 1e9
            cos = float(cosine_rows(e, e_st).min())
            check = "" if need is None else ("pass" if cos >= need else f"FAIL (< {need})")
            ok &= not check.startswith("FAIL")
            print(
                f"| {name} | {method} | {len(texts) / t:.0f} | {t_same / t:.2f}x | {t_st / t:.2f}x | "
                f"{gflops:.0f} | {gflops / ceiling[prec]:.0%} of {prec} | {cos:.6f} | {check} |",
                flush=True,
            )
        print(
            f"| {name} | ({len(texts)} rows, mean tokens {tokens.mean():.0f}, max {tokens.max()}) | | | | | | | |"
        )
    if args.profile:
        profile(ours, sets["20 Newsgroups (128 tokens)"][: args.profile], "bf16" if bf16 else "fp32")
    if args.images:
        ok &= images(args.images, args.repeats, bf16)
    return 0 if ok else 1


def profile(ours, texts: list[str], precision: str) -> None:
    """Where an encode at ``precision`` spends its time, by operator: with the settings fixed before they were
    measured per CPU (``fixed_settings``) and with this CPU's."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    attention = "eager" if precision == "bf16" else ours.module.config._attn_implementation
    fixed = lambda fn: fixed_settings(fn, attention)  # noqa: E731
    for label, wrap in (("fixed settings", fixed), ("measured settings", lambda fn: fn())):
        # warm-up, and the copy for these settings
        wrap(lambda: ours.encode(texts, progress=False, precision=precision))
        start = time.perf_counter()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            wrap(lambda: ours.encode(texts, progress=False, precision=precision))
        took = time.perf_counter() - start
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        print(
            f"\nprofile, {precision}, {label} {ours.last_encode_settings.describe()}: {len(texts)} rows in {took:.2f} s"
        )
        print("| operator | share of self CPU time |\n|---|---|")
        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]:
            print(f"| {e.key} | {e.self_cpu_time_total / total:.1%} |")


def images(n: int, repeats: int, bf16: bool) -> bool:
    """EfficientNet-Lite0 on Fashion-MNIST upscaled to 224 px: a plain fp32 loop (NCHW, batch 64, the same
    preprocessing) against warmstart's encode in fp32 and (with ``bf16``) bf16."""
    from warmstart.backbones import get_backbone
    from warmstart.data import image_at, load_packaged

    bb = get_backbone("efficientnet-lite0")
    data = load_packaged("fashion-mnist").test.subset(np.arange(n))

    def plain() -> np.ndarray:
        model = bb.module.to(memory_format=torch.contiguous_format)
        out = []
        with torch.inference_mode():
            for s in range(0, n, 64):
                x = torch.stack([bb.preprocess(image_at(data, i)) for i in range(s, min(s + 64, n))])
                out.append(
                    model.forward_head(model.forward_features(x.contiguous()), pre_logits=True).numpy()
                )
        bb.module.to(memory_format=torch.channels_last)
        return np.concatenate(out)

    from warmstart.backbones import image_tuning

    def encode(prec: str, **env: str):
        return lambda: with_env(lambda: bb.encode(data, progress=False, precision=prec), **env)

    # measure this CPU's fp32 batch size once (a real run measures on its first encode of 2,000 images or more)
    encode("fp32", WARMSTART_ENCODE_TUNE="force")()
    chosen_fp32 = bb.last_encode_settings
    methods = {
        "plain fp32 loop (NCHW)": plain,
        "warmstart fp32 (channels-last), 64 per batch (the old fixed way)": encode(
            "fp32", WARMSTART_ENCODE_IMAGE_BATCH="64"
        ),
        f"warmstart fp32 (channels-last), measured ({chosen_fp32.batch_size} per batch)": encode("fp32"),
    }
    chosen = None
    if bf16:
        # measure this CPU's choice once (a real run measures on its first encode of 2,000 images or more)
        encode("bf16", WARMSTART_ENCODE_TUNE="force")()
        chosen = bb.last_encode_settings
        methods |= {
            "warmstart bf16, autocast (the old fixed way)": encode(
                "bf16", WARMSTART_ENCODE_IMAGE_CAST="autocast", WARMSTART_ENCODE_IMAGE_BATCH="64"
            ),
            "warmstart bf16, bf16 weights": encode(
                "bf16", WARMSTART_ENCODE_IMAGE_CAST="weights", WARMSTART_ENCODE_IMAGE_BATCH="64"
            ),
            f"warmstart bf16, measured ({chosen.cast}, {chosen.batch_size} per batch)": encode("bf16"),
        }
    best, outs = interleaved(methods, repeats, lambda: None)
    ref = outs["plain fp32 loop (NCHW)"]
    t_plain = best["plain fp32 loop (NCHW)"]
    print(f"\nimage settings measured on {image_tuning.cpu_signature()}: fp32 {chosen_fp32.describe()}")
    if chosen is not None:
        print(f"bf16 {chosen.describe()}")
    print("\n| images | method | images/s | vs plain fp32 loop | min cosine | check |")
    print("|---|---|---|---|---|---|")
    ok = True
    for name, t in best.items():
        need = 0.9999 if "fp32" in name else 0.99
        cos = float(cosine_rows(outs[name], ref).min())
        ok &= cos >= need
        print(
            f"| Fashion-MNIST at 224 px | {name} | {n / t:.1f} | {t_plain / t:.2f}x | {cos:.6f} | "
            f"{'pass' if cos >= need else 'FAIL'} |",
            flush=True,
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
