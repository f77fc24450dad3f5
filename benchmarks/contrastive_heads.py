"""Which classifier on top of contrastive tuning: head variants scored on one tuned encoder per run.

For every data set, k per class and seed, ``contrastive`` is fitted once with its defaults (plus ``--param``), and
then several heads are scored on the same test rows, so their differences are not blurred by the tuning's own
seed-to-seed spread:

- ``tuned``: the technique's own head (logistic regression, C = 1, on the tuned embeddings): what it predicts today;
- ``probe``: the ``probe`` technique on the pretrained embeddings (no tuning), for reference;
- ``ensemble``: the mean of the two's class probabilities;
- ``concat``: logistic regression (C = 1) on the tuned and the pretrained embeddings side by side, each centred;
- ``then_lp_ft``: ``lp_ft`` (its head from a probe, then everything trained on cross-entropy) starting from the tuned
  encoder, at lr 1e-5 (SetFit's end-to-end body rate) and its default epochs: an end-to-end phase.

Meant for the development collection (the sets defaults are chosen on), never for the evaluation collection:

    python benchmarks/contrastive_heads.py --data vader-amazon,vader-nyt,vader-tweets,trec --shots 8,64 --seeds 3

Rows go to ``--output`` (JSON lines, keyed by code version, data, k, seed and parameters; reruns skip them) and
the table shows each variant's mean accuracy and its mean paired difference from ``tuned``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import (  # benchmarks/common.py, beside this script
    code_version,
    key_values,
    keyed_rows,
    packaged_split,
)

from warmstart.data import few_shot
from warmstart.runtime import one_blas_thread
from warmstart.techniques import get_technique

VARIANTS = ("tuned", "probe", "ensemble", "concat", "then_lp_ft")


def score_heads(train, test, seed: int, backbone: str, params: dict) -> dict:
    from sklearn.linear_model import LogisticRegression

    cpu = time.process_time()
    est = get_technique("contrastive", backbone=backbone, seed=seed, progress=False, **params).fit(train)
    tune_cpu = time.process_time() - cpu
    probe = get_technique("probe", backbone=backbone, seed=seed, progress=False).fit(train)
    p_tuned, p_probe = est.predict_proba(test), probe.predict_proba(test)
    assert list(est.classes_) == list(probe.classes_)
    classes = est.classes_
    pre = probe.backbone_
    tr = np.hstack(
        [est._embed(train), np.asarray(pre.encode(train.inputs, progress=False), dtype=np.float64)]
    )
    te = np.hstack([est._embed(test), np.asarray(pre.encode(test.inputs, progress=False), dtype=np.float64)])
    mean = tr.mean(0)
    with one_blas_thread():
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(tr - mean, np.asarray(train.labels))
    cpu = time.process_time()
    e2e = get_technique(
        "lp_ft",
        backbone=est.backbone_,
        seed=seed,
        progress=False,
        lr=1e-5,
        precision=params.get("precision", "auto"),
    ).fit(train)
    e2e_cpu = time.process_time() - cpu
    preds = {
        "tuned": classes[p_tuned.argmax(1)],
        "probe": classes[p_probe.argmax(1)],
        "ensemble": classes[(p_tuned + p_probe).argmax(1)],
        "concat": lr.predict(te - mean),
        "then_lp_ft": e2e.predict(test),
    }
    y = np.asarray(test.labels)
    return {
        "accuracy": {v: float((np.asarray(p) == y).mean()) for v, p in preds.items()},
        "tune_cpu_s": tune_cpu,
        "lp_ft_cpu_s": e2e_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="vader-amazon,vader-nyt,vader-tweets,trec")
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--param", action="append", default=[], help="contrastive KEY=VALUE (repeatable)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--output", default="runs/bench/contrastive_heads.jsonl")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    params = key_values(args.param)
    out = Path(args.output)
    rows = keyed_rows(out)
    version = code_version()
    datasets, shots = args.data.split(","), [int(k) for k in args.shots.split(",")]
    for k in shots:
        for seed in range(args.seeds):
            for d in datasets:
                key = json.dumps([version, d, k, seed, args.backbone, params], sort_keys=True)
                if key in rows:
                    continue
                pool, test = packaged_split(d, args.test_rows, test_size=0.3)
                train = pool.subset(few_shot(pool.labels, k, seed=seed))
                r = score_heads(train, test, seed, args.backbone, params)
                rows[key] = {"key": key, "data": d, "k": k, "seed": seed, **r}
                with out.open("a") as f:
                    f.write(json.dumps(rows[key]) + "\n")
                acc = "  ".join(f"{v} {a:.4f}" for v, a in r["accuracy"].items())
                print(f"{d} k={k} seed={seed}: {acc}", file=sys.stderr, flush=True)
    print(f"code {version}, params {params}\n")
    print("| data | k | seeds | " + " | ".join(VARIANTS) + " |")
    print("|---|---|---|" + "---|" * len(VARIANTS))
    diffs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for d in datasets:
        for k in shots:
            cell = [
                r
                for key, r in rows.items()
                if r["data"] == d
                and r["k"] == k
                and json.loads(key)[0] == version
                and json.loads(key)[4:] == [args.backbone, params]
            ]
            if not cell:
                continue
            means = {v: statistics.mean(r["accuracy"][v] for r in cell) for v in VARIANTS}
            for v in VARIANTS:
                diffs[v].append(means[v] - means["tuned"])
            print(f"| {d} | {k} | {len(cell)} | " + " | ".join(f"{means[v]:.4f}" for v in VARIANTS) + " |")
    print(
        "\nmean difference from tuned, points: "
        + ", ".join(f"{v} {100 * statistics.mean(x):+.2f}" for v, x in diffs.items() if x)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
