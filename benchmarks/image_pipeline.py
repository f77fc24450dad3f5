"""Training images/s with images decoded per batch (the old input pipeline) against decoded once per fit.

Both runs fine-tune the same backbone on the same image files in this one process, alternating, so the ratio
compares the pipelines and nothing else; ``WARMSTART_IMAGE_CACHE_MB=0`` switches the cache off.

    python benchmarks/image_pipeline.py --data fashion-mnist --shots 32 --image-size 128 --repeats 2

The images are written once as PNG files to a temporary folder (files on disk, as users have them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from PIL import Image

    from warmstart.data import few_shot, image_at, load_image_folder, load_packaged
    from warmstart.techniques import get_technique

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--shots", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args(argv)

    pk = load_packaged(args.data)
    train = pk.train.subset(few_shot(pk.train.labels, args.shots, seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(len(train)):
            folder = Path(tmp) / str(train.labels[i]).replace("/", "_")
            folder.mkdir(exist_ok=True)
            Image.fromarray(np.asarray(image_at(train, i))).save(folder / f"{i}.png")
        files = load_image_folder(tmp)
        rates: dict[str, list[float]] = {"per batch": [], "once": []}
        fits: dict[str, list[float]] = {"per batch": [], "once": []}
        for _ in range(args.repeats):
            for name, limit in (("per batch", "0"), ("once", "4096")):
                os.environ["WARMSTART_IMAGE_CACHE_MB"] = limit
                est = get_technique(
                    "finetune",
                    backbone=f"{args.backbone}:image_size={args.image_size}",
                    epochs=args.epochs,
                    min_steps=0,
                    precision=args.precision,
                    progress=False,
                    use_cache=False,
                )
                est.fit(files)
                rates[name].append(est.train_rows_per_s_)
                fits[name].append(est.fit_seconds_)
                print(
                    f"{name}: {est.train_rows_per_s_:.1f} training images/s in the loop, fit {est.fit_seconds_:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    old, new = statistics.median(rates["per batch"]), statistics.median(rates["once"])
    fit_old, fit_new = statistics.median(fits["per batch"]), statistics.median(fits["once"])
    print(
        f"{len(train)} PNG files, {args.backbone} at {args.image_size} px, {args.epochs} epochs, median of "
        f"{args.repeats}: training images/s decoded per batch {old:.1f}, decoded once {new:.1f} "
        f"(ratio {new / old:.2f}x); whole fit (decoding included) {fit_old:.1f} s vs {fit_new:.1f} s "
        f"(ratio {fit_old / fit_new:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
