"""The demo: few-shot 20 Newsgroups with a pretrained sentence encoder + linear probe vs TF-IDF + LR."""

from __future__ import annotations

import time
from pathlib import Path

from .baselines import tfidf_logreg
from .data import load_packaged
from .run import fit_run
from .runtime import resolve


def run_demo(
    shots: list[int],
    seed: int = 0,
    precision: str = "auto",
    backbone: str = "all-MiniLM-L6-v2",
    output: str | Path = "runs/demo",
) -> list[dict]:
    start = time.perf_counter()
    ng = load_packaged("20newsgroups")
    print(
        f"20 Newsgroups: {len(ng.train.classes)} classes, train pool {len(ng.train):,} documents, "
        f"test {len(ng.test):,} documents (standard split). Seed {seed}."
    )
    print(
        f"Backbone {backbone}, features in {resolve('auto', precision).precision}; the first run encodes the "
        f"test set once (minutes on 2 cores), later runs read the feature cache.\n"
    )
    rows = []
    for k in shots:
        r = fit_run(
            ng.train,
            test=ng.test,
            backbone=backbone,
            technique="probe",
            shots=k,
            seed=seed,
            params={"precision": precision},
            output=Path(output) / f"probe-k{k}",
        )
        train = ng.train.subset(r.split.train)
        base = tfidf_logreg(train, ng.test, seed=seed)
        rows.append(
            {
                "k": k,
                "method": f"{backbone} + probe",
                "accuracy": r.metrics["accuracy"],
                "macro_f1": r.metrics["macro_f1"],
                "seconds": r.timings["fit_seconds"] + r.timings["predict_seconds"],
                "cache": f"{r.timings.get('feature_cache_hits', 0)} hit / {r.timings.get('feature_cache_misses', 0)} miss",
            }
        )
        rows.append(
            {
                "k": k,
                "method": "TF-IDF + logistic regression",
                "accuracy": base["accuracy"],
                "macro_f1": base["macro_f1"],
                "seconds": base["timings"]["fit_seconds"] + base["timings"]["predict_seconds"],
                "cache": "-",
            }
        )
        print(f"k={k}: done ({len(train)} training rows, same rows for both methods)")
    print(f"\n{'k/class':>7}  {'method':34} {'accuracy':>8} {'macro-F1':>8} {'seconds':>8}  feature cache")
    for row in rows:
        print(
            f"{row['k']:>7}  {row['method']:34} {row['accuracy']:8.4f} {row['macro_f1']:8.4f} "
            f"{row['seconds']:8.1f}  {row['cache']}"
        )
    print(f"\nartifacts in {output}/; total time {time.perf_counter() - start:.1f}s")
    print(f"try: warmstart predict {Path(output) / f'probe-k{shots[-1]}'} some_texts.txt")
    return rows
