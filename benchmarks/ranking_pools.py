"""Backbone ranking on pools of really different models: against what users get, and against a size prior.

``ranking.py`` scores one model cut to fewer layers plus a random copy, where size says little. Users choose
between different models, where a target-blind "bigger is better" prior is hard to beat. Here:

- candidates: text: all-mpnet-base-v2, all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2, and two controls (MiniLM-L6
  cut to 3 layers, a random copy); images: EfficientNet-Lite0, Lite1 and Lite2 at 64 px, and two
  controls (Lite0 cut to 8 blocks, a random copy);
- ground truth per (data set, labels per class, seed): **what the user gets**, the test score of the better of
  the probe and one fine-tuning technique (``--finetune``, default lp_ft) trained on the same rows; and the
  probe's alone, as ``ranking.py`` uses;
- every transferability score on the same labelled rows, and three baselines: the size prior (parameter count),
  a FLOPs prior (forward FLOPs per row) and kNN (one of the scores).

Per data set and label count (scores and truths averaged over the seeds) it prints Kendall's tau and weighted tau
(``scipy.stats.weightedtau``: disagreements near the top of the order count more, as in the transferability
literature) between each score and the truth, each score's margin over the size prior's tau, and the regret of
its top pick (the best candidate's truth minus the pick's), and how well one seed's truth agrees with the other
seeds' (a rough ceiling for a score computed on one seed's rows); then the means over data sets and label
counts. The
metric is macro-F1 where the test rows' largest class is over 3x the smallest, else accuracy; the scores estimate what
``warmstart rank`` would choose from the pool's class counts (rows before that was so estimated accuracy). Where
that is macro-F1, the rows also hold the same scores estimating accuracy, and the summary compares the two orders
against the truth (does ranking by macro-F1 on imbalanced data pick what trains best in macro-F1?).

    python benchmarks/ranking_pools.py --data trec,sms-spam,vader-movie,digits,fashion-mnist --shots 16,64 --seeds 3
    python benchmarks/ranking_pools.py --data vader-nyt,vader-tweets,mnist-5k --shots 16,64 --seeds 3
    python benchmarks/ranking_pools.py --summary-only [--code VERSION]

The first line is the development collection (where `rank`'s default score is chosen), the second the evaluation
collection (data sets no ranking default was chosen on: docs/selection.md).

Rows (one per data set, label count, seed and candidate) are keyed by the code version and every setting and
appended to ``--output`` (JSON lines); a rerun reuses rows of the same key and never mixes versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import keyed_rows, packaged_split, rows_version, summary_options  # noqa: E402

TEXT = [
    "all-mpnet-base-v2",
    "all-MiniLM-L6-v2",
    "paraphrase-MiniLM-L3-v2",
    "all-MiniLM-L6-v2:num_layers=3",
    "all-MiniLM-L6-v2:init=random",
]


def image_pool(size: int) -> list[str]:
    return [
        f"efficientnet-lite0:image_size={size}",
        f"efficientnet-lite1:image_size={size}",
        f"efficientnet-lite2:image_size={size}",
        f"efficientnet-lite0:image_size={size},num_blocks=8",
        f"efficientnet-lite0:image_size={size},init=random",
    ]


POOLS = {
    "trec": TEXT,
    "bbc-news": TEXT,
    "sms-spam": TEXT,
    "vader-movie": TEXT,
    "vader-nyt": TEXT,
    "vader-tweets": TEXT,
    "mnist-5k": image_pool(64),
    # 64 px like digits: at 128 px fine-tuning every candidate (the truth) costs about four times as much
    "fashion-mnist": image_pool(64),
    "digits": image_pool(64),
}
SCORES = ("logme", "knn", "hscore", "nleep", "ridge_loo", "probe_cv", "sfda", "sfda_lw")


def value(cell: dict, name: str) -> float:
    """A cell's prior or score (NaN where the score does not apply)."""
    v = cell[name] if name in PRIORS else cell["scores"].get(name)
    return float("nan") if v is None else float(v)


PRIORS = ("size", "flops")


