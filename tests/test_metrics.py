"""Metrics helpers: intervals for accuracy and for paired accuracy differences."""

from __future__ import annotations

import numpy as np


def test_wilson_interval_holds_the_proportion_and_narrows_with_rows():
    from warmstart.metrics import wilson_interval

    small, large = wilson_interval(9, 10), wilson_interval(900, 1000)
    assert small[0] < 0.9 < small[1] and large[0] < 0.9 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 5  # 100x the rows: about a tenth of the width
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] > 0.6  # inside [0, 1], not [1, 1]


def test_paired_difference_interval_excludes_zero_only_for_a_real_difference():
    from warmstart.metrics import paired_difference_interval

    rng = np.random.default_rng(0)
    a = rng.random(1000) < 0.9
    same = paired_difference_interval(a, a.copy())
    assert same["difference"] == same["low"] == same["high"] == 0  # identical predictions: no difference
    worse = a & (rng.random(1000) < 0.9)  # loses about a tenth of A's correct rows
    d = paired_difference_interval(worse, a)
    assert d["high"] < 0 < -d["low"] and d["low"] <= d["difference"] <= d["high"]
