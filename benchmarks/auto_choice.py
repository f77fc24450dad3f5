"""`--technique auto` against the best technique in hindsight, on the same rows and the same limits.

For every data set, k per class and seed: ``recommend`` (calibration, then the race on held-out folds of the k
rows per class) picks a technique; then every technique of the order is fitted on all k rows per class and scored
on the test rows, and those whose fit took no more CPU time than the budget are the ones it is compared with. Auto's score is that of the technique it picked; the hindsight best
is the highest of them; the probe's is the floor auto must not fall below.

    python benchmarks/auto_choice.py --data sms-spam,bbc-news,reuters-r8,vader-movie --shots 8,32 --seeds 1

``--no-race`` measures the earlier first-that-fits choice instead. Rows go to ``--output`` (JSON lines, keyed by
code version and every setting; reruns skip them). The table gives per cell auto's pick and score, the hindsight
best, the shortfall (best minus auto, points) and auto minus the probe; then the means, and the race's CPU time
against the time of fitting every technique.
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
from common import code_version, keyed_rows, packaged_split  # benchmarks/common.py, beside this script

from warmstart.backbones import get_backbone
from warmstart.data import few_shot
from warmstart.features import FeatureCache
from warmstart.selection.recommend import parse_budget, preference, recommend
from warmstart.study_stats import choose_metric
from warmstart.techniques import get_technique


def score(pred, labels, metric: str) -> float:
    from warmstart.selection.scores import prediction_score

    return prediction_score(np.asarray([str(p) for p in pred]), np.asarray([str(v) for v in labels]), metric)


def run_cell(train, test, backbone: str, seed: int, budget, race: bool, params: dict) -> dict:
    from collections import Counter

    bb = get_backbone(backbone)
    metric = choose_metric(dict(Counter(str(v) for v in test.labels)))
    cpu = time.process_time()
    rec = recommend(
        train, bb, budget=budget, params=params, seed=seed, race=race, cache=FeatureCache(enabled=False)
    )
    choose_cpu = time.process_time() - cpu
    order = preference(bb.modality, len(train) / len(train.classes))
    scores, fit_cpu = {}, {}
    for t in order:
        cpu = time.process_time()
        est = get_technique(t, backbone=bb, seed=seed, progress=False, **params).fit(train)
        fit_cpu[t] = time.process_time() - cpu
        scores[t] = score(est.predict(test.inputs), test.labels, metric)
    limit = parse_budget(budget)
    return {
        "metric": metric,
        "within_budget": [t for t in scores if limit is None or fit_cpu[t] <= limit],
        "auto": rec.technique,
        "scores": scores,
        "choose_cpu_s": choose_cpu,
        "fit_cpu_s": fit_cpu,
        "race": None if rec.race is None else rec.race.to_dict(),
        "note": rec.note,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sms-spam,bbc-news,reuters-r8,vader-movie")
    ap.add_argument("--shots", default="8,32")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--backbone", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--budget", help="CPU budget for auto, e.g. 5m (default: none)")
    ap.add_argument("--no-race", action="store_true")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--output", default="runs/bench/auto_choice.jsonl")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    params = {"precision": args.precision}
    out = Path(args.output)
    rows = keyed_rows(out)
    setting = [code_version(), args.backbone, args.budget, not args.no_race, args.precision, args.threads]
    datasets, shots = args.data.split(","), [int(k) for k in args.shots.split(",")]
    for k in shots:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for d in datasets:
                key = json.dumps([*setting, d, k, seed])
                if key in rows:
                    continue
                pool, test = packaged_split(d, args.test_rows, test_size=0.3)
                train = pool.subset(few_shot(pool.labels, k, seed=seed))
                r = run_cell(train, test, args.backbone, seed, args.budget, not args.no_race, params)
                rows[key] = {"key": key, "data": d, "k": k, "seed": seed, **r}
                with out.open("a") as f:
                    f.write(json.dumps(rows[key]) + "\n")
                print(
                    f"{d} k={k} seed={seed}: auto {r['auto']}, scores {r['scores']}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"setting {setting}\n")
    print("| data | k | seed | metric | auto picks | auto | best in hindsight | shortfall | auto - probe |")
    print("|---|---|---|---|---|---|---|---|---|")
    short, vs_probe, choose, fit_all = [], [], 0.0, 0.0
    for key, r in rows.items():
        if json.loads(key)[: len(setting)] != setting:
            continue
        s = {t: v for t, v in r["scores"].items() if t in r["within_budget"] or t == r["auto"]}
        best = max(s, key=s.get)
        auto = s.get(r["auto"], float("nan"))
        short.append(100 * (s[best] - auto))
        vs_probe.append(100 * (auto - s["probe"]) if "probe" in s else float("nan"))
        choose += r["choose_cpu_s"]
        fit_all += sum(r["fit_cpu_s"].values())
        print(
            f"| {r['data']} | {r['k']} | {r['seed']} | {r['metric']} | {r['auto']} | {auto:.4f} | "
            f"{best} {s[best]:.4f} | {short[-1]:.1f} | {vs_probe[-1]:+.1f} |"
        )
    if short:
        print(
            f"\nmean shortfall {statistics.mean(short):.2f} points over {len(short)} cells; "
            f"below the probe in {sum(v < 0 for v in vs_probe)}; "
            f"choosing took {choose:.0f} CPU s against {fit_all:.0f} for fitting every technique"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
