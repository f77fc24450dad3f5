"""Simulated active learning on real packaged data: which rows to label next, by strategy, against random.

For each data set and seed, every strategy starts from the same ``--start`` labelled rows per class (``few_shot`` of
the training pool) and adds ``--batch`` rows per round for ``--rounds`` rounds, chosen by
``warmstart.selection.suggest.suggest_rows`` from the rest of the pool (whose labels the simulation reveals once
chosen). After every round warmstart's linear probe (``LinearProbe.fit_features``: standardised features, C by
cross-validation) is refitted on the labelled rows and scored on the same held-out test rows, in the data set's
metric (macro-F1 when its largest class is over 3x the smallest, else accuracy). Features of the pool and the test
rows come from the feature cache, once per data set.

A strategy written ``FIRST>THEN@K`` (e.g. ``coverage>mixed@8``) uses FIRST while the labelled rows are fewer than K
per class (their count over the number of classes), THEN from there on: a switch from covering the pool to
following the model once it has enough labels to be worth following.

It prints the mean curve per strategy and the labels each needs to reach random sampling's final score (linear
interpolation between rounds; "not reached" when it never does), as a saving against random's labels.

    python benchmarks/active_learning.py --data trec,vader-amazon                     # development
    python benchmarks/active_learning.py --data sms-spam,bbc-news,vader-movie,reuters-r8   # evaluation
    python benchmarks/active_learning.py --data digits,fashion-mnist --pool-rows 5000 \
        --backbone efficientnet-lite0:image_size=64                                     # images
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from common import code_version, packaged_split  # benchmarks/common.py, beside this script

from warmstart._io import atomic_write_json
from warmstart.backbones import get_backbone
from warmstart.data import few_shot, stratified_split
from warmstart.features import FeatureCache
from warmstart.metrics import classification_metrics
from warmstart.runtime import resolve
from warmstart.selection.suggest import STRATEGIES, row_keys, suggest_rows
from warmstart.study_stats import choose_metric
from warmstart.techniques.base import encode_labels
from warmstart.techniques.probe import LinearProbe


def run_data(name: str, args: argparse.Namespace, strategies: list[str]) -> dict:
    pool, test = packaged_split(name, args.test_rows)
    # a stratified sample of a large pool (Fashion-MNIST: 60k)
    if args.pool_rows and args.pool_rows < len(pool):
        keep = stratified_split(pool.labels, val_size=0.0, test_size=args.pool_rows / len(pool), seed=0).test
        pool = pool.subset(np.sort(keep))
    bb = get_backbone(args.backbone)
    precision = resolve("cpu", args.precision).precision
    cache = FeatureCache()
    Xp = np.asarray(cache.get(bb, pool, precision=precision, progress=False), dtype=np.float64)
    Xt = np.asarray(cache.get(bb, test, precision=precision, progress=False), dtype=np.float64)
    classes = np.array(sorted(set(pool.labels)))
    yp, yt = encode_labels(pool.labels, classes), encode_labels(test.labels, classes)
    support = {str(c): int((yt == i).sum()) for i, c in enumerate(classes)}
    metric = choose_metric(support, args.metric)
    keys = row_keys(pool)
    curves: dict[str, list[list[float]]] = {s: [] for s in strategies}
    labels_at: list[int] = []
    for seed in range(args.seeds):
        start = few_shot(pool.labels, args.start, seed=seed)
        for strategy in strategies:
            labelled = list(start)
            scores, counts = [], []
            for r in range(args.rounds + 1):
                probe = LinearProbe(backbone=args.backbone, seed=seed, progress=False)
                probe.fit_features(Xp[labelled], yp[labelled], len(classes))
                with torch.inference_mode():
                    proba_t = probe.head_(torch.from_numpy(Xt.astype(np.float32))).softmax(-1).numpy()
                m = classification_metrics(
                    [str(classes[i]) for i in yt],
                    [str(classes[i]) for i in proba_t.argmax(1)],
                    [str(c) for c in classes],
                )
                scores.append(m[metric])
                counts.append(len(labelled))
                if r == args.rounds:
                    break
                rest = np.setdiff1d(np.arange(len(pool)), labelled)
                with torch.inference_mode():
                    proba = probe.head_(torch.from_numpy(Xp[rest].astype(np.float32))).softmax(-1).numpy()
                picked = suggest_rows(
                    proba,
                    Xp[rest],
                    args.batch,
                    strategy=strategy_at(strategy, len(labelled), len(classes)),
                    labeled_features=Xp[labelled],
                    keys=[keys[i] for i in rest],
                    labeled_keys=[keys[i] for i in labelled],
                    seed=seed * 1000 + r,
                )
                labelled += [int(rest[i]) for i in picked]
            curves[strategy].append(scores)
            labels_at = counts
            print(f"{name} seed {seed} {strategy}: {' '.join(f'{v:.3f}' for v in scores)}", file=sys.stderr)
    return {"metric": metric, "labels": labels_at, "curves": curves, "classes": len(classes)}


def strategy_at(strategy: str, labelled: int, classes: int) -> str:
    """The strategy of this round: ``FIRST>THEN@K`` is FIRST below K labelled rows per class, else THEN.

    >>> strategy_at("coverage>mixed@8", 14, 2), strategy_at("coverage>mixed@8", 16, 2), strategy_at("margin", 4, 2)
    ('coverage', 'mixed', 'margin')
    """
    if ">" not in strategy:
        return strategy
    first, rest = strategy.split(">")
    then, at = rest.split("@")
    return first if labelled < float(at) * classes else then


def labels_to_reach(labels: list[int], curve: list[float], target: float) -> float | None:
    """Labels at which ``curve`` first reaches ``target``, linearly interpolated between rounds."""
    for i, v in enumerate(curve):
        if v >= target:
            if i == 0:
                return float(labels[0])
            v0 = curve[i - 1]
            return labels[i - 1] + (target - v0) / (v - v0) * (labels[i] - labels[i - 1])
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sms-spam,bbc-news,vader-movie,reuters-r8")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--start", type=int, default=2, help="labelled rows per class to start from")
    ap.add_argument("--batch", type=int, default=20, help="rows added per round")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--pool-rows", type=int, default=0, help="a stratified sample of the pool (0: all of it)")
    ap.add_argument("--metric", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--output", default="runs/bench/active_learning.json")
    args = ap.parse_args(argv)
    strategies = args.strategies.split(",")
    if "random" not in strategies:
        strategies.insert(0, "random")
    key = json.dumps(
        {"code": code_version(), **{k: v for k, v in vars(args).items() if k not in ("data", "output")}},
        sort_keys=True,
    )
    out = Path(args.output)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    results = saved.setdefault(key, {})
    for name in args.data.split(","):
        if name not in results:
            results[name] = run_data(name, args, strategies)
            atomic_write_json(out, saved)
    print(f"keyed by {key}\n")
    savings: dict[str, list[float]] = {s: [] for s in strategies if s != "random"}
    for name in args.data.split(","):
        r = results[name]
        mean = {s: np.mean(r["curves"][s], axis=0).tolist() for s in strategies}
        print(f"{name} ({r['classes']} classes, {r['metric']}, mean of {len(r['curves']['random'])} seeds)")
        print(
            "| strategy | "
            + " | ".join(str(n) for n in r["labels"])
            + " | labels to reach random's final | saving |"
        )
        print("|---" * (len(r["labels"]) + 3) + "|")
        target, final = mean["random"][-1], r["labels"][-1]
        for s in strategies:
            need = labels_to_reach(r["labels"], mean[s], target)
            saving = None if need is None or s == "random" else 1 - need / final
            if s != "random":
                savings[s].append(saving)
            cells = " | ".join(f"{v:.3f}" for v in mean[s])
            print(
                f"| {s} | {cells} | {'not reached' if need is None else f'{need:.0f}'} | "
                f"{'' if saving is None else f'{100 * saving:.0f}%'} |"
            )
        print()
    for s, v in savings.items():
        reached = [x for x in v if x is not None]
        mean = f"{100 * statistics.mean(reached):.0f}%" if reached else "-"
        print(
            f"{s}: mean saving against random {mean} over the {len(reached)} data sets where it reached random's "
            f"final score; not reached on {len(v) - len(reached)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
