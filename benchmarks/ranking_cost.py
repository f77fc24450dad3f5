"""What ``warmstart rank`` costs against fine-tuning every candidate, and what scoring fewer rows of each class
does to its order.

``ranking_pools.py`` fine-tunes every candidate of a pool (the truth) and times the extraction a ranking needs
beside it. This script takes those truths as they are (``--truth``: its rows, of one code version) and runs the
real ``rank_backbones`` on the same labelled rows, as ``warmstart rank`` does: at the device and precision
"auto", on an empty feature cache, with the stability resamples, for each row cap per class in ``--caps``
(``none``: every labelled row, as before caps existed). The whole call is timed in CPU seconds, the models
loaded beforehand (the truth's fine-tuning CPU excludes loading too), with torch and the BLAS libraries held
to ``--threads`` threads so that score and extraction are timed alike.

Per data set and label count it prints, for each cap, Kendall's tau of the primary score (default
``ridge_loo``) against the truth (the better of probe and the truth's fine-tuning, averaged over seeds), the
regret of its top pick, and the CPU share: the rank calls' CPU over the fine-tuning CPU of every candidate on
the same rows; then their means over data sets and label counts.

    python benchmarks/ranking_cost.py --truth runs/bench/pools_all.jsonl \\
        --data trec,sms-spam,vader-movie,digits,fashion-mnist --shots 16,64 --seeds 3 --caps none,32,16
    python benchmarks/ranking_cost.py --truth runs/bench/pools_eval.jsonl --data vader-nyt,vader-tweets,mnist-5k

Rows (one per data set, label count, seed and cap) are keyed by the code version, the truth's code version and
every setting, and appended to ``--output`` (JSON lines); a rerun reuses rows of the same key.
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
from ranking_pools import POOLS, taus  # noqa: E402


def load_truth(path: Path, code: str | None) -> tuple[str, dict[tuple, dict]]:
    """The truth rows of one code version by (data, shots, seed, backbone), and that version."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    codes = sorted({r["code"] for r in rows})
    if code is None:
        if len(codes) != 1:
            raise SystemExit(
                f"{path} holds rows of several code versions {codes}: choose one with --truth-code"
            )
        code = codes[0]
    if code not in codes:
        raise SystemExit(f"{path} holds no rows of code {code} (it has {codes})")
    return code, {(r["data"], r["shots"], r["seed"], r["backbone"]): r for r in rows if r["code"] == code}


def rank_cell(labelled, backbones: dict, cap: int | None, counts: dict, scores: tuple[str, ...]) -> dict:
    """One ``rank_backbones`` call on an empty feature cache, timed; its primary score per backbone."""
    from warmstart.cost import measure
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    with tempfile.TemporaryDirectory() as tmp, measure() as cost:
        r = rank_backbones(
            labelled,
            list(backbones.values()),
            scores=scores,
            cache=FeatureCache(tmp),
            max_per_class=cap,
            progress=False,
            class_counts=counts,
        )
    names = {bb.name: spec for spec, bb in backbones.items()}
    return {
        "rows": r.rows,
        "primary": r.primary,
        "scores": {names[c.backbone]: c.scores[r.primary] for c in r.candidates},
        "extract_wall_s": {names[c.backbone]: c.extract_seconds for c in r.candidates},
        "rank_cpu_s": round(cost.cpu_seconds, 3),
        "top_share": r.top_share,
    }


