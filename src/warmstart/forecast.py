"""How many labels: a learning curve fitted to a study's cells and extended beyond the labels it measured.

Per technique, the mean score over seeds at each measured label count (examples per class, ``x``) is fitted with
an inverse power law with an asymptote, the usual shape of learning curves::

    score(x) = a - b * x ** -c        (a <= 1: the score with unlimited labels; b, c > 0)

Uncertainty comes from two sources, both in the interval:

- **the seeds**: the study's seeds are resampled with replacement (a seed's cells at every label count stay
  together: its training rows are nested, 8 per class among the 64) and the curve is refitted, 400 times;
- **the curve's shape**: how wrong the law is beyond the data is measured by a back-test on the study itself,
  fitting without the largest label count and forecasting it; that error, per doubling of the labels, is added
  (in quadrature) to the half-width for every doubling a forecast extrapolates. One back-test can miss by luck,
  so the error allowed is at least ``SHAPE_FLOOR`` per doubling (for an 80% interval; scaled with the normal
  quantile for other levels), chosen on development studies by a split-conformal rule.

The labels a target needs get the same band: its interval runs from where the band's upper end reaches the
target to where its lower end does.

A forecast is flagged as not to be trusted (``trusted: false`` with the reasons) with fewer than four label
counts, a back-test error above ``max_backtest_error`` (3 points), or an extrapolation beyond 10x the most labels
measured. How the interval and these limits were chosen, and how well forecasts did on data sets they were not
chosen on, is in docs/studies.md ("Forecasts").
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from .errors import DataError
from .study_files import load_cells
from .study_stats import cells_metric

FACTORS = (2, 4, 10)  # forecasts at these multiples of the most labels per class measured
MIN_POINTS = 4  # label counts needed for a forecast to be trusted (3 fit parameters, one back-test)
MAX_EXTRAPOLATION = 10.0
SHAPE_FLOOR = 0.0194  # least shape error per doubling of an 80% interval (docs/studies.md, "Forecasts")


def curve(x: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    """The inverse power law ``a - b * x**-c`` at ``x`` examples per class."""
    return a - b * np.power(np.asarray(x, dtype=np.float64), -c)


C_GRID = np.geomspace(0.02, 3.0, 240)  # exponents tried; a and b are solved exactly for each


def fit_curves(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares fits of ``a - b * x**-c`` to each row of ``ys`` (curves over the label counts ``x``), with
    ``a`` in [0, 1] (a score), ``b`` in [0, 10] and ``c`` in [0.02, 3]; returns one ``(a, b, c)`` per row.

    For a fixed ``c`` the curve is linear in ``a`` and ``b``, so they are solved in closed form (within their
    bounds) for every ``c`` of a fine grid and the best ``c`` kept: no local minima, and a few hundred
    bootstrap curves fit at once in milliseconds."""
    x = np.asarray(x, dtype=np.float64)
    ys = np.atleast_2d(np.asarray(ys, dtype=np.float64))  # (curves, points)
    if x.ndim != 1 or len(x) < 2 or ys.shape[1] != len(x):
        raise DataError("a learning curve needs at least two label counts to fit.")
    grid = np.broadcast_to(C_GRID, (len(ys), len(C_GRID)))
    a, b, sse = _solve_ab(x, ys, grid)
    best = sse.argmin(axis=1)
    # refine: a grid 40x finer around each curve's best exponent
    fine = np.clip(
        grid[np.arange(len(ys)), best][:, None] * np.geomspace(0.975, 1.025, 41)[None, :], 0.02, 3.0
    )
    a, b, sse = _solve_ab(x, ys, fine)
    best = sse.argmin(axis=1)
    rows = np.arange(len(ys))
    return np.stack([a[rows, best], b[rows, best], fine[rows, best]], axis=1)


