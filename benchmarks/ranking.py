"""Do transferability scores rank backbones the way their trained accuracy does, and how much time do they save?

For every data set and every candidate backbone: features of a stratified training sample and of a test sample
(both through the feature cache), every score on the training features (timed), and the test accuracy of a
linear probe trained on the same training rows (timed, C chosen by cross-validation). Per data set and per
score it prints Kendall's tau between the score and the probe's test accuracy over the candidates, then the
mean tau per score, and the time of scoring every candidate against the time of training every candidate.

The candidates have spread on purpose: the pretrained encoders, the same encoders cut to fewer layers (blocks),
and a randomly initialised copy, all as backbone variants (``NAME:num_layers=N``, ``NAME:init=random``).

    python benchmarks/ranking.py                       # text and image sets, resumable
    python benchmarks/ranking.py --summary-only        # the tables from the saved results
    python benchmarks/ranking.py --rescore ridge_loo   # (re)compute some scores of the saved cells only

Results go to ``--output`` after every (data set, backbone) cell; a rerun skips the cells already there.
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

from warmstart._io import atomic_write_json
from warmstart.backbones import get_backbone
from warmstart.data import load_packaged, stratified_split
from warmstart.features import FeatureCache
from warmstart.selection import ALL_SCORES, score_features
from warmstart.techniques import get_technique
from warmstart.techniques.base import encode_labels

TEXT = [
    "all-MiniLM-L6-v2",
    "paraphrase-MiniLM-L3-v2",
    "all-MiniLM-L6-v2:num_layers=3",
    "all-MiniLM-L6-v2:num_layers=1",
    "all-MiniLM-L6-v2:num_layers=0",
    "all-MiniLM-L6-v2:init=random",
]
IMAGE = [
    "efficientnet-lite0:image_size=128",
    "efficientnet-lite0:image_size=128,num_blocks=12",
    "efficientnet-lite0:image_size=128,num_blocks=8",
    "efficientnet-lite0:image_size=128,num_blocks=4",
    "efficientnet-lite0:image_size=128,init=random",
]
DATA = {
    "trec": TEXT,
    "sms-spam": TEXT,
    "vader-movie": TEXT,
    "reuters-r8": TEXT,
    "fashion-mnist": IMAGE,
    "digits": IMAGE,
}


def samples(name: str, train_rows: int, test_rows: int, seed: int = 0):
    pk = load_packaged(name)
    pool, test = pk.train, pk.test
    if test is None:
        s = stratified_split(pool.labels, val_size=0.0, test_size=0.3, seed=seed)
        pool, test = pool.subset(s.train), pool.subset(s.test)
    if len(pool) > train_rows:
        pool = pool.subset(np.sort(stratified_split(pool.labels, 0.0, train_rows / len(pool), seed).test))
    if len(test) > test_rows:
        test = test.subset(np.sort(stratified_split(test.labels, 0.0, test_rows / len(test), seed).test))
    return pool, test


def run_cell(data_name: str, spec: str, train, test, cache: FeatureCache) -> dict:
    bb = get_backbone(spec)
    start = time.perf_counter()
    Xtr = np.asarray(cache.get(bb, train, progress=False), dtype=np.float64)
    Xte = np.asarray(cache.get(bb, test, progress=False), dtype=np.float64)
    extract = time.perf_counter() - start
    classes = np.array(sorted({str(v) for v in train.labels}))
    y = encode_labels(train.labels, classes)
    values, seconds = score_features(Xtr, y, ALL_SCORES, bb.source_proba(Xtr))
    start = time.perf_counter()
    probe = get_technique("probe", backbone=bb, progress=False).fit_features(Xtr, y, len(classes))
    train_s = time.perf_counter() - start
    pred = classes[probe.head_(torch.from_numpy(Xte).float()).argmax(1).numpy()]
    acc = float((pred == np.asarray(test.labels, dtype=str)).mean())
    return {
        "scores": values,
        "score_seconds": seconds,
        "probe_accuracy": acc,
        "probe_fit_seconds": train_s,
        "extract_seconds": extract,
        "num_features": int(Xtr.shape[1]),
    }


def rescore(cell: dict, spec: str, train, cache: FeatureCache, names: list[str]) -> None:
    """Recompute the scores ``names`` of a saved cell from its cached training features (the probe stays)."""
    bb = get_backbone(spec)
    Xtr = np.asarray(cache.get(bb, train, progress=False), dtype=np.float64)
    classes = np.array(sorted({str(v) for v in train.labels}))
    values, seconds = score_features(Xtr, encode_labels(train.labels, classes), names, bb.source_proba(Xtr))
    cell["scores"].update(values)
    cell["score_seconds"].update(seconds)


def kendall(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def summarise(results: dict, datasets: list[str]) -> int:
    taus: dict[str, list[float]] = {s: [] for s in ALL_SCORES}
    train_time = extract_time = 0.0
    for d in datasets:
        cells = {spec: results[f"{d}|{spec}"] for spec in DATA[d] if f"{d}|{spec}" in results}
        if len(cells) < 3:
            continue
        print(f"\n{d}: probe test accuracy and scores per backbone")
        print("| backbone | probe acc | " + " | ".join(ALL_SCORES) + " |")
        print("|---|---|" + "---|" * len(ALL_SCORES))
        for spec, c in sorted(cells.items(), key=lambda kv: -kv[1]["probe_accuracy"]):
            vals = ["n/a" if c["scores"].get(s) is None else f"{c['scores'][s]:.4f}" for s in ALL_SCORES]
            print(f"| {spec} | {c['probe_accuracy']:.4f} | " + " | ".join(vals) + " |")
        acc = [c["probe_accuracy"] for c in cells.values()]
        row = []
        for s in ALL_SCORES:
            pairs = [
                (c["scores"][s], c["probe_accuracy"])
                for c in cells.values()
                if c["scores"].get(s) is not None
            ]
            if len(pairs) >= 3:
                t = kendall([p[0] for p in pairs], [p[1] for p in pairs])
                taus[s].append(t)
                row.append(f"{s} {t:+.2f}")
        print(f"Kendall tau vs probe accuracy ({len(acc)} backbones): " + ", ".join(row))
        for c in cells.values():
            train_time += c["probe_fit_seconds"]
            extract_time += c["extract_seconds"]
    print("\n| score | mean Kendall tau | data sets | min | scoring s, all candidates |")
    print("|---|---|---|---|---|")
    per_score_time = {s: 0.0 for s in ALL_SCORES}
    for d in datasets:
        for spec in DATA[d]:
            c = results.get(f"{d}|{spec}")
            if c:
                for s in ALL_SCORES:
                    per_score_time[s] += c["score_seconds"].get(s, 0.0)
    for s in ALL_SCORES:
        if taus[s]:
            print(
                f"| {s} | {statistics.mean(taus[s]):+.3f} | {len(taus[s])} | {min(taus[s]):+.2f} | "
                f"{per_score_time[s]:.2f} |"
            )
    print(
        f"\ntraining every candidate (probe fits on cached features): {train_time:.1f} s; "
        f"feature extraction shared by both: {extract_time:.0f} s"
    )
    for s in ALL_SCORES:
        if taus[s] and train_time:
            print(f"{s}: scoring took {per_score_time[s] / train_time:.1%} of the training time")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=",".join(DATA))
    ap.add_argument("--train-rows", type=int, default=1500, help="stratified training sample per data set")
    ap.add_argument("--test-rows", type=int, default=1000, help="stratified test sample per data set")
    ap.add_argument("--output", default="runs/bench/ranking.json")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--rescore", default="", help="comma-separated scores to recompute for the saved cells")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    datasets = args.data.split(",")
    out = Path(args.output)
    results: dict = json.loads(out.read_text()) if out.is_file() else {}
    if not args.summary_only:
        cache = FeatureCache()
        for d in datasets:
            train, test = samples(d, args.train_rows, args.test_rows)
            for spec in DATA[d]:
                key = f"{d}|{spec}"
                if key in results and args.rescore:
                    rescore(results[key], spec, train, cache, args.rescore.split(","))
                    atomic_write_json(out, results)
                    continue
                if key in results:
                    continue
                results[key] = run_cell(d, spec, train, test, cache)
                atomic_write_json(out, results)
                r = results[key]
                print(
                    f"{key}: probe {r['probe_accuracy']:.4f} logme {r['scores']['logme']:.4f} "
                    f"extract {r['extract_seconds']:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    return summarise(results, datasets)


if __name__ == "__main__":
    sys.exit(main())
