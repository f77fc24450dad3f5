"""Early stopping as ``warmstart fit`` does it without ``--shots``: a validation split of the user's rows.

For each data set, rows per class and seed, ``fit_run`` gets a pool of ``--rows`` labelled rows per class (drawn
from the packaged training split by ``few_shot``), cuts ``--val-size`` of it off for validation exactly as
``warmstart fit`` does, trains ``--technique`` with its defaults, and is scored on a fixed stratified sample of
held-out rows (the same for every seed and code version). Each row records the test accuracy and macro-F1, the
epochs run, the epoch kept, whether the run stopped early, and the CPU seconds of the whole ``fit_run`` call
(``fit_cpu_s``: the fit, then scoring the test rows).

    python benchmarks/early_stopping.py --data trec,vader-nyt --rows 30 --seeds 5 --technique finetune
    python benchmarks/early_stopping.py --data mnist-5k --rows 30 --seeds 5 --technique lp_ft \\
        --backbone efficientnet-lite0:image_size=64

Rows are keyed by the code version (git commit) and every setting, appended to ``--output`` (JSON lines); a rerun
skips the rows already there. ``--summary-only --code A --against B`` prints the paired table of two versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import code_version, key_values, keyed_rows, packaged_split  # noqa: E402


def run_one(split: tuple, rows: int, seed: int, args, params: dict) -> dict:
    from warmstart.data import few_shot, stratified_split
    from warmstart.run import fit_run

    pool, test = split  # packaged_split's pool and test rows
    pool = pool.subset(np.sort(few_shot(pool.labels, rows, seed=seed)))
    val_size = args.val_size
    # --drop-val: the same training rows without the validation rows: every epoch runs, the last is kept
    if args.drop_val:
        pool = pool.subset(stratified_split(pool.labels, val_size=val_size, test_size=0.0, seed=seed).train)
        val_size = 0.0
    cpu = time.process_time()
    r = fit_run(
        pool,
        test=test,
        backbone=args.backbone,
        technique=args.technique,
        seed=seed,
        val_size=val_size,
        params={"progress": False, **params},
    )
    cpu = time.process_time() - cpu
    est = r.estimator
    history = getattr(est, "history_", [])
    return {
        "accuracy": r.metrics["accuracy"],
        "macro_f1": r.metrics["macro_f1"],
        "n_train": r.config["n_train"],
        "n_val": r.config["n_val"],
        "epochs_run": len(history),
        "best_epoch": getattr(est, "best_epoch_", None),
        "stopped_early": bool(getattr(est, "stopped_early_", False)),
        "val_history": [{k: v for k, v in h.items() if k.startswith("val_")} for h in history],
        "fit_cpu_s": round(cpu, 2),
    }


def _label(setting: str) -> str:
    """A short name for a setting: what it changes from the technique's defaults."""
    s = json.loads(setting)
    parts = [f"{k}={v}" for k, v in sorted(s["params"].items())] + (["drop-val"] if s.get("drop_val") else [])
    return ",".join(parts) or "default"


