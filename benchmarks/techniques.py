"""Techniques side by side on one real split: test accuracy, trainable parameters, CPU time, peak memory.

Every technique trains on exactly the same rows (the same few-shot pick for the same seed) and is tested on the
same test rows, all in this one process, so the table compares techniques and nothing else.

    python benchmarks/techniques.py --data trec --shots 64
    python benchmarks/techniques.py --data fashion-mnist --backbone efficientnet-lite0 --shots 100 \\
        --techniques probe,finetune,scratch --image-size 128 --test-rows 2000

It prints a Markdown table and writes every run's metrics to ``--output`` (JSON), so the numbers in the docs can
be traced back to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from warmstart.backbones import get_backbone
from warmstart.data import load_packaged, stratified_split
from warmstart.run import fit_run

ALL = "probe,finetune,lora,ia3,bitfit,lp_ft,l2sp,scratch"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="trec", help="packaged data set (default: trec)")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--techniques", default=ALL)
    ap.add_argument("--shots", type=int, default=64, help="training examples per class (default: 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--epochs",
        type=int,
        default=4,
        help="epochs of the loop techniques but contrastive, which keeps its own passes (default: 4)",
    )
    ap.add_argument("--scratch-epochs", type=int, default=10, help="epochs for scratch (default: 10)")
    ap.add_argument(
        "--precision", default="auto", help="auto (bf16 where the CPU has it natively), fp32, bf16 or fp16"
    )
    ap.add_argument("--image-size", type=int, default=None, help="image backbones: input size")
    ap.add_argument("--test-rows", type=int, default=None, help="stratified subsample of the test set")
    ap.add_argument("--output", default="runs/bench/techniques.json")
    args = ap.parse_args(argv)

    torch.set_num_threads(torch.get_num_threads())
    pk = load_packaged(args.data)
    test = pk.test
    if test is not None and args.test_rows and args.test_rows < len(test):
        frac = args.test_rows / len(test)
        test = test.subset(stratified_split(test.labels, val_size=0.0, test_size=frac, seed=args.seed).test)
    kw = {"image_size": args.image_size} if args.image_size else {}
    backbone = get_backbone(args.backbone, **kw)
    rows = []
    for tech in args.techniques.split(","):
        params: dict = {"precision": args.precision, "progress": False}
        if tech not in ("probe", "contrastive"):
            params["epochs"] = args.scratch_epochs if tech == "scratch" else args.epochs
        start = time.perf_counter()
        r = fit_run(
            pk.train,
            test=test,
            backbone=backbone,
            technique=tech,
            shots=args.shots,
            seed=args.seed,
            params=params,
        )
        m = r.metrics
        rows.append(
            {
                "technique": tech,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "trainable_params": m["cost"]["trainable_params"],
                "fit_cpu_seconds": m["cost"]["fit_cpu_seconds"],
                "fit_wall_seconds": m["cost"]["fit_wall_seconds"],
                "predict_seconds": m["timings"]["predict_seconds"],
                "peak_rss_mb": m["cost"]["fit_peak_rss_mb"],
                # what this fit added over the process's memory when it started (later techniques would
                # otherwise inherit earlier ones' peaks)
                "peak_rss_delta_mb": m["cost"]["fit_peak_rss_mb"] - m["cost"]["fit_start_rss_mb"],
                "epochs": params.get("epochs"),
                "n_train": r.config["n_train"],
                "n_test": r.config["n_test"],
                "history": m.get("history"),
                "precision": m["runtime"]["precision"],
            }
        )
        print(
            f"  {tech}: acc {m['accuracy']:.4f}, {time.perf_counter() - start:.0f}s in all", file=sys.stderr
        )
    if backbone.modality == "text":  # the strongest simple baseline, on the same training rows
        from warmstart.baselines import tfidf_logreg

        start_cpu = time.process_time()
        held_out = test if test is not None else pk.train.subset(r.split.test)
        base = tfidf_logreg(pk.train.subset(r.split.train), held_out, seed=args.seed)
        rows.append(
            {
                "technique": "TF-IDF + LR (baseline)",
                "accuracy": base["accuracy"],
                "macro_f1": base["macro_f1"],
                "trainable_params": 0,
                "fit_cpu_seconds": time.process_time() - start_cpu,
                "fit_wall_seconds": base["timings"]["fit_seconds"],
                "peak_rss_mb": float("nan"),
                "n_train": r.config["n_train"],
                "n_test": len(held_out),
                "precision": "fp64",
            }
        )
    print_table(rows, args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "threads": torch.get_num_threads(), "rows": rows}, indent=1)
    )
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    first = rows[0]
    print(
        f"\n{args.data}, {args.backbone}, {args.shots} per class ({first['n_train']} training rows), "
        f"seed {args.seed}, test rows {first['n_test']}, torch threads {torch.get_num_threads()}, precision "
        f"{first['precision']}\n"
    )
    print(
        "| technique | test accuracy | macro-F1 | trainable params | fit CPU s | fit wall s | peak RSS MB | "
        "fit's own peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['technique']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['trainable_params']:,} | "
            f"{r['fit_cpu_seconds']:.0f} | {r['fit_wall_seconds']:.0f} | "
            f"{'-' if r['peak_rss_mb'] != r['peak_rss_mb'] else format(r['peak_rss_mb'], '.0f')} | "
            f"{format(r['peak_rss_delta_mb'], '.0f') if 'peak_rss_delta_mb' in r else '-'} |"
        )
    base = next((r for r in rows if r["technique"] == "scratch"), None)
    if base is not None:
        gains = ", ".join(
            f"{r['technique']} {r['accuracy'] - base['accuracy']:+.3f}" for r in rows if r is not base
        )
        print(f"\naccuracy over scratch: {gains}")
    print(f"mean accuracy {np.mean([r['accuracy'] for r in rows]):.4f}")


if __name__ == "__main__":
    sys.exit(main())
