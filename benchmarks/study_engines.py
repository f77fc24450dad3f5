"""Wall time of one study on the local engine and on Ray with 1 and 2 workers, same cells, same machine.

Each run writes to its own fresh folder (so no cell is reused) and shares the feature cache. An untimed local
run first fills the cache, so every timed run finds the probe's features there. Then Ray with 1 worker, Ray with
2 workers and the local engine again are timed, and the two Ray tables are compared for equality (both use one
torch thread per task). The local engine uses every core for each cell in turn.

    python benchmarks/study_engines.py --data trec --techniques probe,lora --shots 4,8 --seeds 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from warmstart.data import load_packaged
from warmstart.study import StudyConfig, run_study

CONTENT = ["technique", "shots", "seed", "n_train", "accuracy", "macro_f1", "trainable_params", "flops"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="trec")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--techniques", default="probe,lora")
    ap.add_argument("--shots", default="4,8")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=300)
    args = ap.parse_args(argv)
    import ray

    pk = load_packaged(args.data)
    cfg = StudyConfig(
        data=args.data,
        backbone=args.backbone,
        techniques=args.techniques.split(","),
        shots=[int(k) for k in args.shots.split(",")],
        seeds=args.seeds,
        test_rows=args.test_rows,
        params={t: {"epochs": 2} for t in args.techniques.split(",") if t != "probe"},
    )
    root = Path(tempfile.mkdtemp(prefix="study-engines-"))
    times, tables = {}, {}
    cells = len(cfg.techniques) * len(cfg.shots) * cfg.seeds
    try:
        for name, workers in (("warm-up", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2), ("local", 0)):
            out = root / name.replace(", ", "-").replace(" ", "")
            start = time.perf_counter()
            if workers:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                try:
                    run_study(pk.train, cfg, out, test=pk.test, progress=False, engine="ray")
                finally:
                    ray.shutdown()
            else:
                run_study(pk.train, cfg, out, test=pk.test, progress=False)
            times[name] = time.perf_counter() - start
            tables[name] = pd.read_csv(out / "results.csv")[CONTENT]
            print(f"{name}: {times[name]:.1f} s for {cells} cells", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    same = tables["ray, 1 worker"].equals(tables["ray, 2 workers"])
    diff = (tables["local"]["accuracy"] - tables["ray, 2 workers"]["accuracy"]).abs().max()
    print("\n| engine | wall s | vs ray 1 worker |\n|---|---|---|")
    for name, t in times.items():
        if name == "warm-up":
            continue
        print(f"| {name} | {t:.1f} | {times['ray, 1 worker'] / t:.2f}x |")
    print(
        f"\nRay 1- and 2-worker tables identical: {same}; largest accuracy difference, local (2 threads) vs Ray "
        f"(1 thread per task): {diff:.4f}; machine: {torch.get_num_threads()} threads"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