def _solve_ab(x: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each curve (row of ``ys``) and each exponent of its row of ``grid``: the bounded least-squares ``a``
    and ``b``, and the sum of squared errors; arrays of shape (curves, grid)."""
    z = x[None, None, :] ** -grid[:, :, None]  # (curves, grid, points)
    zm = z.mean(axis=2)
    zc = z - zm[:, :, None]
    ym = ys.mean(axis=1)[:, None]
    yc = ys - ym
    # unconstrained: y = a - b z  ->  b = -cov(z, y) / var(z), a = mean(y) + b mean(z)
    b = -np.einsum("cgp,cp->cg", zc, yc) / np.maximum((zc**2).sum(axis=2), 1e-300)
    b = np.clip(b, 0.0, 10.0)
    a = ym + b * zm
    over = a > 1.0  # asymptote above a perfect score: pin a = 1 and refit b alone
    if over.any():
        b1 = np.einsum("cgp,cp->cg", z, 1.0 - ys) / np.maximum((z**2).sum(axis=2), 1e-300)
        b = np.where(over, np.clip(b1, 0.0, 10.0), b)
        a = np.where(over, 1.0, a)
    a = np.clip(a, 0.0, 1.0)
    sse = ((a[:, :, None] - b[:, :, None] * z - ys[:, None, :]) ** 2).sum(axis=2)
    return a, b, sse


def fit_curve(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """The least-squares ``(a, b, c)`` of ``a - b * x**-c`` through the points ``(x, y)`` (``fit_curves``).

    Example:
        >>> x = np.array([2.0, 4, 8, 16, 32])
        >>> a, b, c = fit_curve(x, curve(x, 0.9, 0.5, 0.7))
        >>> round(a, 3), round(b, 3), round(c, 3)
        (0.9, 0.5, 0.7)
    """
    a, b, c = fit_curves(x, np.asarray(y)[None, :])[0]
    return float(a), float(b), float(c)


def labels_for(target: float, a: float, b: float, c: float) -> float:
    """Examples per class at which the curve reaches ``target``; ``inf`` when its asymptote stays below."""
    if target <= a - b:  # reached at one example per class already
        return 1.0
    if b <= 0 or a <= target:
        return math.inf
    return float((b / (a - target)) ** (1.0 / c))


def _points(cells: list[dict], metric: str) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Label counts (mean examples per class), seeds, and the (count x seed) score table (NaN: not run)."""
    by_k: dict[str, dict[int, dict]] = {}
    for c in cells:
        by_k.setdefault(str(c["shots"]), {})[int(c["seed"])] = c
    seeds = sorted({s for per in by_k.values() for s in per})
    ks = sorted(by_k, key=lambda k: np.mean([c["n_per_class"] for c in by_k[k].values()]))
    x = np.array([np.mean([c["n_per_class"] for c in by_k[k].values()]) for k in ks])
    table = np.full((len(ks), len(seeds)), np.nan)
    for i, k in enumerate(ks):
        for j, s in enumerate(seeds):
            if s in by_k[k]:
                table[i, j] = by_k[k][s][metric]
    return x, seeds, table


def _backtest(x: np.ndarray, y: np.ndarray) -> float | None:
    """Error of forecasting the largest label count from the others, per doubling of the labels; None with
    fewer than four counts (three are needed for the fit)."""
    if len(x) < MIN_POINTS:
        return None
    a, b, c = fit_curve(x[:-1], y[:-1])
    doublings = max(math.log2(x[-1] / x[-2]), 1e-9)
    return abs(float(curve(x[-1], a, b, c)) - float(y[-1])) / doublings


def forecast_curve(
    x: np.ndarray,
    table: np.ndarray,
    *,
    target: float | None = None,
    factors: tuple[float, ...] = FACTORS,
    level: float = 0.8,
    boots: int = 400,
    seed: int = 0,
    max_backtest_error: float = 0.03,
    shape_floor: float | None = None,
) -> dict[str, Any]:
    """The forecast from one technique's scores: ``x`` label counts (examples per class, increasing) and
    ``table[i, j]`` the score at ``x[i]`` with seed ``j`` (NaN where that cell did not run)."""
    x = np.asarray(x, dtype=np.float64)
    keep = ~np.all(np.isnan(table), axis=1)
    x, table = x[keep], table[keep]
    if len(x) < 3:
        raise DataError(
            f"a forecast needs scores at three label counts or more; this curve has {len(x)}. Add shot counts "
            "to the study (e.g. --shots 2,4,8,16)."
        )
    y = np.nanmean(table, axis=1)
    a, b, c = fit_curve(x, y)
    rmse = float(np.sqrt(np.mean((curve(x, a, b, c) - y) ** 2)))
    backtest = _backtest(x, y)
    rng = np.random.default_rng(seed)
    n_seeds = table.shape[1]
    fits = np.zeros((0, 3))  # (a, b, c) of each resampled fit
    if n_seeds > 1:
        cols = rng.integers(0, n_seeds, (boots, n_seeds))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no run at some count: dropped
            yb = np.nanmean(table[:, cols], axis=2).T  # (boots, points)
        yb = yb[~np.isnan(yb).any(axis=1)]
        if len(yb):
            fits = fit_curves(x, yb)
    tail = (1 - level) / 2
    xmax = float(x[-1])
    floor = SHAPE_FLOOR if shape_floor is None else shape_floor
    floor *= NormalDist().inv_cdf(1 - tail) / NormalDist().inv_cdf(0.9)  # chosen for 80% intervals

    shape = max(backtest or 0.0, floor)  # error per doubling beyond the most labels measured

    def band(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted curve at ``xs`` and its interval: the resampled fits' quantiles, widened in quadrature by
        ``shape`` for every doubling beyond the most labels measured."""
        xs = np.asarray(xs, dtype=np.float64)
        point = curve(xs, a, b, c)
        lo = hi = point
        if len(fits):
            values = curve(xs[None, :], fits[:, :1], fits[:, 1:2], fits[:, 2:3])  # (fits, xs)
            lo = np.quantile(values, tail, axis=0, method="lower")
            hi = np.quantile(values, 1 - tail, axis=0, method="higher")
        extra = shape * np.maximum(np.log2(xs / xmax), 0.0)
        return (
            point,
            np.maximum(point - np.hypot(point - lo, extra), 0.0),
            np.minimum(point + np.hypot(hi - point, extra), 1.0),
        )

    at = []
    for f in factors:
        point, lo, hi = (float(v[0]) for v in band(np.array([xmax * f])))
        at.append({"factor": f, "per_class": xmax * f, "forecast": point, "low": lo, "high": hi})
    out: dict[str, Any] = {
        "points": [
            {"per_class": float(xi), "mean": float(yi), "seeds": int(np.sum(~np.isnan(row)))}
            for xi, yi, row in zip(x, y, table, strict=True)
        ],
        "fit": {"a": a, "b": b, "c": c, "rmse": rmse},
        "backtest_error_per_doubling": backtest,
        "shape_error_per_doubling": shape,
        "level": level,
        "at": at,
    }
    if target is not None:
        out["target"] = _target(target, (a, b, c), fits, band, y, x)
    reasons = []
    if len(x) < MIN_POINTS:
        reasons.append(f"only {len(x)} label counts (a back-test needs {MIN_POINTS})")
    if backtest is not None and backtest > max_backtest_error:
        reasons.append(
            f"the curve forecast its own largest label count {100 * backtest:.1f} points off per doubling"
        )
    if n_seeds < 2:
        reasons.append("one seed: no interval from seed variation")
    out["trusted"] = not reasons
    out["reasons"] = reasons
    return out


def _target(target: float, fit: tuple, fits: np.ndarray, band: Any, y: np.ndarray, x: np.ndarray) -> dict:
    """The labels per class that reach ``target``: on the fitted curve, and as an interval where the forecast's
    band (``band``) first reaches it: its upper end gives the fewest labels, its lower end the most (``inf``
    when the lower end stays below the target up to 1,000x the labels measured)."""
    need = labels_for(target, *fit)
    reached = float(np.mean([math.isfinite(labels_for(target, *d)) for d in fits])) if len(fits) else 1.0
    grid = np.geomspace(1.0, 1000.0 * float(x[-1]), 1200)
    _, lo, hi = band(grid)

    def first(values: np.ndarray) -> float:
        at = np.flatnonzero(values >= target)
        return float(grid[at[0]]) if len(at) else math.inf

    out = {
        "value": target,
        "per_class": need,
        "low": min(first(hi), need),
        "high": max(first(lo), need),
        "share_of_fits_reaching": reached,
        "already_measured": bool(np.any(y >= target)),
    }
    if math.isfinite(need) and need > MAX_EXTRAPOLATION * float(x[-1]):
        out["note"] = f"beyond {MAX_EXTRAPOLATION:g}x the labels measured: a guess, not a forecast"
    if not math.isfinite(need):
        out["note"] = f"the fitted curve levels off at {fit[0]:.3f}, below the target"
    return out


def quick_curve_shots(class_counts: dict[str, int], held_out: float) -> list[int]:
    """The label counts of a quick learning curve on labelled data with these rows per class, of which the
    fraction ``held_out`` is tested on: 2, 4, 8, ... up to what the smallest class leaves, and that itself.

        >>> quick_curve_shots({"a": 50, "b": 30}, 0.2)
        [2, 4, 8, 16, 24]
    """
    most = int(min(class_counts.values()) * (1 - held_out))
    if most < 2:
        raise DataError(
            f"a learning curve needs at least 2 training rows of every class; the smallest class has "
            f"{min(class_counts.values())} rows in all. Label more of it, or pass --test rows."
        )
    shots = [k for k in (2**i for i in range(1, 20)) if k <= most]
    return shots + ([most] if most not in shots else [])


def quick_curve(
    data: Any,
    output: str | os.PathLike,
    *,
    test: Any = None,
    backbone: str = "all-MiniLM-L6-v2",
    seeds: int = 3,
    test_size: float = 0.2,
    precision: str = "auto",
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """A probe study of ``data`` at every count of ``quick_curve_shots`` (nested rows, ``seeds`` seeds, tested on
    ``test`` or a held-out ``test_size``) in ``output``, for ``forecast_study`` when there is no study yet. Cheap:
    the probe on cached features; resumable like any study."""
    from .study import StudyConfig, run_study

    held_out = 0.0 if test is not None else test_size
    cfg = StudyConfig(
        data=data.source,
        backbone=backbone,
        techniques=["probe"],
        shots=quick_curve_shots(data.class_counts(), held_out),
        seeds=seeds,
        test_size=test_size,
        precision=precision,
        device=device,
    )
    run_study(data, cfg, output, test=test, progress=progress)
    return Path(output)


def forecast_study(folder: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Forecasts for every technique of the study in ``folder`` (or ``techniques``), from its finished cells
    (those with at most ``max_per_class`` examples per class, when given: to back-test a forecast on a study that
    measured more). Shot count ``all`` is used at its mean examples per class. ``options`` are
    ``forecast_cells``'s keywords (``target``, ``metric``, ``techniques``, ``max_per_class``, ``level``, ``seed``,
    ``factors``).

    Example:
        >>> import json, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()); (out / "cells").mkdir()
        >>> for k in (2, 4, 8, 16):
        ...     for s in range(3):
        ...         acc = float(curve(k, 0.9, 0.4, 0.8)) + 0.01 * (s - 1)
        ...         cell = {"technique": "probe", "shots": k, "seed": s, "n_per_class": k,
        ...                 "accuracy": acc, "macro_f1": acc, "per_class": {"a": {"support": 50}}}
        ...         _ = (out / "cells" / f"probe-k{k}-s{s}.json").write_text(json.dumps(cell))
        >>> f = forecast_study(out, target=0.85)["techniques"]["probe"]
        >>> round(f["at"][1]["forecast"], 3), f["trusted"]   # at 4x 16 = 64 per class
        (0.886, True)
    """
    return forecast_cells(load_cells(folder), str(Path(folder)), **options)


def forecast_cells(
    cells: list[dict],
    folder: str,
    *,
    target: float | None = None,
    metric: str = "auto",
    techniques: list[str] | None = None,
    max_per_class: float | None = None,
    level: float = 0.8,
    seed: int = 0,
    factors: tuple[float, ...] = FACTORS,
) -> dict[str, Any]:
    """``forecast_study`` on cells already read from the study in ``folder`` (named in the result and errors)."""
    if not cells:
        raise DataError(f"{folder}: no finished cells; run `warmstart study` first.")
    chosen, reason = cells_metric(cells, metric)
    names = techniques or sorted({c["technique"] for c in cells})
    out: dict[str, Any] = {"study": folder, "metric": chosen, "level": level, "techniques": {}}
    if reason:
        out["metric_reason"] = reason
    for t in names:
        mine = [
            c
            for c in cells
            if c["technique"] == t and (max_per_class is None or c["n_per_class"] <= max_per_class)
        ]
        if not mine:
            raise DataError(
                f"{folder}: no finished cells of technique {t!r}; it has "
                f"{', '.join(sorted({c['technique'] for c in cells}))}."
            )
        x, _, table = _points(mine, chosen)
        out["techniques"][t] = forecast_curve(
            x, table, target=target, level=level, seed=seed, factors=factors
        )
    return out


def forecast_text(result: dict) -> str:
    """A plain table of ``forecast_study``'s result, for the command line."""
    lvl = round(100 * result["level"])
    metric = result["metric"]
    lines = [f"metric: {metric}" + (f" ({result['metric_reason']})" if result.get("metric_reason") else "")]
    for t, f in result["techniques"].items():
        pts = ", ".join(f"{p['per_class']:g}: {p['mean']:.3f}" for p in f["points"])
        lines.append(f"\n{t}  measured (per class: {metric}) {pts}")
        fit = f["fit"]
        bt = f["backtest_error_per_doubling"]
        lines.append(
            f"  fit {fit['a']:.3f} - {fit['b']:.3f} * n^-{fit['c']:.2f} (rmse {fit['rmse']:.4f}; back-test error "
            + (f"{100 * bt:.1f} points per doubling" if bt is not None else "not available")
            + f"; the interval allows {100 * f['shape_error_per_doubling']:.1f} points per doubling for the shape)"
        )
        for p in f["at"]:
            lines.append(
                f"  {p['factor']:g}x = {p['per_class']:g} per class: {p['forecast']:.3f} "
                f"[{lvl}% interval {p['low']:.3f} to {p['high']:.3f}]"
            )
        if "target" in f:
            g = f["target"]
            if math.isfinite(g["per_class"]):
                hi = "no limit" if not math.isfinite(g["high"]) else f"{g['high']:.0f}"
                lines.append(
                    f"  {metric} {g['value']:g} at about {g['per_class']:.0f} per class "
                    f"[{lvl}% interval {g['low']:.0f} to {hi}; "
                    f"{100 * g['share_of_fits_reaching']:.0f}% of resampled fits reach it]"
                )
            if g.get("note"):
                lines.append(f"  note: {g['note']}")
        if not f["trusted"]:
            lines.append("  NOT TO BE TRUSTED: " + "; ".join(f["reasons"]))
    return "\n".join(lines)