def run_cell(spec: str, labelled, test, seed: int, finetune: str, cache, metric: str) -> dict:
    """One candidate on one (data set, labels per class, seed): scores, priors, probe and fine-tuned scores.
    ``metric``: what ``knn``, ``ridge_loo`` and ``probe_cv`` estimate, as ``warmstart rank`` chooses it from
    the full pool's class counts."""
    from warmstart.backbones import get_backbone
    from warmstart.cost import forward_flops, measure
    from warmstart.evaluate import evaluate
    from warmstart.runtime import resolve
    from warmstart.selection import score_features
    from warmstart.selection.scores import METRIC_SCORES
    from warmstart.techniques import get_technique
    from warmstart.techniques.base import encode_labels

    bb = get_backbone(spec)
    hits = cache.hits
    with measure() as extraction:
        X = np.asarray(cache.get(bb, labelled, progress=False), dtype=np.float64)
    if cache.hits > hits:  # an earlier run cached these rows: time what a user whose cache lacks them pays
        with measure() as extraction:
            bb.encode(labelled, progress=False)
    # the scores read fp32 features (as in every earlier row); `warmstart rank` encodes on the device and at the
    # precision "auto" resolves to (bf16 on a CPU that has it, as the fine-tuning below runs): timed too, not used
    rank_rt = resolve("auto", "auto")
    with measure() as extraction_auto:
        bb.to(rank_rt.device).encode(labelled, progress=False, precision=rank_rt.precision)
    classes = np.array(sorted({str(v) for v in labelled.labels}))
    y = encode_labels(labelled.labels, classes)
    scores, score_s = score_features(X, y, SCORES, bb.source_proba(X), metric=metric)
    out = {
        "scores": scores,
        "score_seconds": score_s,
        "extract_cpu_s": round(extraction.cpu_seconds, 2),
        "extract_auto_cpu_s": round(extraction_auto.cpu_seconds, 2),
        "auto_precision": rank_rt.precision,
        "size": float(sum(p.numel() for p in bb.module.parameters())),
        "flops": forward_flops(bb, labelled) / len(labelled),
    }
    if metric != "accuracy":  # the same scores estimating accuracy too: which orders better?
        out["scores_accuracy"] = score_features(X, y, METRIC_SCORES, metric="accuracy")[0]
    for name in ("probe", finetune):
        if name == "none":
            continue
        with tempfile.TemporaryDirectory() as tmp:
            extra = {} if name == "probe" else {"checkpoint_dir": tmp}
            est = get_technique(name, backbone=bb, seed=seed, progress=False, **extra)
            with measure() as cost:
                est.fit(labelled)
            m, _ = evaluate(est, test)
        out[name] = {
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "cpu_s": round(cost.cpu_seconds, 1),
        }
    return out


def taus(values: dict[str, float], truth: dict[str, float]) -> tuple[float, float]:
    from scipy.stats import kendalltau, weightedtau

    names = sorted(truth)
    a, b = [values[n] for n in names], [truth[n] for n in names]
    return float(kendalltau(a, b).statistic), float(weightedtau(a, b).statistic)


