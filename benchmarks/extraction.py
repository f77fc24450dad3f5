"""Text feature extraction: warmstart's encode against sentence-transformers' encode, and against the CPU's
measured matmul ceiling.

In one process and on the same sentences (2,000 rows of 20 Newsgroups truncated to 128 tokens, and 2,000 SMS
messages), with all-MiniLM-L6-v2 for both:

- sentence-transformers ``encode`` (batch 32, its default; max_seq_length 128) in fp32, and in bf16 with its
  weights loaded as bfloat16 (``model_kwargs={"torch_dtype": torch.bfloat16}``, its documented way to lower the
  precision);
- warmstart ``encode`` in fp32 and in bf16.

Each warmstart row is compared with sentence-transformers at the same precision (like for like), and the bf16
rows also with sentence-transformers fp32. The table starts with the commit it measured.

Each is timed ``--repeats`` times (median reported) after one untimed warm-up pass. Embeddings are compared
per row by cosine similarity with sentence-transformers' (required: >= 0.9999 fp32, >= 0.99 bf16). Achieved
GFLOP/s counts the encoder's matrix products on the real (unpadded) token counts: per layer and token,
2 x (4 d^2 + 2 d d_ff) for the projections and feed-forward, plus 2 x 2 x n x d for attention over a sequence of
n tokens. The ceiling is torch.matmul's GFLOP/s measured in the same run, fp32 and bf16, on (2048 x 384) @ (384 x
1536), the shape of the feed-forward layer: measured before and after the text timings, the higher reading used.

Then EfficientNet-Lite0 images/s on Fashion-MNIST upscaled to 224 px: a plain fp32 loop (NCHW, batch 64) against
warmstart's encode (channels-last) in fp32 and bf16, with the same cosine checks against the plain loop.

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


def matmul_ceilings() -> dict[str, float]:
    return {"fp32": matmul_ceiling(torch.float32), "bf16": matmul_ceiling(torch.bfloat16)}


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


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--images", type=int, default=512, help="Fashion-MNIST images for the image part (0: skip)"
    )
    args = ap.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    from warmstart.backbones import minilm_l6_folder
    from warmstart.backbones.text_transformers import TransformerTextBackbone
    from warmstart.data import load_packaged

    folder = minilm_l6_folder()
    st = SentenceTransformer(str(folder), device="cpu")
    st.max_seq_length = 128
    st_bf16 = SentenceTransformer(str(folder), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16})
    st_bf16.max_seq_length = 128
    ours = TransformerTextBackbone.from_pretrained(folder, max_length=128)
    sets = {
        "20 Newsgroups (128 tokens)": [
            str(t) for t in load_packaged("20newsgroups").train.inputs[: args.rows]
        ],
        "SMS spam": [str(t) for t in load_packaged("sms-spam").train.inputs[: args.rows]],
    }
    ceiling = matmul_ceilings()
    print(
        f"matmul ceiling before the text timings: fp32 {ceiling['fp32']:.0f} GFLOP/s, bf16 "
        f"{ceiling['bf16']:.0f} GFLOP/s ({torch.get_num_threads()} threads)"
    )
    results = []
    for name, texts in sets.items():
        tokens = np.array([len(x) for x in ours.tokenize(texts)])
        flops = encoder_flops(tokens)
        t_st, e_st = timed(lambda x=texts: st.encode(x, batch_size=32, convert_to_numpy=True), args.repeats)
        t_sb, e_sb = timed(
            lambda x=texts: st_bf16.encode(x, batch_size=32, convert_to_numpy=True).astype(np.float32),
            args.repeats,
        )
        same = {"fp32": t_st, "bf16": t_sb}
        rows = [
            ("sentence-transformers fp32", t_st, e_st, "fp32", None, t_st),
            ("sentence-transformers bf16", t_sb, e_sb, "bf16", 0.99, t_sb),
        ]
        for prec in ("fp32", "bf16"):
            t, e = timed(lambda p=prec, x=texts: ours.encode(x, progress=False, precision=p), args.repeats)
            rows.append((f"warmstart {prec}", t, e, prec, 0.9999 if prec == "fp32" else 0.99, same[prec]))
        results.append((name, texts, tokens, flops, t_st, e_st, rows))
        print(f"timed {name}", flush=True)
    # the machine's matmul rate drifts: measure the ceiling again after the timings and divide by the higher
    # of the two readings, so that a slow first reading cannot flatter the fraction
    after = matmul_ceilings()
    print(
        f"matmul ceiling after: fp32 {after['fp32']:.0f} GFLOP/s, bf16 {after['bf16']:.0f} GFLOP/s; "
        f"the fractions below use the higher reading\n"
    )
    ceiling = {k: max(ceiling[k], after[k]) for k in ceiling}
    print(f"commit {_commit()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
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
    if args.images:
        ok &= images(args.images, args.repeats)
    return 0 if ok else 1


def images(n: int, repeats: int) -> bool:
    """EfficientNet-Lite0 on Fashion-MNIST upscaled to 224 px: a plain fp32 loop (NCHW, batch 64, the same
    preprocessing) against warmstart's encode in fp32 and bf16."""
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

    t_plain, ref = timed(plain, repeats)
    print("\n| images | method | images/s | vs plain fp32 loop | min cosine | check |")
    print("|---|---|---|---|---|---|")
    print(f"| Fashion-MNIST at 224 px | plain fp32 loop (NCHW) | {n / t_plain:.1f} | 1.00x | | |")
    ok = True
    for prec, need in (("fp32", 0.9999), ("bf16", 0.99)):
        t, e = timed(lambda p=prec: bb.encode(data, progress=False, precision=p), repeats)
        cos = float(cosine_rows(e, ref).min())
        ok &= cos >= need
        print(
            f"| Fashion-MNIST at 224 px | warmstart {prec} (channels-last) | {n / t:.1f} | {t_plain / t:.2f}x | "
            f"{cos:.6f} | {'pass' if cos >= need else 'FAIL'} |",
            flush=True,
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