def summarise(rows: dict, code: str, against: str | None, metric: str) -> None:
    """Every setting of ``code``'s rows per (data, rows per class, technique), each paired by seed with the same
    technique's default setting at ``against`` (default: at ``code`` itself)."""
    ref_code = against or code
    cells: dict = {}
    for r in rows.values():
        if r["code"] in (code, ref_code):
            technique = json.loads(r["setting"])["technique"]
            cell = cells.setdefault((r["data"], r["rows"], technique), {})
            cell.setdefault((r["code"], _label(r["setting"])), {})[r["seed"]] = r
    print(
        f"code {code}, each paired with the same technique's default setting at {ref_code}; {metric}, points"
    )
    overall: dict = {}
    for (data, n, technique), groups in sorted(cells.items()):
        ref = groups.get((ref_code, "default"), {})
        for (c, label), by_seed in sorted(groups.items()):
            if c != code and (c, label) != (ref_code, "default"):
                continue
            vals = [r[metric] for r in by_seed.values()]
            stopped = sum(r["stopped_early"] for r in by_seed.values())
            epochs = statistics.mean(r["epochs_run"] for r in by_seed.values())
            cpu = statistics.mean(r["fit_cpu_s"] for r in by_seed.values())
            line = (
                f"{data:13s} {n:3d}/class {technique:9s} {c:9s} {label:22s} {statistics.mean(vals):.4f} "
                f"(n={len(vals)})  epochs {epochs:4.1f}  stopped {stopped}/{len(vals)}  CPU s {cpu:5.1f}"
            )
            if (c, label) != (ref_code, "default") and ref:
                d = [100 * (r[metric] - ref[s][metric]) for s, r in by_seed.items() if s in ref]
                overall.setdefault((c, technique != "probe", label), []).extend(d)
                ahead = f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"
                line += f"  diff {statistics.mean(d):+.2f} ({ahead})" if d else ""
            print(line)
    for (c, _, label), d in overall.items():
        if len(d) > 1:
            m, half = statistics.mean(d), 1.96 * statistics.stdev(d) / len(d) ** 0.5
            ahead = f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"
            print(
                f"{c} {label}: {m:+.2f} points [{m - half:+.2f}, {m + half:+.2f}] over {len(d)} paired runs ({ahead})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", help="packaged data sets, comma-separated (default: trec; with --summary-only: all)"
    )
    ap.add_argument(
        "--rows",
        help="labelled rows per class before the validation split, comma-separated (default: 30; with "
        "--summary-only: all)",
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--technique", default="finetune")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--val-size", type=float, default=0.1, help="as warmstart fit's default")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for the technique")
    ap.add_argument("--patience", help="'none': run every epoch and keep the best (default: the technique's)")
    ap.add_argument(
        "--drop-val", action="store_true", help="leave the validation rows out instead of validating on them"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--metric", default="accuracy", choices=["accuracy", "macro_f1"])
    ap.add_argument("--output", default="runs/bench/early_stopping.jsonl")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--code", help="with --summary-only: the rows of this code version (default: this one)")
    ap.add_argument("--against", help="with --summary-only: pair with the rows of this code version")
    args = ap.parse_args()
    out = Path(args.output)
    rows = keyed_rows(out)
    code = args.code or code_version()
    if args.summary_only:
        keep = {
            k: r
            for k, r in rows.items()
            if (not args.data or r["data"] in args.data.split(","))
            and (not args.rows or str(r["rows"]) in args.rows.split(","))
        }
        return summarise(keep, code, args.against, args.metric)
    args.data, args.rows = args.data or "trec", args.rows or "30"
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    params = key_values(args.param)
    if args.patience is not None:
        params["patience"] = None if args.patience == "none" else int(args.patience)
    setting = json.dumps(
        {
            "technique": args.technique,
            "backbone": args.backbone,
            "val_size": args.val_size,
            "params": params,
            "test_rows": args.test_rows,
            **({"drop_val": True} if args.drop_val else {}),
        },
        sort_keys=True,
    )
    for data in args.data.split(","):
        split = None  # the data set's pool and test rows, loaded once it has a row to run
        for n in map(int, args.rows.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                key = json.dumps([code, data, n, seed, setting])
                if key in rows:
                    continue
                split = split or packaged_split(data, args.test_rows)
                r = run_one(split, n, seed, args, params)
                row = {
                    "key": key,
                    "code": code,
                    "data": data,
                    "rows": n,
                    "seed": seed,
                    "setting": setting,
                    **r,
                }
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows[key] = row
                print(
                    f"{data} {n}/class seed {seed}: {args.metric} {r[args.metric]:.4f}  epochs {r['epochs_run']} "
                    f"(kept {r['best_epoch']}, stopped early: {r['stopped_early']})  {r['fit_cpu_s']:.0f} CPU s",
                    flush=True,
                )
    summarise(rows, code, None, args.metric)


if __name__ == "__main__":
    main()
