"""Learning-curve forecasts (warmstart.forecast) and `warmstart forecast`: the fit, its intervals, when a forecast
is flagged, the metric on imbalanced data, and the command on a study folder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from warmstart.cli import main
from warmstart.errors import DataError
from warmstart.forecast import (
    curve,
    fit_curve,
    fit_curves,
    forecast_curve,
    forecast_study,
    labels_for,
)
from warmstart.study_stats import choose_metric

X = np.array([2.0, 4.0, 8.0, 16.0])


def _study(folder, scores, support=None, technique="probe", shots=(2, 4, 8, 16), per_class=None):
    """A study folder whose cells have the given scores: ``scores[i][j]`` at shots[i], seed j."""
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text("{}")
    support = support or {"a": 100, "b": 100}
    for i, k in enumerate(shots):
        for s, v in enumerate(scores[i]):
            cell = {
                "technique": technique,
                "shots": k,
                "seed": s,
                "n_per_class": (per_class or shots)[i],
                "accuracy": v,
                "macro_f1": v - 0.1,
                "per_class": {c: {"support": n} for c, n in support.items()},
            }
            (folder / "cells" / f"{technique}-k{k}-s{s}.json").write_text(json.dumps(cell))
    return folder


@pytest.mark.parametrize("abc", [(0.9, 0.5, 0.7), (0.75, 0.3, 0.3), (1.0, 0.6, 1.2), (0.6, 0.0, 0.5)])
def test_fit_recovers_the_curve_it_was_given(abc):
    x = np.array([2.0, 4, 8, 16, 32, 64])
    a, b, c = fit_curve(x, curve(x, *abc))
    assert np.allclose(curve(x, a, b, c), curve(x, *abc), atol=2e-4)
    assert a == pytest.approx(abc[0], abs=0.01)


def test_fits_stay_within_their_bounds_on_curves_that_fall():
    ys = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.9, 0.95, 1.2]])
    fits = fit_curves(X, ys)
    assert np.all((fits[:, 0] >= 0) & (fits[:, 0] <= 1)) and np.all(fits[:, 1] >= 0)
    assert fits[0, 1] == 0  # falling scores: a flat line (no gain from labels), not a negative b
    assert fits[0, 0] == pytest.approx(0.75)  # ...at their mean


def test_many_curves_fit_at_once_as_they_fit_alone():
    rng = np.random.default_rng(0)
    ys = curve(X, 0.85, 0.5, 0.6)[None, :] + rng.normal(0, 0.02, (20, 4))
    together = fit_curves(X, ys)
    alone = np.array([fit_curve(X, y) for y in ys])
    assert np.allclose(together, alone)


def test_labels_for_inverts_the_curve():
    a, b, c = 0.92, 0.6, 0.8
    n = labels_for(0.85, a, b, c)
    assert curve(n, a, b, c) == pytest.approx(0.85)
    assert labels_for(0.95, a, b, c) == math.inf  # above the asymptote
    assert labels_for(0.2, a, b, c) == 1.0  # reached at one example per class


def test_forecast_intervals_cover_the_truth_on_simulated_studies():
    """60 simulated studies (5 seeds, noise as in real few-shot runs): the 80% interval at 4x the labels holds the
    true curve's value in at least 70% of them, and the point forecast is within 3 points on average."""
    rng = np.random.default_rng(1)
    inside, errors = 0, []
    for _ in range(60):
        a, b, c = rng.uniform(0.7, 0.98), rng.uniform(0.2, 0.7), rng.uniform(0.3, 1.2)
        table = curve(X, a, b, c)[:, None] + rng.normal(0, 0.03, (4, 5)) / np.sqrt(X)[:, None]
        f = forecast_curve(X, np.clip(table, 0, 1), boots=200)
        at = f["at"][1]
        truth = float(curve(64.0, a, b, c))
        inside += at["low"] <= truth <= at["high"]
        errors.append(abs(at["forecast"] - truth))
    assert inside >= 42
    assert np.mean(errors) < 0.03


