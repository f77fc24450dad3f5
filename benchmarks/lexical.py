"""The probe with word features (``lexical="tfidf"``) against the plain probe and TF-IDF + logistic regression.

Every method trains on the same ``--shots`` rows per class of a packaged data set's training pool (per seed) and is
tested on the same fixed stratified sample of its held-out rows (``common.packaged_split``). The probe and the probe
with words read the same cached embeddings, so the difference between them is the word features alone. No
validation rows: each chooses its settings by cross-validation on the k rows, as ``warmstart fit --shots`` does.

    python benchmarks/lexical.py --data trec,vader-amazon,vader-nyt,vader-tweets,20newsgroups   # development
    python benchmarks/lexical.py --data bbc-news,reuters-r8,sms-spam,vader-movie                 # evaluation

``--methods tfidf,tfidf_pieces`` compares TF-IDF of words (scikit-learn's analyzer) with TF-IDF of the
backbone tokenizer's word pieces (whole texts, no special tokens), both with logistic regression and C by
cross-validation: whether the pieces a static model already reads carry what the words do.

Rows go to ``runs/bench/lexical.jsonl``, keyed by the code's commit and every parameter; a rerun skips rows it has.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import code_version, keyed_rows, packaged_split  # benchmarks/common.py, beside this script

from warmstart.baselines import tfidf_logreg
from warmstart.data import few_shot
from warmstart.techniques import get_technique

METHODS = ("tfidf", "probe", "probe_words")
EXTRA_METHODS = ("tfidf_pieces",)


def as_pieces(data, backbone: str):
    """``data`` with each text replaced by its word pieces' ids written as words (``p2003 p1996``), so that
    scikit-learn's TF-IDF counts pieces instead of words."""
    from warmstart.backbones import get_backbone
    from warmstart.lexical import ids_as_words

    bb = get_backbone(f"static:{backbone}").set_max_length(10**7)
    out = data.subset(np.arange(len(data)))
    out.inputs = ids_as_words(bb.tokenize([str(t) for t in data.inputs]))
    return out


def run_one(method: str, train, test, backbone: str, seed: int) -> dict:
    start = time.process_time()
    if method == "tfidf_pieces":
        train, test = as_pieces(train, backbone), as_pieces(test, backbone)
    if method in ("tfidf", "tfidf_pieces"):
        acc = tfidf_logreg(train, test, seed=seed)["accuracy"]
        return {"accuracy": float(acc), "cpu_s": round(time.process_time() - start, 2)}
    extra = {"lexical": "tfidf"} if method == "probe_words" else {}
    est = get_technique("probe", backbone=backbone, seed=seed, progress=False, **extra).fit(train)
    acc = float((est.predict(test) == np.array(test.labels)).mean())
    out = {"accuracy": acc, "cpu_s": round(time.process_time() - start, 2)}
    if method == "probe_words":
        out["lexical_weight"], out["C"] = est.lexical_weight_, est.C_
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="bbc-news,reuters-r8,sms-spam,vader-movie")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument(
        "--test-size", type=float, default=0.3, help="held-out share of sets without a test split"
    )
    ap.add_argument("--output", default="runs/bench/lexical.jsonl")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"of {METHODS + EXTRA_METHODS}")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    out, commit = Path(args.output), code_version()
    done = keyed_rows(out)
    results = []
    for name in args.data.split(","):
        pool, test = packaged_split(name, args.test_rows, args.test_size)
        for k in (int(s) for s in args.shots.split(",")):
            for seed in range(args.seeds):
                train = pool.subset(few_shot(pool.labels, k, seed=seed))
                for method in methods:
                    params = dict(data=name, k=k, seed=seed, method=method, backbone=args.backbone,
                                  test_rows=len(test), test_size=args.test_size)  # fmt: skip
                    key = json.dumps({"commit": commit, **params}, sort_keys=True)
                    if key not in done:
                        row = {
                            "key": key,
                            "commit": commit,
                            **params,
                            **run_one(method, train, test, args.backbone, seed),
                        }
                        with out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        done[key] = row
                    results.append(done[key])
                    print(json.dumps({k2: v for k2, v in done[key].items() if k2 != "key"}), file=sys.stderr)
    table(results)
    return 0


def table(results: list[dict]) -> None:
    cells: dict[tuple, dict[str, list[float]]] = {}
    for r in results:
        cells.setdefault((r["data"], r["k"]), {}).setdefault(r["method"], []).append(r["accuracy"])
    if all({"tfidf", "tfidf_pieces"} <= set(m) for m in cells.values()):
        pieces_table(cells)
    if not all(set(METHODS) <= set(m) for m in cells.values()):
        return
    print("| data | k | seeds | TF-IDF + LR | probe | probe + words | words - probe (seeds ahead) |")
    print("|---|---|---|---|---|---|---|")
    diffs: dict[int, list[float]] = {}
    for (name, k), m in cells.items():
        n = min(len(v) for v in m.values())
        mean = {key: float(np.mean(v[:n])) for key, v in m.items()}
        ahead = sum(a > b for a, b in zip(m["probe_words"][:n], m["probe"][:n], strict=True))
        diff = mean["probe_words"] - mean["probe"]
        diffs.setdefault(k, []).append(diff)
        print(
            f"| {name} | {k} | {n} | {mean['tfidf']:.3f} | {mean['probe']:.3f} | {mean['probe_words']:.3f} | "
            f"{100 * diff:+.1f} ({ahead}/{n}) |"
        )
    for k, d in diffs.items():
        print(f"\nk={k}: probe + words - probe, mean over {len(d)} data sets: {100 * np.mean(d):+.2f} points")


def pieces_table(cells: dict[tuple, dict[str, list[float]]]) -> None:
    print("| data | k | seeds | TF-IDF of words + LR | of word pieces + LR | pieces - words (seeds ahead) |")
    print("|---|---|---|---|---|---|")
    diffs: dict[int, list[float]] = {}
    for (name, k), m in cells.items():
        n = min(len(m["tfidf"]), len(m["tfidf_pieces"]))
        words, pieces = m["tfidf"][:n], m["tfidf_pieces"][:n]
        diff = float(np.mean(pieces) - np.mean(words))
        diffs.setdefault(k, []).append(diff)
        ahead = sum(a > b for a, b in zip(pieces, words, strict=True))
        print(
            f"| {name} | {k} | {n} | {np.mean(words):.3f} | {np.mean(pieces):.3f} | {100 * diff:+.1f} ({ahead}/{n}) |"
        )
    for k, d in diffs.items():
        print(f"\nk={k}: pieces - words, mean over {len(d)} data sets: {100 * np.mean(d):+.2f} points")


if __name__ == "__main__":
    raise SystemExit(main())