def summarise(rows: list[dict]) -> None:
    from warmstart.study_stats import choose_metric

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["shots"], r["cap"]), []).append(r)
    means: dict[str, list[tuple[float, float, float, float]]] = {}
    print(
        "| data | per class | cap | seeds | rows scored | tau | size prior's tau | regret, points | CPU share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (data, shots, cap), cells in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))
    ):
        metric = choose_metric(cells[0]["test_support"])
        names = sorted(cells[0]["truth"])

        def mean(fn, cells: list[dict] = cells, names: list[str] = names) -> dict[str, float]:
            return {n: float(np.mean([fn(c, n) for c in cells])) for n in names}

        truth = mean(lambda c, n, m=metric: max(v[m] for v in c["truth"][n].values()))
        score = mean(lambda c, n: c["scores"][n])
        size = {n: cells[0]["size"][n] for n in names}
        tau, size_tau = taus(score, truth)[0], taus(size, truth)[0]
        regret = max(truth.values()) - truth[max(score, key=score.get)]
        tuned = sum(c["tuning_cpu_s"] for c in cells)
        share = sum(c["rank_cpu_s"] for c in cells) / tuned
        means.setdefault(str(cap), []).append((tau, size_tau, regret, share))
        rows_scored = statistics.mean(c["rows"] for c in cells)
        print(
            f"| {data} | {shots} | {cap} | {len(cells)} | {rows_scored:.0f} | {tau:+.2f} | {size_tau:+.2f} "
            f"| {100 * regret:.1f} | {100 * share:.2f}% |"
        )
    print("\n| cap | cells | mean tau | size prior's | mean regret, points | mean CPU share |")
    print("|---|---|---|---|---|---|")
    for cap, v in means.items():
        t, st, reg, share = (statistics.mean(x[i] for x in v) for i in range(4))
        print(f"| {cap} | {len(v)} | {t:+.2f} | {st:+.2f} | {100 * reg:.1f} | {100 * share:.2f}% |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", required=True, help="ranking_pools.py rows: the fine-tuned truth and its CPU")
    ap.add_argument("--truth-code", help="the code version of the truth rows to read (default: the only one)")
    ap.add_argument("--data", default="trec,sms-spam,vader-movie,digits,fashion-mnist")
    ap.add_argument("--shots", default="16,64")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--caps", default="none,32,16", help="rows per class rank scores on; none: every row")
    ap.add_argument("--scores", default="ridge_loo", help="the scores rank computes (the first orders)")
    ap.add_argument("--output", default="runs/bench/ranking_cost.jsonl")
    summary_options(ap)
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    args = ap.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    from warmstart.backbones import get_backbone
    from warmstart.data import few_shot

    truth_code, truth = load_truth(Path(args.truth), args.truth_code)
    version, out = rows_version(ap, args), Path(args.output)
    done = keyed_rows(out)
    caps = [None if c == "none" else int(c) for c in args.caps.split(",")]
    scores = tuple(args.scores.split(","))
    rows = []
    for data in args.data.split(","):
        pool_specs = POOLS[data]
        first = truth.get((data, int(args.shots.split(",")[0]), 0, pool_specs[0]))
        if first is None:
            raise SystemExit(f"{args.truth} has no truth for {data} (code {truth_code})")
        pool, _ = packaged_split(data, first["test_rows"])
        counts = {str(c): n for c, n in pool.class_counts().items()}
        backbones: dict = {}
        for k in (int(s) for s in args.shots.split(",")):
            for seed in range(args.seeds):
                cell = {spec: truth.get((data, k, seed, spec)) for spec in pool_specs}
                if any(v is None for v in cell.values()):
                    print(f"{data} k={k} s={seed}: no complete truth, skipped", file=sys.stderr)
                    continue
                labelled = pool.subset(few_shot(pool.labels, k, seed=seed))
                for cap in caps:
                    params = {"data": data, "shots": k, "seed": seed, "cap": cap, "scores": list(scores)}
                    params.update(truth_code=truth_code, threads=args.threads)
                    key = json.dumps({"code": version, **params}, sort_keys=True)
                    if key not in done and not args.summary_only:
                        if not backbones:  # loaded once per data set, warmed up outside the timing
                            backbones = {spec: get_backbone(spec) for spec in pool_specs}
                            rank_cell(labelled, backbones, 4, counts, scores)
                        start = time.perf_counter()
                        row = {"key": key, "code": version, **params}
                        row["test_support"] = cell[pool_specs[0]]["test_support"]
                        row.update(rank_cell(labelled, backbones, cap, counts, scores))
                        row["truth"] = {
                            s: {"probe": r["probe"], r["finetune"]: r[r["finetune"]]} for s, r in cell.items()
                        }
                        row["tuning_cpu_s"] = sum(r[r["finetune"]]["cpu_s"] for r in cell.values())
                        row["size"] = {s: r["size"] for s, r in cell.items()}
                        row["seconds"] = round(time.perf_counter() - start, 1)
                        with out.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        done[key] = row
                        print(
                            f"{data} k={k} s={seed} cap={cap}: rank {row['rank_cpu_s']} CPU s on {row['rows']} rows",
                            file=sys.stderr,
                            flush=True,
                        )
                    if key in done:
                        rows.append(done[key])
    print(f"code {version}; truth of code {truth_code}; rows {len(rows)}")
    summarise(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
