"""Which classifier on top of contrastive tuning: head variants scored on one tuned encoder per run.

For every data set, k per class and seed, ``contrastive`` is fitted once with its defaults (plus ``--param``), and
then several heads are scored on the same test rows, so their differences are not blurred by the tuning's own
seed-to-seed spread:

- ``tuned``: the technique's own head (logistic regression, C = 1, on the tuned embeddings): what it predicts today;
- ``probe``: the ``probe`` technique on the pretrained embeddings (no tuning), for reference;
- ``ensemble``: the mean of the two's class probabilities;
- ``concat``: logistic regression (C = 1) on the tuned and the pretrained embeddings side by side, each centred;
- ``then_lp_ft``: ``lp_ft`` (its head from a probe, then everything trained on cross-entropy) starting from the tuned
  encoder, at lr 1e-5 (SetFit's end-to-end body rate) and its default epochs: an end-to-end phase;
- ``words``: ``probe`` with ``lexical="tfidf"`` on the *tuned* encoder: logistic regression on TF-IDF of the words
  beside the tuned embedding, the embedding's weight and C chosen by cross-validation on the k rows;
- ``probe_words``: the same on the pretrained encoder (the demo's "probe + words"), for reference;
- ``tfidf``: TF-IDF + logistic regression alone (``baselines.fit_tfidf_logreg``), for reference;
- ``tuned+tfidf``: the mean of the technique's and ``tfidf``'s class probabilities (a late fusion that keeps the
  tuned head as it is).

``--variants`` picks which to score (``tuned`` always; ``then_lp_ft`` costs about twice the tuning).

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

VARIANTS = (
    "tuned",
    "probe",
    "ensemble",
    "concat",
    "then_lp_ft",
    "words",
    "probe_words",
    "tfidf",
    "tuned+tfidf",
)
DEFAULT_VARIANTS = "tuned,probe,ensemble,concat,then_lp_ft"


def score_heads(train, test, seed: int, backbone: str, params: dict, variants: list[str]) -> dict:
    from sklearn.linear_model import LogisticRegression

    cpu = time.process_time()
    est = get_technique("contrastive", backbone=backbone, seed=seed, progress=False, **params).fit(train)
    tune_cpu = time.process_time() - cpu
    classes = est.classes_
    p_tuned = est.predict_proba(test)
    preds = {"tuned": classes[p_tuned.argmax(1)]}
    out: dict = {"tune_cpu_s": tune_cpu}
    if {"probe", "ensemble", "concat"} & set(variants):
        probe = get_technique("probe", backbone=backbone, seed=seed, progress=False).fit(train)
        p_probe = probe.predict_proba(test)
        assert list(classes) == list(probe.classes_)
        preds["probe"] = classes[p_probe.argmax(1)]
        preds["ensemble"] = classes[(p_tuned + p_probe).argmax(1)]
        pre = probe.backbone_
        tr = np.hstack(
            [est._embed(train), np.asarray(pre.encode(train.inputs, progress=False), dtype=np.float64)]
        )
        te = np.hstack(
            [est._embed(test), np.asarray(pre.encode(test.inputs, progress=False), dtype=np.float64)]
        )
        mean = tr.mean(0)
        with one_blas_thread():
            lr = LogisticRegression(C=1.0, max_iter=2000).fit(tr - mean, np.asarray(train.labels))
        preds["concat"] = lr.predict(te - mean)
    if "then_lp_ft" in variants:
        cpu = time.process_time()
        e2e = get_technique(
            "lp_ft",
            backbone=est.backbone_,
            seed=seed,
            progress=False,
            lr=1e-5,
            precision=params.get("precision", "auto"),
        ).fit(train)
        out["lp_ft_cpu_s"] = time.process_time() - cpu
        preds["then_lp_ft"] = e2e.predict(test)
    for name, bb in (("words", est.backbone_), ("probe_words", backbone)):
        if name in variants:
            cpu = time.process_time()
            words = get_technique(
                "probe", backbone=bb, seed=seed, progress=False, lexical="tfidf", use_cache=name != "words"
            ).fit(train)
            out[f"{name}_cpu_s"] = time.process_time() - cpu
            preds[name] = words.predict(test)
    if {"tfidf", "tuned+tfidf"} & set(variants):
        from warmstart.baselines import fit_tfidf_logreg

        tfidf = fit_tfidf_logreg(train, seed)
        assert [str(c) for c in tfidf.model.classes_] == [str(c) for c in classes]
        p_words = tfidf.predict_proba(list(test.inputs))
        preds["tfidf"] = classes[p_words.argmax(1)]
        preds["tuned+tfidf"] = classes[(p_tuned + p_words).argmax(1)]
    y = np.asarray(test.labels)
    out["accuracy"] = {v: float((np.asarray(p) == y).mean()) for v, p in preds.items() if v in variants}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="vader-amazon,vader-nyt,vader-tweets,trec")
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--param", action="append", default=[], help="contrastive KEY=VALUE (repeatable)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--output", default="runs/bench/contrastive_heads.jsonl")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    params = key_values(args.param)
    variants = ["tuned"] + [v for v in args.variants.split(",") if v != "tuned"]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(args.output)
    rows = keyed_rows(out)
    version = code_version()
    datasets, shots = args.data.split(","), [int(k) for k in args.shots.split(",")]
    for k in shots:
        for seed in range(args.seeds):
            for d in datasets:
                key = json.dumps([version, d, k, seed, args.backbone, params, variants], sort_keys=True)
                if key in rows:
                    continue
                pool, test = packaged_split(d, args.test_rows, test_size=0.3)
                train = pool.subset(few_shot(pool.labels, k, seed=seed))
                r = score_heads(train, test, seed, args.backbone, params, variants)
                rows[key] = {"key": key, "data": d, "k": k, "seed": seed, **r}
                with out.open("a") as f:
                    f.write(json.dumps(rows[key]) + "\n")
                acc = "  ".join(f"{v} {a:.4f}" for v, a in r["accuracy"].items())
                print(f"{d} k={k} seed={seed}: {acc}", file=sys.stderr, flush=True)
    print(f"code {version}, params {params}\n")
    print("| data | k | seeds | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    diffs: dict[str, list[float]] = {v: [] for v in variants}
    for d in datasets:
        for k in shots:
            cell = [
                r
                for key, r in rows.items()
                if r["data"] == d
                and r["k"] == k
                and json.loads(key)[0] == version
                and json.loads(key)[4:] == [args.backbone, params, variants]
            ]
            if not cell:
                continue
            means = {v: statistics.mean(r["accuracy"][v] for r in cell) for v in variants}
            for v in variants:
                diffs[v].append(means[v] - means["tuned"])
            print(f"| {d} | {k} | {len(cell)} | " + " | ".join(f"{means[v]:.4f}" for v in variants) + " |")
    print(
        "\nmean difference from tuned, points: "
        + ", ".join(f"{v} {100 * statistics.mean(x):+.2f}" for v, x in diffs.items() if x)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
