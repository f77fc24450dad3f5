"""The statistics of a study: means with t-distribution confidence intervals over seeds, paired comparisons
between techniques on the same seeds (and so the same splits), and the per-(technique, shots) summary."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def shots_order(v: Any) -> Any:
    """A sort key for shot counts: numbers (or their strings) in order, then ``all``."""
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if v == "all":
        return math.inf
    return v


def mean_ci(values: list[float], level: float = 0.95) -> dict:
    """Mean, sample standard deviation and a t-distribution confidence interval of the mean."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
        lo, hi = mean - half, mean + half
    else:
        lo = hi = float("nan")
    return {"n": n, "mean": mean, "std": std, "ci_low": lo, "ci_high": hi}


def paired(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> dict | None:
    """``a - b`` over the seeds both have: mean difference, its CI, the paired t-test p-value, and whether the
    difference is significant at that level (the CI excludes 0). None with fewer than 2 shared seeds."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds])
    ci = mean_ci(list(d), level)
    if np.allclose(d, d[0]):  # no spread: the t-test is undefined
        p = 0.0 if d[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    significant = bool(ci["ci_low"] > 0 or ci["ci_high"] < 0)
    return {**ci, "p_value": p, "significant": significant, "seeds": seeds}


def choose_metric(support: dict[str, int] | None, metric: str = "auto") -> str:
    """``accuracy`` or ``macro_f1``: ``auto`` takes macro-F1 when the test rows' largest class is more than three
    times the smallest (accuracy then mostly measures the large class), else accuracy.

    Example:
        >>> choose_metric({"ham": 840, "spam": 128}), choose_metric({"a": 50, "b": 40})
        ('macro_f1', 'accuracy')
    """
    from .errors import ParameterError

    if metric not in ("auto", "accuracy", "macro_f1"):
        raise ParameterError(f"--metric takes auto, accuracy or macro_f1; got {metric!r}.")
    if metric != "auto":
        return metric
    counts = [n for n in (support or {}).values() if n > 0]
    if counts and max(counts) > 3 * min(counts):
        return "macro_f1"
    return "accuracy"


IMBALANCED = "the test rows' largest class is more than 3x the smallest"


def cells_metric(cells: list[dict], metric: str = "auto") -> tuple[str, str | None]:
    """The metric a study's cells are compared by, and why when ``auto`` chose macro-F1 (from the test rows'
    class counts, which every cell shares)."""
    per_class = next((c["per_class"] for c in cells if c.get("per_class")), None) or {}
    chosen = choose_metric({k: v.get("support", 0) for k, v in per_class.items()}, metric)
    return chosen, (IMBALANCED if metric == "auto" and chosen == "macro_f1" else None)


def summarise(cells: list[dict], metric: str = "auto") -> dict:
    """Per (technique, shots): accuracy, macro-F1 and cost statistics, and paired comparisons against scratch and
    probe (and for self_train:BASE against BASE, as ``vs_base``) in the study's metric (``cells_metric``: macro-F1 on imbalanced test rows, else accuracy)."""
    chosen, reason = cells_metric(cells, metric)
    by: dict[tuple[str, str], dict[int, dict]] = {}
    for c in cells:
        by.setdefault((c["technique"], str(c["shots"])), {})[int(c["seed"])] = c
    rows = []
    for (t, k), seeds in sorted(by.items(), key=lambda kv: (kv[0][0], shots_order(kv[0][1]))):
        score = {s: c[chosen] for s, c in seeds.items()}
        row: dict[str, Any] = {
            "technique": t,
            "shots": k,
            "accuracy": mean_ci([c["accuracy"] for c in seeds.values()]),
        }
        row["macro_f1"] = mean_ci([c["macro_f1"] for c in seeds.values()])
        for key in ("cpu_s", "wall_s", "energy_j", "flops", "peak_rss_mb", "trainable_params"):
            row[key] = float(np.mean([c[key] for c in seeds.values()]))
        row["n_per_class"] = float(np.mean([c.get("n_per_class", 0) for c in seeds.values()]))
        row["energy_method"] = next(iter(seeds.values())).get("energy_method", "")
        base = t.split(":", 1)[1] if t.startswith("self_train:") else None  # what the unlabelled rows bought
        for ref in ("scratch", "probe", *([base] if base else [])):
            other = by.get((ref, k))
            if ref == t or not other:
                continue
            cmp = paired(score, {s: c[chosen] for s, c in other.items()})
            if cmp is None:
                continue
            if ref == "scratch":
                extra_cpu_min = row["cpu_s"] / 60
                cmp["gain_per_cpu_minute"] = cmp["mean"] / extra_cpu_min if extra_cpu_min else None
                cmp["energy_saved_j"] = (
                    float(np.mean([c["energy_j"] for c in other.values()])) - row["energy_j"]
                )
            if ref == base:
                row["vs_base"] = {"base": base, **cmp}
            if ref in ("scratch", "probe"):
                row[f"vs_{ref}"] = cmp
        rows.append(row)
    return {
        "cells": len(cells),
        "metric": chosen,
        **({"metric_reason": reason} if reason else {}),
        "rows": rows,
    }
