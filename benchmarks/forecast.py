"""How good are learning-curve forecasts? Fit on label counts up to 16 per class, forecast 64, compare.

For every data set a study of one technique (``--technique``, the probe by default) (``--shots``, ``--seeds``, a stratified test sample) is run or resumed in
``--output/<data>``; the forecast is fitted on its cells with at most ``--fit-upto`` examples per class and compared
with the mean measured at the largest shot count, in the study's metric (``auto``: macro-F1 on imbalanced test
rows). It prints, per data set, the forecast and its interval against the measured value, then the mean absolute
error and how often the measured value fell inside the interval, for the interval of ``warmstart.forecast`` (seed
resampling plus the back-test's shape term) and, for comparison, for the seed resampling alone.

    python benchmarks/forecast.py --data trec,vader-amazon,vader-nyt --backbone all-MiniLM-L6-v2   # development
    python benchmarks/forecast.py --data sms-spam,bbc-news,reuters-r8,vader-movie                # evaluation
    python benchmarks/forecast.py --data digits,fashion-mnist --backbone efficientnet-lite0:image_size=64 \
        --output runs/bench/forecast-images                                                      # images

``--simulate N`` instead fits N simulated studies (true curves ``a - b * x**-c`` with a, b, c drawn at random,
5 seeds, noise of 3 points over the square root of the examples per class, counts 2 to 16) and reports how often
the 80% interval at 64 per class holds the true curve's value:

    python benchmarks/forecast.py --simulate 400

Results are keyed by the code version and every parameter (``--output``/forecast.json); the studies resume.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from common import code_version  # benchmarks/common.py, beside this script

from warmstart._io import atomic_write_json
from warmstart.cli_common import parse_value
from warmstart.data import load_packaged
from warmstart.forecast import _points, forecast_curve
from warmstart.study import StudyConfig, run_study
from warmstart.study_files import load_cells
from warmstart.study_stats import cells_metric


def one(name: str, args: argparse.Namespace) -> dict:
    pk = load_packaged(name)
    shots = [int(k) for k in args.shots.split(",")]
    cfg = StudyConfig(
        name,
        args.backbone,
        [args.technique],
        shots,
        seeds=args.seeds,
        params={args.technique: {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.param)}}
        if args.param
        else {},
        test_rows=args.test_rows,
        precision=args.precision,
    )
    folder = Path(args.output) / (name if args.technique == "probe" else f"{name}-{args.technique}")
    run_study(pk.train, cfg, folder, test=pk.test, progress=False)
    cells = load_cells(folder)
    metric, _ = cells_metric(cells, args.metric)
    x_all, _, table_all = _points(cells, metric)
    fit_rows = x_all <= args.fit_upto
    x_fit, table_fit = x_all[fit_rows], table_all[fit_rows]
    target_x, measured = float(x_all[-1]), float(np.nanmean(table_all[-1]))
    factor = target_x / float(x_fit[-1])
    full = forecast_curve(x_fit, table_fit, factors=(factor,), level=args.level, shape_floor=args.shape_floor)
    bt = full["backtest_error_per_doubling"] or 0.0
    shape_per_doubling = full["shape_error_per_doubling"]
    p = full["at"][0]
    row = {
        "data": name,
        "metric": metric,
        "fit_points": [float(v) for v in x_fit],
        "per_class": target_x,
        "measured": measured,
        "forecast": p["forecast"],
        "low": p["low"],
        "high": p["high"],
        "backtest_per_doubling": bt,
        "shape_per_doubling": shape_per_doubling,
        "trusted": full["trusted"],
        "reasons": full["reasons"],
    }
    if shape_per_doubling:
        # undo the shape term: what seed resampling alone gives
        shape = shape_per_doubling * math.log2(factor)
        lo_half = math.sqrt(max((p["forecast"] - p["low"]) ** 2 - shape**2, 0.0))
        hi_half = math.sqrt(max((p["high"] - p["forecast"]) ** 2 - shape**2, 0.0))
        row["seeds_low"], row["seeds_high"] = p["forecast"] - lo_half, p["forecast"] + hi_half
    else:
        row["seeds_low"], row["seeds_high"] = p["low"], p["high"]
    return row


def least_floor(folder: Path, args: argparse.Namespace) -> dict:
    """For one finished study: the forecast at its largest count from the counts up to ``--fit-upto`` and the
    least shape floor per doubling that puts the measured mean inside the interval (0: inside without one)."""
    cells = load_cells(folder)
    metric, _ = cells_metric(cells, args.metric)
    x, _, table = _points(cells, metric)
    fit = x <= args.fit_upto
    measured, factor = float(np.nanmean(table[-1])), float(x[-1] / x[fit][-1])

    def at(floor: float) -> dict:
        return forecast_curve(x[fit], table[fit], factors=(factor,), level=args.level, shape_floor=floor)[
            "at"
        ][0]

    def inside(p: dict) -> bool:
        return p["low"] <= measured <= p["high"]

    lo, hi = 0.0, 0.5
    if inside(at(0.0)):
        hi = 0.0
    for _ in range(30 if hi else 0):  # bisection: the interval widens with the floor
        lo, hi = (lo, (lo + hi) / 2) if inside(at((lo + hi) / 2)) else ((lo + hi) / 2, hi)
    return {"study": str(folder), "measured": measured, "forecast": at(0.0)["forecast"], "least_floor": hi}


def calibrate(folders: list[Path], args: argparse.Namespace) -> None:
    """The split-conformal choice of the floor: with n studies, the ceil((n + 1) * level)-th smallest of their
    least floors gives intervals that hold a new study's value with probability >= level, if the new study is
    like these."""
    rows = [least_floor(f, args) for f in folders]
    print("| study | measured | forecast | least floor (points per doubling) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['study']} | {r['measured']:.3f} | {r['forecast']:.3f} | {100 * r['least_floor']:.2f} |")
    needs = sorted(r["least_floor"] for r in rows)
    k = math.ceil((len(needs) + 1) * args.level)
    if k > len(needs):
        print(f"\n{len(needs)} studies are too few for a {args.level:.0%} split-conformal floor (need {k})")
    else:
        print(
            f"\nthe floor: the {k}th smallest of {len(needs)}: {100 * needs[k - 1]:.2f} points per doubling"
        )


def simulate(n: int, level: float, shape_floor: float | None, seed: int = 0) -> None:
    from warmstart.forecast import curve

    x = np.array([2.0, 4.0, 8.0, 16.0])
    rng = np.random.default_rng(seed)
    inside, widths = 0, []
    for _ in range(n):
        a, b, c = rng.uniform(0.7, 0.98), rng.uniform(0.2, 0.7), rng.uniform(0.3, 1.2)
        table = np.clip(curve(x, a, b, c)[:, None] + rng.normal(0, 0.03, (4, 5)) / np.sqrt(x)[:, None], 0, 1)
        at = forecast_curve(x, table, factors=(4,), level=level, shape_floor=shape_floor)["at"][0]
        inside += at["low"] <= float(curve(64.0, a, b, c)) <= at["high"]
        widths.append(at["high"] - at["low"])
    print(
        f"{n} simulated studies: the {round(100 * level)}% interval at 64 per class holds the truth in "
        f"{inside / n:.1%}; its mean width is {100 * statistics.mean(widths):.1f} points"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sms-spam,bbc-news,reuters-r8,vader-movie")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--technique", default="probe", help="the technique whose learning curve is forecast")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for the technique (repeatable)")
    ap.add_argument("--shots", default="2,4,8,16,64")
    ap.add_argument("--fit-upto", type=float, default=16)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--metric", default="auto")
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--output", default="runs/bench/forecast")
    ap.add_argument(
        "--shape-floor",
        type=float,
        help="the least shape error per doubling (warmstart.forecast.SHAPE_FLOOR when not given; 0: none)",
    )
    ap.add_argument(
        "--calibrate",
        nargs="+",
        type=Path,
        help="finished study folders: choose the shape floor on them (split-conformal, above) instead",
    )
    ap.add_argument("--simulate", type=int, help="fit this many simulated studies instead (see above)")
    args = ap.parse_args(argv)
    if args.calibrate:
        calibrate(args.calibrate, args)
        return 0
    if args.simulate:
        simulate(args.simulate, args.level, args.shape_floor)
        return 0
    params = {k: v for k, v in vars(args).items() if k not in ("data", "output", "simulate")}
    key = json.dumps({"code": code_version(), **params}, sort_keys=True)
    rows = [one(d, args) for d in args.data.split(",")]
    out = Path(args.output) / "forecast.json"
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved.setdefault(key, {}).update({r["data"]: r for r in rows})  # runs of other data sets kept
    atomic_write_json(out, saved)
    lvl = round(100 * args.level)
    print(f"keyed by {key}\n")
    print(
        f"| data | metric | fit on per class | forecast at | measured | forecast [{lvl}% interval] | error | inside |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        inside = r["low"] <= r["measured"] <= r["high"]
        pts = ",".join(f"{v:g}" for v in r["fit_points"])
        print(
            f"| {r['data']} | {r['metric']} | {pts} | {r['per_class']:.1f} | {r['measured']:.3f} | "
            f"{r['forecast']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['forecast'] - r['measured']:+.3f} | "
            f"{'yes' if inside else 'no'}{'' if r['trusted'] else ' (flagged: ' + '; '.join(r['reasons']) + ')'} |"
        )
    errors = [abs(r["forecast"] - r["measured"]) for r in rows]
    widths = [r["high"] - r["low"] for r in rows]
    cover = [r["low"] <= r["measured"] <= r["high"] for r in rows]
    cover_seeds = [r["seeds_low"] <= r["measured"] <= r["seeds_high"] for r in rows]
    print(f"\nmean absolute error {100 * statistics.mean(errors):.2f} points over {len(rows)} data sets")
    print(f"mean interval width {100 * statistics.mean(widths):.1f} points")
    print(
        f"inside the {lvl}% interval: {sum(cover)}/{len(rows)}; with seed resampling alone: {sum(cover_seeds)}/{len(rows)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
