"""Test-time augmentation against plain prediction, for the same fitted model on the same test rows.

    python benchmarks/tta.py --data digits --image-size 64 --shots 32 --seeds 0,1,2 --param hflip=false
    python benchmarks/tta.py --data fashion-mnist --image-size 128 --shots 32 --seeds 0,1,2

Fine-tunes with the defaults on ``--shots`` rows per class (few-shot pick of each seed), then predicts the test
rows (the packaged test split, sampled to ``--test-rows``, or a stratified 40% held out) with and without
``tta=True`` and prints both accuracies and the prediction times.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from image_recipe import pool_and_test  # this folder is on sys.path when the script runs

    from warmstart.data import few_shot, load_packaged
    from warmstart.techniques import get_technique

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--technique", default="finetune")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--shots", type=int, default=32)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE (JSON values)")
    args = ap.parse_args(argv)
    import json

    params = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.param)}
    pool, test = pool_and_test(load_packaged(args.data), args.test_rows, held_out=0.4)
    print("| seed | accuracy | with TTA | predict s | with TTA s |\n|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        train = pool.subset(few_shot(pool.labels, args.shots, seed=seed))
        est = get_technique(
            args.technique,
            backbone=f"efficientnet-lite0:image_size={args.image_size}",
            seed=seed,
            progress=False,
            **params,
        ).fit(train)
        t0 = time.perf_counter()
        plain = float((est.predict(test) == test.labels).mean())
        t1 = time.perf_counter()
        tta = float((est.predict(test, tta=True) == test.labels).mean())
        t2 = time.perf_counter()
        print(f"| {seed} | {plain:.4f} | {tta:.4f} | {t1 - t0:.1f} | {t2 - t1:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
