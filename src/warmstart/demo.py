"""The demo: few-shot 20 Newsgroups with a pretrained sentence encoder against TF-IDF + logistic regression.

Three methods on the same training rows and the same test rows: TF-IDF + LR (the strongest simple baseline), the
linear probe on the encoder's embeddings (the cheap option), and the probe on the embeddings plus TF-IDF of the
words (``lexical="tfidf"``), the most accurate technique measured on this data within a few minutes of CPU
(docs/getting-started.md has the measurements, the fine-tuning techniques included).
"""

from __future__ import annotations

import time
from pathlib import Path

from .baselines import tfidf_logreg
from .data import load_packaged
from .data.splits import stratified_split
from .run import fit_run
from .runtime import resolve

# A first run on 2 CPU cores is mostly encoding documents. On an AVX2-only CPU (fp32) the defaults of before,
# 2,000 test documents and the encoder's 256 tokens, took 498 s; reading 128 tokens cost a third less CPU and
# scored the same on those rows (probe with words 0.7005 and 0.8040 at 8 and 64 per class, against 0.7050 and
# 0.8010: the word features read the whole document), and 1,000 test documents halve the rest of the test
# encoding (docs/getting-started.md has the timings).
DEFAULT_TEST_ROWS = 1000
DEFAULT_BACKBONE = "all-MiniLM-L6-v2:max_length=128"


def run_demo(
    shots: list[int],
    seed: int = 0,
    precision: str = "auto",
    backbone: str = DEFAULT_BACKBONE,
    output: str | Path = "runs/demo",
    test_rows: int = DEFAULT_TEST_ROWS,
) -> list[dict]:
    """Fit and score the three methods at each of ``shots`` examples per class; ``test_rows``: a stratified
    sample of the standard test split of at most this many documents (0: all 7,528)."""
    start = time.perf_counter()
    ng = load_packaged("20newsgroups")
    test = ng.test
    if 0 < test_rows < len(test):
        test = test.subset(stratified_split(test.labels, 0.0, test_rows / len(test), 0).test)
    sample = "all of" if len(test) == len(ng.test) else "a stratified sample of"
    print(
        f"20 Newsgroups: {len(ng.train.classes)} classes, train pool {len(ng.train):,} documents; test on {sample} "
        f"{len(test):,} documents of the standard {len(ng.test):,}-document test split (--test-rows). Seed {seed}."
    )
    print(
        f"Backbone {backbone}, features in {resolve('auto', precision).precision}; the first run encodes the "
        f"test documents once (minutes on 2 cores), later runs read the feature cache.\n"
    )
    methods = (  # (artifact folder, table label, probe parameters)
        ("probe", f"{backbone} + probe", {}),
        ("probe-words", f"{backbone} + probe + words", {"lexical": "tfidf"}),
    )
    rows = []
    for k in shots:
        train = None
        for name, label, extra in methods:
            r = fit_run(
                ng.train,
                test=test,
                backbone=backbone,
                technique="probe",
                shots=k,
                seed=seed,
                params={"precision": precision, **extra},
                output=Path(output) / f"{name}-k{k}",
            )
            train = ng.train.subset(r.split.train)
            hits, misses = r.timings.get("feature_cache_hits", 0), r.timings.get("feature_cache_misses", 0)
            rows.append(
                {
                    "k": k,
                    "method": label,
                    "accuracy": r.metrics["accuracy"],
                    "macro_f1": r.metrics["macro_f1"],
                    "seconds": r.timings["fit_seconds"] + r.timings["predict_seconds"],
                    "cache": f"{hits} hit / {misses} miss",
                }
            )
        base = tfidf_logreg(train, test, seed=seed)
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
        print(f"k={k}: done ({len(train)} training rows, the same rows for every method)")
    width = max(len(r["method"]) for r in rows) + 1
    print(
        f"\n{'k/class':>7}  {'method':{width}} {'accuracy':>8} {'macro-F1':>8} {'seconds':>8}  feature cache"
    )
    for row in rows:
        print(
            f"{row['k']:>7}  {row['method']:{width}} {row['accuracy']:8.4f} {row['macro_f1']:8.4f} "
            f"{row['seconds']:8.1f}  {row['cache']}"
        )
    print(f"\nartifacts in {output}/; total time {time.perf_counter() - start:.1f}s")
    print(f"try: warmstart predict {Path(output) / f'probe-words-k{shots[-1]}'} some_texts.txt")
    return rows