def test_the_interval_widens_with_the_back_test_error_and_the_distance():
    table = np.tile(curve(X, 0.9, 0.5, 0.7)[:, None], (1, 4)) + np.array([0.01, -0.01, 0.005, -0.005])
    smooth = forecast_curve(X, table)
    kinked = table.copy()
    kinked[-1] += 0.06  # the largest count far above the curve of the others: a large back-test error
    f = forecast_curve(X, kinked)
    assert f["backtest_error_per_doubling"] > 0.03 > smooth["backtest_error_per_doubling"]
    width = [p["high"] - p["low"] for p in f["at"]]
    assert width[0] < width[1] < width[2]
    assert width[1] > smooth["at"][1]["high"] - smooth["at"][1]["low"]
    assert not f["trusted"] and any("forecast its own largest" in r for r in f["reasons"])


def test_the_shape_floor_widens_a_smooth_curves_interval_per_doubling_and_with_the_level():
    """Seeds that agree and a curve the law fits exactly leave no interval of their own: the floor alone sets
    its half-width, once per doubling beyond the labels measured, scaled to the level asked for."""
    table = np.tile(curve(X, 0.9, 0.5, 0.7)[:, None], (1, 4))
    bare = forecast_curve(X, table, shape_floor=0.0)
    f = forecast_curve(X, table, shape_floor=0.02)
    assert f["shape_error_per_doubling"] == pytest.approx(0.02)
    for p0, p in zip(bare["at"], f["at"], strict=True):
        assert p0["high"] - p0["low"] < 5e-4  # the fit's grid of exponents, nothing more
        doublings = math.log2(p["factor"])
        assert p["forecast"] - p["low"] == pytest.approx(0.02 * doublings, abs=5e-4)
        assert min(p["high"], 0.9999) - p["forecast"] == pytest.approx(
            min(0.02 * doublings, 0.9999 - p["forecast"]), abs=5e-4
        )
    wide = forecast_curve(X, table, shape_floor=0.02, level=0.95)["at"][1]
    assert wide["forecast"] - wide["low"] == pytest.approx(0.04 * 1.95996 / 1.28155, rel=1e-4)


def test_the_labels_a_target_needs_get_the_forecasts_band_not_the_seeds_alone():
    table = np.tile(curve(X, 0.9, 0.5, 0.7)[:, None], (1, 4)) + np.array([0.01, -0.01, 0.005, -0.005])
    seeds_only = forecast_curve(X, table, target=0.84, shape_floor=0.0)["target"]
    t = forecast_curve(X, table, target=0.84, shape_floor=0.01)["target"]
    assert t["per_class"] == pytest.approx(seeds_only["per_class"])
    assert t["low"] < seeds_only["low"] <= t["per_class"] <= seeds_only["high"] < t["high"] < math.inf
    # the interval's ends are where the band's upper and lower ends reach the target
    at_low = forecast_curve(X, table, shape_floor=0.01, factors=(t["low"] / 16,))["at"][0]
    at_high = forecast_curve(X, table, shape_floor=0.01, factors=(t["high"] / 16,))["at"][0]
    assert at_low["high"] == pytest.approx(0.84, abs=2e-3)
    assert at_high["low"] == pytest.approx(0.84, abs=2e-3)
    # a floor that grows faster than the curve still rises: the lower end never gets there
    assert forecast_curve(X, table, target=0.87, shape_floor=0.02)["target"]["high"] == math.inf


def test_too_few_points_are_refused_or_flagged():
    with pytest.raises(DataError, match="three label counts"):
        forecast_curve(X[:2], np.full((2, 3), 0.5))
    f = forecast_curve(X[:3], np.array([[0.5, 0.52], [0.6, 0.61], [0.66, 0.65]]))
    assert not f["trusted"] and "only 3 label counts" in f["reasons"][0]
    one_seed = forecast_curve(X, curve(X, 0.9, 0.5, 0.7)[:, None])
    assert not one_seed["trusted"] and any("one seed" in r for r in one_seed["reasons"])


