"""Splits and few-shot sampling: exact sizes per class, the edges of the parameter ranges, nesting, and the
multi-label sampler. A silent change here changes every reported number, so each rule is pinned."""

from __future__ import annotations

import json

import numpy as np
import pytest

from warmstart.data import few_shot, stratified_split
from warmstart.data.splits import Split
from warmstart.errors import DataError, ParameterError


def _count(labels, rows):
    out: dict[str, int] = {}
    for i in rows:
        out[labels[i]] = out.get(labels[i], 0) + 1
    return out


def test_split_sizes_per_class_are_rounded_shares():
    labels = ["a"] * 30 + ["b"] * 10 + ["c"] * 5
    s = stratified_split(labels, val_size=0.1, test_size=0.2, seed=0)
    # a: test round(6.0)=6, val round(3.0)=3; b: 2 and 1; c: round(1.0)=1 and round(0.5)=0
    assert _count(labels, s.test) == {"a": 6, "b": 2, "c": 1}
    assert _count(labels, s.val) == {"a": 3, "b": 1}
    assert _count(labels, s.train) == {"a": 21, "b": 7, "c": 4}
    assert s.seed == 0 and all(p.dtype == np.int64 for p in (s.train, s.val, s.test))
    for part in (s.train, s.val, s.test):
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(len(labels)))


def test_every_class_keeps_a_training_row_and_the_edges_of_the_sizes():
    s = stratified_split(["a", "a", "b"], val_size=0.0, test_size=0.9, seed=0)
    assert _count(["a", "a", "b"], s.train) == {"a": 1, "b": 1} and len(s.val) == 0
    assert not set(s.train.tolist()) & set(s.test.tolist())
    empty = stratified_split([], seed=0)
    assert all(
        len(p) == 0 and p.dtype == np.int64 and p.shape == (0,) for p in (empty.train, empty.val, empty.test)
    )
    s = stratified_split(["a"] * 4, val_size=0.49, test_size=0.5, seed=1)  # both capped at n - 1 in total
    assert len(s.train) == 1 and len(s.test) == 2 and len(s.val) == 1
    s = stratified_split(["a"] * 10, val_size=0.0, test_size=0.0)
    assert len(s.train) == 10 and len(s.val) == len(s.test) == 0
    for bad in ({"val_size": -0.01}, {"test_size": 1.0}, {"val_size": 1.0, "test_size": 0.0}):
        with pytest.raises(ParameterError, match="must be a float in \\[0, 1\\)"):
            stratified_split(["a", "b"], **bad)
    with pytest.raises(ParameterError, match="val_size \\+ test_size must be below 1; got 1.0"):
        stratified_split(["a", "b"], val_size=0.5, test_size=0.5)
    stratified_split(["a", "b"], val_size=0.49, test_size=0.5)  # just below 1 is allowed


def test_splits_depend_on_the_seed_and_serialise():
    labels = [str(i % 3) for i in range(60)]
    assert stratified_split(labels).test.tolist() == stratified_split(labels, seed=0).test.tolist()
    assert few_shot(labels, 2).tolist() == few_shot(labels, 2, seed=0).tolist()
    a, b = stratified_split(labels, seed=5), stratified_split(labels, seed=6)
    assert not np.array_equal(a.test, b.test)
    d = a.to_dict()
    assert json.loads(json.dumps(d)) == d and d["seed"] == 5
    assert d["train"] == a.train.tolist() and d["val"] == a.val.tolist() and d["test"] == a.test.tolist()
    assert set(d) == {"seed", "train", "val", "test"}
    assert isinstance(Split(a.train, a.val, a.test, 1).to_dict()["train"], list)


def test_few_shot_counts_order_and_small_classes():
    labels = ["a"] * 20 + ["b"] * 3 + ["c"] * 9
    picks = few_shot(labels, 5, seed=0)
    assert _count(labels, picks) == {"a": 5, "b": 3, "c": 5} and picks.dtype == np.int64
    assert np.all(np.diff(picks) > 0)
    assert len(few_shot(labels, 1, seed=0)) == 3
    with pytest.raises(DataError, match="class 'b' has only 3 training rows, fewer than k=5"):
        few_shot(labels, 5, strict=True)
    assert _count(labels, few_shot(labels, 3, strict=True)) == {"a": 3, "b": 3, "c": 3}
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ParameterError, match="'k' parameter of few_shot"):
            few_shot(labels, bad)
    assert len(few_shot(labels, np.int64(2))) == 6


def test_few_shot_picks_are_nested_across_k_and_change_with_the_seed():
    labels = [str(i % 4) for i in range(200)]
    small, large = set(few_shot(labels, 4, seed=3).tolist()), set(few_shot(labels, 32, seed=3).tolist())
    assert small < large
    assert few_shot(labels, 4, seed=3).tolist() != few_shot(labels, 4, seed=4).tolist()
    assert few_shot(labels, 4, seed=3).tolist() == few_shot(labels, 4, seed=3).tolist()


def test_multilabel_few_shot_covers_every_label_at_least_k_times():
    rng = np.random.default_rng(0)
    names = ["x", "y", "z", "rare"]
    labels = []
    for i in range(80):
        labs = [n for n in names[:3] if rng.random() < 0.5] or ["x"]
        labels.append(labs + (["rare"] if i % 20 == 0 else []))  # 4 rows carry "rare"
    picks = few_shot(labels, 3, seed=1)
    assert picks.dtype == np.int64 and np.all(np.diff(picks) > 0)
    counts = {n: sum(n in labels[i] for i in picks) for n in names}
    assert all(counts[n] >= 3 for n in names)
    # greedy: a row is kept only while one of its labels still needs rows, so it stops early
    assert len(picks) < len(labels) / 2
    assert few_shot(labels, 3, seed=1).tolist() == picks.tolist()
    assert few_shot(labels, 3, seed=2).tolist() != picks.tolist()
    everything = few_shot(labels, 1000, seed=0)
    assert everything.tolist() == list(range(len(labels)))  # k above every count keeps every row


def test_multilabel_sampler_keeps_exactly_what_is_needed_on_a_small_case():
    labels = [["a"], ["a"], ["a", "b"], ["b"], ["b"], ["a"]]
    picks = few_shot(labels, 1, seed=0)
    counts = {c: sum(c in labels[i] for i in picks) for c in "ab"}
    assert counts["a"] >= 1 and counts["b"] >= 1 and len(picks) <= 2
    two = few_shot(labels, 2, seed=0)
    assert all(sum(c in labels[i] for i in two) >= 2 for c in "ab") and len(two) <= 4
