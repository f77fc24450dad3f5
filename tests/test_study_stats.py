"""The statistics of a study, computed by hand: t-intervals, paired comparisons on shared seeds, the summary
table's rows, their order and their comparisons against scratch and the probe."""

from __future__ import annotations

import math

import pytest
import scipy.stats  # noqa: F401  imported at collection, so mutation testing does not import it once per mutant

from warmstart.errors import ParameterError
from warmstart.study import parse_shots
from warmstart.study_stats import mean_ci, paired, shots_order, summarise


def test_mean_ci_and_paired_by_hand():
    s = mean_ci([0.70, 0.74, 0.72])
    # mean 0.72, sd 0.02, t(0.975, 2) = 4.302653
    assert s["mean"] == pytest.approx(0.72) and s["std"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert s["ci_low"] == pytest.approx(0.72 - half, abs=1e-6) and s["ci_high"] == pytest.approx(
        0.72 + half, abs=1e-6
    )
    a = {0: 0.80, 1: 0.82, 2: 0.85}
    b = {0: 0.70, 1: 0.74, 2: 0.72, 3: 0.99}  # seed 3 has no partner and is left out
    c = paired(a, b)
    assert c["seeds"] == [0, 1, 2] and c["mean"] == pytest.approx((0.10 + 0.08 + 0.13) / 3)
    assert c["significant"] and 0 < c["p_value"] < 0.05
    noisy = paired({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.75, 1: 0.8, 2: 0.8})
    assert not noisy["significant"] and noisy["ci_low"] < 0 < noisy["ci_high"]
    assert paired({0: 0.8}, {0: 0.7}) is None
    assert parse_shots("4, 8,all") == [4, 8, "all"]
    with pytest.raises(ParameterError):
        parse_shots("4,0")


def test_mean_ci_edges():
    one = mean_ci([0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and one["std"] == 0.0
    assert math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    none = mean_ci([])
    assert none["n"] == 0 and math.isnan(none["mean"]) and none["std"] == 0.0
    two = mean_ci([0.0, 1.0], level=0.9)  # t(0.95, 1) = 6.313752; sd = sqrt(0.5)
    half = 6.313752 * math.sqrt(0.5) / math.sqrt(2)
    assert two["ci_low"] == pytest.approx(0.5 - half, abs=1e-5) and two["ci_high"] == pytest.approx(
        0.5 + half
    )
    assert set(two) == {"n", "mean", "std", "ci_low", "ci_high"}


def test_paired_without_spread_and_with_exact_p_values():
    same = paired({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.8})  # every difference 0.1: no spread
    assert same["significant"] and same["seeds"] == [0, 1]  # two seeds are enough to compare
    assert same["p_value"] == 0.0 and same["mean"] == pytest.approx(0.1) and same["std"] == pytest.approx(0.0)
    tied = paired({0: 0.8, 1: 0.9}, {0: 0.8, 1: 0.9})
    assert tied["p_value"] == 1.0 and not tied["significant"] and tied["mean"] == 0.0
    worse = paired({0: 0.70, 1: 0.72, 2: 0.71}, {0: 0.80, 1: 0.83, 2: 0.82})
    assert worse["significant"] and worse["ci_high"] < 0 and worse["mean"] < 0
    # the paired t-test by hand: d = (0.1, 0.08, 0.13), mean 0.103333, sd 0.025166, t = 7.1119, df 2
    c = paired({0: 0.80, 1: 0.82, 2: 0.85}, {0: 0.70, 1: 0.74, 2: 0.72})
    assert c["p_value"] == pytest.approx(0.019205, abs=2e-5)
    assert paired({0: 0.8, 1: 0.7}, {1: 0.7, 2: 0.6}) is None  # one shared seed
    wide, narrow = (
        paired({0: 0.8, 1: 0.7}, {0: 0.6, 1: 0.6}),
        paired({0: 0.8, 1: 0.7}, {0: 0.6, 1: 0.6}, level=0.5),
    )
    assert narrow["seeds"] == [0, 1] and narrow["mean"] == pytest.approx(wide["mean"])
    # t(0.75, 1) = 1.0 against t(0.975, 1) = 12.706: the level reaches the interval
    assert narrow["ci_high"] - narrow["ci_low"] == pytest.approx(
        (wide["ci_high"] - wide["ci_low"]) / 12.7062, rel=1e-3
    )


def test_shots_order():
    assert sorted(["all", "16", 8, "2"], key=lambda v: shots_order(v) if not isinstance(v, int) else v) == [
        "2",
        8,
        "16",
        "all",
    ]
    assert shots_order("all") == math.inf and shots_order("12") == 12 and shots_order("x") == "x"


def _cell(technique, shots, seed, accuracy, **kw):
    base = {
        "technique": technique,
        "shots": shots,
        "seed": seed,
        "accuracy": accuracy,
        "macro_f1": accuracy - 0.05,
        "cpu_s": 60.0,
        "wall_s": 30.0,
        "energy_j": 100.0,
        "flops": 1e9,
        "peak_rss_mb": 500.0,
        "trainable_params": 1000,
        "n_per_class": 4,
        "energy_method": "estimate",
    }
    return {**base, **kw}


def test_summarise_rows_means_and_comparisons_by_hand():
    cells = []
    for seed, (s, p, f) in enumerate([(0.50, 0.70, 0.80), (0.54, 0.72, 0.84), (0.52, 0.74, 0.83)]):
        cells.append(_cell("scratch", 4, seed, s, cpu_s=30.0, energy_j=200.0))
        cells.append(_cell("probe", 4, seed, p, cpu_s=6.0, energy_j=20.0 + seed))
        cells.append(_cell("finetune", 4, seed, f, cpu_s=120.0 + 60 * seed, energy_j=150.0))
    cells.append(_cell("probe", "all", 0, 0.9))
    cells.append(_cell("probe", 16, 0, 0.85))
    out = summarise(cells)
    assert out["cells"] == len(cells)
    order = [(r["technique"], r["shots"]) for r in out["rows"]]
    assert order == [("finetune", "4"), ("probe", "4"), ("probe", "16"), ("probe", "all"), ("scratch", "4")]
    rows = {(r["technique"], r["shots"]): r for r in out["rows"]}
    ft = rows[("finetune", "4")]
    assert ft["accuracy"]["mean"] == pytest.approx((0.80 + 0.84 + 0.83) / 3) and ft["accuracy"]["n"] == 3
    assert ft["macro_f1"]["mean"] == pytest.approx((0.80 + 0.84 + 0.83) / 3 - 0.05)
    assert ft["cpu_s"] == pytest.approx(180.0) and ft["wall_s"] == 30.0 and ft["energy_j"] == 150.0
    assert ft["flops"] == 1e9 and ft["peak_rss_mb"] == 500.0 and ft["trainable_params"] == 1000.0
    assert ft["n_per_class"] == 4.0 and ft["energy_method"] == "estimate"
    vs_s, vs_p = ft["vs_scratch"], ft["vs_probe"]
    assert vs_s["mean"] == pytest.approx(((0.80 - 0.50) + (0.84 - 0.54) + (0.83 - 0.52)) / 3)
    assert vs_p["mean"] == pytest.approx(((0.80 - 0.70) + (0.84 - 0.72) + (0.83 - 0.74)) / 3)
    assert vs_s["gain_per_cpu_minute"] == pytest.approx(vs_s["mean"] / 3.0)  # 180 s = 3 CPU minutes
    assert vs_s["energy_saved_j"] == pytest.approx(200.0 - 150.0)
    assert "gain_per_cpu_minute" not in vs_p and "energy_saved_j" not in vs_p
    probe = rows[("probe", "4")]
    assert "vs_probe" not in probe and probe["vs_scratch"]["mean"] == pytest.approx(0.2)
    assert probe["energy_j"] == pytest.approx(21.0)
    assert "vs_scratch" not in rows[("scratch", "4")] and "vs_probe" in rows[("scratch", "4")]
    assert "vs_scratch" not in rows[("probe", "16")]  # no scratch cells at 16 shots
    assert "vs_probe" not in rows[("probe", "16")]


def test_summarise_skips_comparisons_with_one_shared_seed_and_zero_cpu():
    cells = [_cell("scratch", 2, 0, 0.5), _cell("finetune", 2, 0, 0.6), _cell("finetune", 2, 1, 0.7)]
    cells += [_cell("probe", 2, 0, 0.55), _cell("probe", 2, 1, 0.65)]
    row = {r["technique"]: r for r in summarise(cells)["rows"]}["finetune"]
    assert "vs_scratch" not in row  # one shared seed: no paired statistics...
    assert row["vs_probe"]["mean"] == pytest.approx(0.05)  # ...and the comparison with the probe still made
    cells = [
        _cell(t, 2, s, a + s / 10, cpu_s=0.0) for t, a in (("scratch", 0.5), ("lora", 0.6)) for s in (0, 1)
    ]
    row = {r["technique"]: r for r in summarise(cells)["rows"]}["lora"]
    assert row["vs_scratch"]["gain_per_cpu_minute"] is None
    old = [
        {k: v for k, v in _cell("probe", 2, s, 0.5).items() if k not in ("n_per_class", "energy_method")}
        for s in (0, 1)
    ]
    row = summarise(old)["rows"][0]
    assert row["n_per_class"] == 0.0 and row["energy_method"] == ""


def test_summarise_compares_by_macro_f1_on_imbalanced_test_rows():
    """Cells whose test rows have one class over 3x another are compared (and a study's model chosen) by
    macro-F1, and the summary says so; `metric` overrides it; balanced rows keep accuracy."""
    imbalanced = {"per_class": {"ham": {"support": 400}, "spam": {"support": 100}}}
    cells = []
    for seed, (p, f, pf1, ff1) in enumerate([(0.90, 0.80, 0.60, 0.75), (0.92, 0.82, 0.62, 0.79)]):
        cells.append(_cell("probe", 4, seed, p, **imbalanced) | {"macro_f1": pf1})
        cells.append(_cell("finetune", 4, seed, f, **imbalanced) | {"macro_f1": ff1})
    out = summarise(cells)
    assert out["metric"] == "macro_f1" and "3x" in out["metric_reason"]
    ft = {r["technique"]: r for r in out["rows"]}["finetune"]
    assert ft["vs_probe"]["mean"] == pytest.approx(((0.75 - 0.60) + (0.79 - 0.62)) / 2)  # +16 points, not -10
    assert ft["accuracy"]["mean"] == pytest.approx(0.81)  # both scores are still reported
    by_acc = summarise(cells, "accuracy")
    assert by_acc["metric"] == "accuracy" and "metric_reason" not in by_acc
    assert {r["technique"]: r for r in by_acc["rows"]}["finetune"]["vs_probe"]["mean"] == pytest.approx(-0.10)
    balanced = [c | {"per_class": {"a": {"support": 300}, "b": {"support": 100}}} for c in cells]
    assert summarise(balanced)["metric"] == "accuracy"  # 3x exactly is not more than 3x
