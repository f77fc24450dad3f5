"""bf16 text extraction with the fixed settings every CPU used before (eager attention, standard linear layers,
2,048 padded tokens per batch) against the settings measured for this CPU (src/warmstart/backbones/
encode_tuning.py), for any registered text backbone, on the same rows of 20 Newsgroups.

The settings are measured first (``WARMSTART_ENCODE_TUNE=force`` for the rows' length class; the time is
printed), then the two take turns for ``--repeats`` passes after a warm-up each and the best pass of each is
reported, with the least per-row cosine to fp32 features.

    python benchmarks/extraction_settings.py --backbone all-mpnet-base-v2 --rows 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from extraction import cosine_rows, fixed_settings, interleaved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="all-mpnet-base-v2")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from common import code_version

    from warmstart.backbones import get_backbone
    from warmstart.backbones.encode_tuning import cpu_signature, length_class
    from warmstart.data import load_packaged

    bb = get_backbone(args.backbone)
    texts = [str(t) for t in load_packaged("20newsgroups").train.inputs[: args.rows]]
    lengths = np.array([len(x) for x in bb.tokenize(texts)])
    print(f"CPU: {cpu_signature()}; code {code_version()}")
    print(
        f"{args.backbone}: {len(texts)} rows of 20 Newsgroups, mean {lengths.mean():.0f} tokens, max "
        f"{lengths.max()}, length class {length_class(lengths, bb.max_length)}"
    )
    os.environ["WARMSTART_ENCODE_TUNE"] = "force"
    start = time.perf_counter()
    bb.encode(texts, progress=False, precision="bf16")
    print(
        f"measured settings {bb.last_encode_settings.describe()} (calibration and one pass: "
        f"{time.perf_counter() - start:.1f} s)"
    )
    os.environ["WARMSTART_ENCODE_TUNE"] = "auto"
    ref = bb.encode(texts, progress=False)
    methods = {
        "fixed settings": lambda: fixed_settings(lambda: bb.encode(texts, progress=False, precision="bf16")),
        "measured settings": lambda: bb.encode(texts, progress=False, precision="bf16"),
    }
    best, embs = interleaved(methods, args.repeats, lambda: None)
    print("\n| method | sentences/s | min cosine to fp32 |\n|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {len(texts) / t:.1f} | {float(cosine_rows(embs[name], ref).min()):.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