def test_target_interval_and_an_unreachable_target():
    table = np.tile(curve(X, 0.9, 0.5, 0.7)[:, None], (1, 4)) + np.array([0.01, -0.01, 0.005, -0.005])
    f = forecast_curve(X, table, target=0.85)
    t = f["target"]
    assert t["low"] <= t["per_class"] <= t["high"]
    assert curve(t["per_class"], f["fit"]["a"], f["fit"]["b"], f["fit"]["c"]) == pytest.approx(0.85)
    never = forecast_curve(X, table, target=0.99)["target"]
    assert never["per_class"] == math.inf and "levels off" in never["note"]


def test_metric_auto_uses_macro_f1_on_imbalanced_test_rows(tmp_path):
    assert choose_metric({"ham": 400, "spam": 100}) == "macro_f1"
    assert choose_metric({"ham": 300, "spam": 100}) == "accuracy"  # 3x exactly is not more than 3x
    assert choose_metric({"ham": 400, "spam": 100}, "accuracy") == "accuracy"
    scores = [[0.6, 0.62], [0.7, 0.71], [0.75, 0.76], [0.78, 0.79]]
    f = forecast_study(_study(tmp_path, scores, {"ham": 800, "spam": 100}))
    assert f["metric"] == "macro_f1" and "3x" in f["metric_reason"]
    assert f["techniques"]["probe"]["points"][0]["mean"] == pytest.approx(0.51)  # the macro_f1 column


def test_forecast_study_can_leave_out_larger_counts(tmp_path):
    scores = [[0.6, 0.62], [0.7, 0.71], [0.75, 0.76], [0.78, 0.79], [0.8, 0.81]]
    folder = _study(tmp_path, scores, shots=(2, 4, 8, 16, 64))
    f = forecast_study(folder, max_per_class=16)["techniques"]["probe"]
    assert [p["per_class"] for p in f["points"]] == [2, 4, 8, 16]
    assert f["at"][1]["per_class"] == 64
    all_points = forecast_study(folder)["techniques"]["probe"]
    assert len(all_points["points"]) == 5
    with pytest.raises(DataError, match="no finished cells of technique 'lora'"):
        forecast_study(folder, techniques=["lora"])


def test_shots_all_counts_at_its_examples_per_class(tmp_path):
    scores = [[0.6, 0.62], [0.7, 0.71], [0.75, 0.76], [0.8, 0.8]]
    folder = _study(tmp_path, scores, shots=(2, 4, 8, "all"), per_class=(2, 4, 8, 40))
    f = forecast_study(folder)["techniques"]["probe"]
    assert [p["per_class"] for p in f["points"]] == [2, 4, 8, 40]


def test_cli_forecast_prints_writes_and_refuses(tmp_path, capsys):
    scores = [[0.6, 0.62, 0.61], [0.7, 0.71, 0.69], [0.75, 0.76, 0.74], [0.78, 0.79, 0.78]]
    folder = _study(tmp_path / "s", scores)
    assert main(["forecast", str(folder), "--target", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "4x = 64 per class" in out and "accuracy 0.8 at about" in out
    saved = json.loads((folder / "forecast.json").read_text())
    assert saved["techniques"]["probe"]["target"]["value"] == 0.8
    assert main(["forecast", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == "accuracy"
    assert main(["forecast", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err
    assert main(["forecast", str(folder), "--level", "1.5"]) == 2


def test_forecast_runs_a_quick_probe_curve_on_labelled_data(tiny_bert_dir, tmp_path, capsys):
    from tests.conftest import make_sentences
    from warmstart.cli import main

    texts, labels = make_sentences(12, seed=0)
    data = tmp_path / "labelled.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels, strict=True)))
    out = tmp_path / "quick"
    argv = ["forecast", "--data", str(data), "--backbone", str(tiny_bert_dir), "--seeds", "2", "-o", str(out)]
    assert main(argv) == 0
    cells = sorted(p.name for p in (out / "cells").glob("*.json"))
    # 12 rows per class, 20% held out: 9 left, so 2, 4, 8 and 9 per class, 2 seeds each
    assert cells == sorted(f"probe-k{k}-s{s}.json" for k in (2, 4, 8, 9) for s in (0, 1))
    assert "probe" in capsys.readouterr().out and (out / "forecast.json").is_file()
    assert main(["forecast", str(out), "--data", str(data)]) == 2
    assert main(["forecast"]) == 2