def summarise(rows: list[dict], finetune: str) -> None:
    from warmstart.study_stats import choose_metric

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["shots"]), []).append(r)
    means: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for (data, shots), cells in sorted(groups.items()):
        metric = choose_metric(cells[0]["test_support"])
        # only the seeds every candidate has finished: a half-run seed would average candidates over other rows
        names = {c["backbone"] for c in cells}
        complete = {
            s for s in {c["seed"] for c in cells} if {c["backbone"] for c in cells if c["seed"] == s} == names
        }
        cells = [c for c in cells if c["seed"] in complete]
        by: dict[str, list[dict]] = {}
        for c in cells:
            by.setdefault(c["backbone"], []).append(c)
        if len(by) < 3:
            continue

        def mean(fn, by: dict = by) -> dict[str, float]:
            return {b: float(np.mean([fn(c) for c in cs])) for b, cs in by.items()}

        def tuned(c: dict, metric: str = metric) -> float:
            return c.get(finetune, c["probe"])[metric]

        def probe(c: dict, metric: str = metric) -> float:
            return c["probe"][metric]

        truths = {
            "best of probe and " + finetune: mean(lambda c: max(probe(c), tuned(c))),
            "probe": mean(probe),
        }
        print(f"\n{data}, {shots} per class ({metric}, seeds {sorted({c['seed'] for c in cells})})")
        print("| backbone | probe | " + finetune + " | " + " | ".join(SCORES) + " | params (M) |")
        print("|---|---|---|" + "---|" * len(SCORES) + "---|")
        for b in sorted(by, key=lambda b: -truths["probe"][b]):
            ft = mean(tuned)[b]
            vals = [mean(lambda c, s=s: value(c, s))[b] for s in SCORES]
            print(
                f"| {b} | {truths['probe'][b]:.4f} | {ft:.4f} | "
                + " | ".join(f"{v:.4f}" for v in vals)
                + f" | {by[b][0]['size'] / 1e6:.1f} |"
            )
        for label, truth in truths.items():
            best = max(truth.values())
            print(
                f"\nagainst {label}: | score | tau | weighted tau | tau - size prior's | regret of its top pick "
                f"| CPU share of {finetune} on every candidate (the score alone) |"
            )
            print("|---|---|---|---|---|---|")
            size_tau = taus(mean(lambda c: c["size"]), truth)[0]
            for s in (*PRIORS, *SCORES):
                vals = mean(lambda c, s=s: value(c, s))
                if any(np.isnan(v) for v in vals.values()):
                    continue
                t, wt = taus(vals, truth)
                regret = best - truth[max(vals, key=vals.get)]
                share, alone, auto = (
                    cost_share(cells, s, finetune),
                    cost_share(cells, s, finetune, extraction=False),
                    cost_share(cells, s, finetune, key="extract_auto_cpu_s"),
                )
                means.setdefault((label.split(" ")[0], s), []).append((t, wt, regret, share, alone, auto))
                print(
                    f"| {s} | {t:+.2f} | {wt:+.2f} | {t - size_tau:+.2f} | {100 * regret:.1f} points "
                    f"| {pct(share)} ({pct(alone)}; extracting as rank does: {pct(auto)}) |"
                )
        agreement = seed_agreement(cells, finetune, metric)
        if agreement is not None:
            means.setdefault(("best", "truth itself, one seed"), []).append(
                (agreement, np.nan, np.nan, 0.0, 0.0, 0.0)
            )
            print(
                f"\nthe truth's own agreement across seeds: tau {agreement:+.2f} between one seed's truth and the "
                f"mean of the other seeds' (averaged over the seeds): roughly the most a score computed on one "
                f"seed's rows can reach"
            )
        metric_check(cells, mean, truths)
    print("\nmeans over data sets and label counts")
    print(
        "| truth | score | mean tau | mean weighted tau | mean regret (points) | mean CPU share (the score alone) "
        "| the same, extracting as rank does | cells |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (truth, s), v in sorted(means.items()):
        t, wt, reg, share, alone, auto = (statistics.mean(x[i] for x in v) for i in range(6))
        if np.isnan(wt):  # the truth's own agreement: a tau only
            print(f"| {truth} | {s} | {t:+.2f} | | | | | {len(v)} |")
            continue
        print(
            f"| {truth} | {s} | {t:+.2f} | {wt:+.2f} | {100 * reg:.1f} | {pct(share)} ({pct(alone)}) "
            f"| {pct(auto)} | {len(v)} |"
        )


def seed_agreement(cells: list[dict], finetune: str, metric: str) -> float | None:
    """How well the truth (the better of probe and ``finetune``) orders the candidates from one seed's rows:
    Kendall's tau between one seed's truth and the mean truth of the other seeds, averaged over the seeds.
    None with fewer than two seeds. Scores are measured on one seed's labelled rows too, so this is about as
    high as their tau against the truth can be expected to go."""
    seeds = sorted({c["seed"] for c in cells})
    if len(seeds) < 2:
        return None
    truth = {
        (c["seed"], c["backbone"]): max(c["probe"][metric], c.get(finetune, c["probe"])[metric])
        for c in cells
    }
    names = sorted({c["backbone"] for c in cells})
    out = []
    for s in seeds:
        one = {n: truth[s, n] for n in names}
        rest = {n: float(np.mean([truth[o, n] for o in seeds if o != s])) for n in names}
        out.append(taus(one, rest)[0])
    return float(np.mean(out))


def metric_check(cells: list[dict], mean, truths: dict) -> None:
    """Where the scores estimated macro-F1 (imbalanced data) and the rows hold the same scores estimating accuracy:
    each one's tau against the truths, both in macro-F1."""
    if not all("scores_accuracy" in c for c in cells):
        return
    print("\nthe scores' own metric: | truth | score | tau estimating macro-F1 | tau estimating accuracy |")
    print("|---|---|---|---|")
    for label, truth in truths.items():
        for s in sorted(cells[0]["scores_accuracy"]):
            f1 = taus(mean(lambda c, s=s: value(c, s)), truth)[0]
            acc = taus(mean(lambda c, s=s: float(c["scores_accuracy"][s])), truth)[0]
            print(f"| {label} | {s} | {f1:+.2f} | {acc:+.2f} |")


def pct(share: float) -> str:
    """A CPU share as a percentage; "not timed" where the rows predate the timing (NaN)."""
    return "not timed" if np.isnan(share) else f"{100 * share:.2f}%"


def cost_share(
    cells: list[dict], score: str, finetune: str, extraction: bool = True, key: str = "extract_cpu_s"
) -> float:
    """What ranking by ``score`` cost (extracting the labelled rows' features and computing the score, every
    candidate) as a share of fine-tuning every candidate on the same rows; 0 for the priors, which read the
    model only. Extraction is always timed, also where the feature cache held the rows (rows written before
    that was so timed it only where the cache missed). ``extraction=False``: the score alone, for a user whose features are cached.
    ``key="extract_auto_cpu_s"``: extraction at the precision ``warmstart rank`` uses. NaN where a row lacks the
    key (rows written before a34d787 lack ``extract_auto_cpu_s``)."""
    if score in PRIORS:
        return 0.0
    spent = sum(c["score_seconds"].get(score, 0.0) for c in cells)
    if extraction:
        if any(key not in c for c in cells):
            return float("nan")
        spent += sum(c[key] for c in cells)
    tuned = sum(c[finetune]["cpu_s"] for c in cells if finetune in c)
    return spent / tuned if tuned else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=",".join(POOLS))
    ap.add_argument("--shots", default="16,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--finetune", default="lp_ft", help="the fine-tuning technique of the truth, or none")
    ap.add_argument("--output", default="runs/bench/ranking_pools.jsonl")
    summary_options(ap)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from warmstart.data import few_shot
    from warmstart.features import FeatureCache
    from warmstart.study_stats import choose_metric

    version, out = rows_version(ap, args), Path(args.output)
    done = keyed_rows(out)
    rows = []
    cache = FeatureCache()
    for data in args.data.split(","):
        pool, test = packaged_split(data, args.test_rows)
        support = {str(c): n for c, n in test.class_counts().items()}
        metric = choose_metric({str(c): n for c, n in pool.class_counts().items()})
        for k in (int(s) for s in args.shots.split(",")):
            for seed in range(args.seeds):
                labelled = pool.subset(few_shot(pool.labels, k, seed=seed))
                for spec in POOLS[data]:
                    params = {"data": data, "shots": k, "seed": seed, "backbone": spec}
                    params.update(finetune=args.finetune, test_rows=args.test_rows)
                    key = json.dumps({"code": version, **params}, sort_keys=True)
                    if key not in done and not args.summary_only:
                        start = time.perf_counter()
                        row = {"key": key, "code": version, **params, "test_support": support}
                        row["score_metric"] = metric
                        row.update(run_cell(spec, labelled, test, seed, args.finetune, cache, metric))
                        row["seconds"] = round(time.perf_counter() - start, 1)
                        with out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        done[key] = row
                        print(
                            f"{data} k={k} s={seed} {spec}: {row['seconds']} s", file=sys.stderr, flush=True
                        )
                    if key in done:
                        rows.append(done[key])
    print(f"code {version}; rows {len(rows)}")
    summarise(rows, args.finetune)
    return 0


if __name__ == "__main__":
    sys.exit(main())
