"""Transferability scores against slow references and small cases worked by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from tests.conftest import make_images
from warmstart.errors import DataError, ParameterError
from warmstart.selection import scores


def blobs(n: int = 120, d: int = 16, classes: int = 3, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d)) * 3
    return centres[y] + spread * rng.normal(size=(n, d)), y


def gaussian_logpdf(y: np.ndarray, cov: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return float(-0.5 * (len(y) * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(cov, y)))


@pytest.mark.parametrize("n,d", [(60, 8), (10, 24)])  # more rows than dims, and fewer
def test_logme_evidence_is_the_gaussian_marginal_at_its_maximum(n, d):
    X, y = blobs(n, d, classes=3, seed=n)
    Y = np.eye(3)[y]
    evidence, alpha, beta = scores.logme_evidence(X, Y)
    for c in range(3):
        # y ~ N(0, X X^T / alpha + I / beta) when w ~ N(0, I / alpha) and noise ~ N(0, I / beta)
        cov = X @ X.T / alpha[c] + np.eye(n) / beta[c]
        assert evidence[c] == pytest.approx(gaussian_logpdf(Y[:, c], cov), rel=1e-6)
        at_cap = beta[c] >= scores.BETA_MAX  # N < D: noise precision stops at its bound
        for da, db in [(1.2, 1.0), (0.8, 1.0), (1.0, 0.8)] + ([] if at_cap else [(1.0, 1.2)]):
            other = X @ X.T / (alpha[c] * da) + np.eye(n) / (beta[c] * db)
            assert gaussian_logpdf(Y[:, c], other) < evidence[c]  # the fixed point is the maximum


def test_logme_prefers_features_that_separate_the_classes():
    X, y = blobs(spread=0.5)
    noise = np.random.default_rng(1).normal(size=X.shape)
    assert scores.logme(X, y) > scores.logme(noise, y)
    # invariant to the row order, and finite in float32 input
    perm = np.random.default_rng(2).permutation(len(y))
    assert scores.logme(X[perm].astype(np.float32), y[perm]) == pytest.approx(scores.logme(X, y), rel=1e-5)


def slow_knn(X, y, k):
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    right = 0
    for i in range(len(X)):
        sims = [(float(Z[i] @ Z[j]), j) for j in range(len(X)) if j != i]
        sims.sort(reverse=True)
        tally: dict[int, list[float]] = {}
        for s, j in sims[:k]:
            tally.setdefault(int(y[j]), []).append(s)
        best = max(tally, key=lambda c: (len(tally[c]), sum(tally[c])))
        right += best == y[i]
    return right / len(X)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_loo_matches_a_slow_loop(k):
    X, y = blobs(n=90, d=6, classes=3, spread=3.0, seed=k)
    assert scores.knn_loo(X, y, k=k, chunk=32) == pytest.approx(slow_knn(X, y, k))


def test_knn_leaves_the_row_itself_out():
    # two copies of each point with different labels: with the row itself counted, 1-NN would be perfect
    X = np.repeat(np.eye(4) + 0.01, 2, axis=0)
    y = np.array([0, 1] * 4)
    assert scores.knn_loo(X, y, k=1) == 0.0


def slow_hscore(X, y):
    F = X - X.mean(0)
    cov = np.cov(F.T, bias=True)
    g = np.stack([F[y == c].mean(0) for c in y])  # each row replaced by its class mean
    return float(np.trace(np.linalg.pinv(cov) @ np.cov(g.T, bias=True)))


def test_hscore_without_shrinkage_matches_a_slow_reference():
    X, y = blobs(n=200, d=5, classes=4, spread=2.0)
    assert scores.hscore(X, y, shrinkage=False) == pytest.approx(slow_hscore(X, y), rel=1e-9)


def test_hscore_in_one_dimension_is_the_between_class_variance_share():
    X = np.array([[0.0], [2.0], [4.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    # class means 1 and 5 around 3: between variance 4; total variance 5
    assert scores.hscore(X, y, shrinkage=False) == pytest.approx(4 / 5)


def test_hscore_with_shrinkage_is_finite_when_rows_are_fewer_than_dims_and_exact_with_many_rows():
    X, y = blobs(n=12, d=40, classes=3)
    assert np.isfinite(scores.hscore(X, y)) and scores.hscore(X, y) > 0
    X, y = blobs(n=2000, d=5, classes=3, spread=3.0)
    assert scores.hscore(X, y) == pytest.approx(scores.hscore(X, y, shrinkage=False), rel=0.02)


def test_leep_by_hand():
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    y = np.array([0, 0, 1])
    # joint P(y, z) = [[1.7, 0.3], [0.1, 0.9]] / 3; P(y=0 | z=0) = 17/18, P(y=0 | z=1) = 1/4, P(y=1 | z=1) = 3/4
    p0 = 0.9 * 17 / 18 + 0.1 * 0.25
    p1 = 0.8 * 17 / 18 + 0.2 * 0.25
    p2 = 0.1 * 1 / 18 + 0.9 * 0.75
    assert scores.leep(theta, y) == pytest.approx(np.mean(np.log([p0, p1, p2])))


def test_leep_refuses_features_in_place_of_probabilities():
    with pytest.raises(DataError, match="probabilities"):
        scores.leep(np.array([[2.0, 1.0], [0.5, 0.5]]), np.array([0, 1]))


def test_nleep_and_probe_prefer_separable_features():
    X, y = blobs(spread=0.3)
    noise = np.random.default_rng(1).normal(size=X.shape)
    assert scores.nleep(X, y) > scores.nleep(noise, y)
    assert scores.probe_cv(X, y) == 1.0
    assert scores.probe_cv(noise, y) < 0.7


def slow_ridge_loo(X, y, rel):
    """Refit sklearn's Ridge once per left-out row (features standardised on every row, as ridge_loo does)."""
    from sklearn.linear_model import Ridge

    Z = (X - X.mean(0)) / X.std(0)
    penalty = rel * float((np.linalg.svd(Z, compute_uv=False) ** 2).mean())
    Y = np.eye(int(y.max()) + 1)[y]
    right = 0
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        right += int(Ridge(alpha=penalty).fit(Z[keep], Y[keep]).predict(Z[i : i + 1]).argmax() == y[i])
    return right / len(X)


@pytest.mark.parametrize("n,d", [(45, 6), (24, 40)])  # more rows than dims, and fewer
@pytest.mark.parametrize("rel", [1e-3, 0.3, 10.0])
@pytest.mark.parametrize("spread", [4.0, 5.0])  # noise around the class centres: some, and more
def test_ridge_loo_is_exactly_the_leave_one_out_refit(n, d, rel, spread):
    X, y = blobs(n, d, classes=3, spread=spread, seed=d)
    want = slow_ridge_loo(X, y, rel)
    if spread == 5.0:
        assert 0.5 < want < 0.8  # classes overlap, so a wrong leverage changes which rows come out right
    assert scores.ridge_loo(X, y, penalties=(rel,)) == pytest.approx(want)


def test_ridge_loo_takes_the_best_penalty_and_prefers_separable_features():
    X, y = blobs(n=60, d=30, classes=3, spread=4.0, seed=3)
    grid = (1e-3, 0.3, 10.0)
    assert scores.ridge_loo(X, y, grid) == max(scores.ridge_loo(X, y, (g,)) for g in grid)
    noise = np.random.default_rng(2).normal(size=X.shape)
    assert scores.ridge_loo(blobs(spread=0.3)[0], blobs()[1]) == 1.0
    assert scores.ridge_loo(noise, y) < 0.6


def test_scores_name_the_bad_row_and_refuse_one_class():
    X, y = blobs()
    X[7, 3] = np.nan
    with pytest.raises(DataError, match="row 7"):
        scores.logme(X, y)
    with pytest.raises(DataError, match="two classes"):
        scores.knn_loo(np.ones((4, 2)), np.zeros(4, dtype=int))


# -- ranking backbones ------------------------------------------------------------------------------------------
class TableBackbone:
    """A stand-in backbone whose features are a fixed function of each text's class word: ``quality`` scales how
    much of the class survives in the features."""

    def __new__(cls, name: str, quality: float, dim: int = 12):
        import torch

        from warmstart.backbones.base import Backbone

        class _BB(Backbone):
            modality = "text"

            def __init__(self):
                self.name = self.source = name
                self.module = torch.nn.Linear(dim, dim)
                self.num_features = dim
                self.calls = 0

            def encode(self, inputs, *, batch_size=None, progress=True, precision="fp32"):
                self.calls += 1
                rng = np.random.default_rng(zlib.crc32(name.encode()))  # stable across processes
                centres = {w: rng.normal(size=dim) * 3 for w in ("alpha", "beta", "gamma")}
                out = []
                for i, t in enumerate(getattr(inputs, "inputs", inputs)):  # a Dataset, or its texts
                    word = t.split()[0]
                    noise = np.random.default_rng(i).normal(size=dim)
                    out.append(quality * centres[word] + noise)
                return np.asarray(out, dtype=np.float32)

            def preprocess_config(self):
                return {"kind": "table", "name": name, "quality": quality}

            def save(self, folder):
                raise NotImplementedError

        return _BB()


def table_data(n_per_class: int = 30):
    from warmstart.data import Dataset

    texts = [f"{w} row {i}" for w in ("alpha", "beta", "gamma") for i in range(n_per_class)]
    labels = [t.split()[0] for t in texts]
    return Dataset(texts, labels, "text", "table")


def test_rank_orders_backbones_by_how_much_class_signal_their_features_keep(tmp_path):
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    cands = [TableBackbone("weak", 0.2), TableBackbone("strong", 1.5), TableBackbone("none", 0.0)]
    cache = FeatureCache(tmp_path)
    r = rank_backbones(table_data(), cands, cache=cache, resamples=5, progress=False)
    assert [c.backbone for c in r.candidates] == ["strong", "weak", "none"]
    for score in ("knn", "hscore", "probe_cv"):
        assert r.candidates[0].scores[score] > r.candidates[2].scores[score]
    assert r.candidates[0].scores["leep"] is None  # no source classifier
    assert r.top_share == 1.0 and "clear lead" in r.explain()
    assert "| 1 | strong |" in r.table() and "n/a" in r.table()
    # a second ranking reads every feature from the cache and gives the same scores
    again = rank_backbones(table_data(), cands, cache=cache, resamples=0, progress=False)
    assert all(c.cached for c in again.candidates) and all(b.calls == 1 for b in cands)
    assert again.candidates[0].scores == r.candidates[0].scores


def test_rank_samples_at_most_max_rows_keeping_every_class(tmp_path):
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    r = rank_backbones(
        table_data(100),
        [TableBackbone("a", 1.0)],
        cache=FeatureCache(tmp_path),
        max_rows=60,
        max_per_class=None,
        scores=["logme"],
    )
    assert r.rows == 60 and r.classes == 3 and r.top_share is None


def test_rank_scores_at_most_max_per_class_rows_of_each_class(tmp_path):
    from collections import Counter

    from warmstart.data import Dataset
    from warmstart.errors import ParameterError
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    seen: list[list[str]] = []  # the texts of each encode call
    bb = TableBackbone("a", 1.0)
    encode = bb.encode
    bb.encode = lambda inputs, **kw: (
        seen.append(list(getattr(inputs, "inputs", inputs))),
        encode(inputs, **kw),
    )[1]
    data = table_data(30)
    # gamma has 5 rows only: it keeps them all, the others are cut to 8
    keep = [i for i, t in enumerate(data.inputs) if not t.startswith("gamma") or int(t.split()[-1]) < 5]
    data = Dataset([data.inputs[i] for i in keep], [data.labels[i] for i in keep], "text", "table")
    r = rank_backbones(
        data,
        [bb],
        cache=FeatureCache(tmp_path),
        max_per_class=8,
        scores=["ridge_loo"],
        resamples=0,
        progress=False,
    )
    assert r.rows == 21 and r.classes == 3
    assert "a sample of 21 of the 65 labelled rows (3 classes, at most 8 of each class" in r.explain()
    assert Counter(t.split()[0] for t in seen[-1]) == {"alpha": 8, "beta": 8, "gamma": 5}
    # the rows of a smaller cap are among a larger one's; no cap scores every row
    off = FeatureCache(enabled=False)
    rank_backbones(data, [bb], cache=off, max_per_class=4, scores=["ridge_loo"], resamples=0, progress=False)
    assert set(seen[-1]) < set(seen[-2])
    whole = rank_backbones(
        data, [bb], cache=off, max_per_class=None, scores=["ridge_loo"], resamples=0, progress=False
    )
    assert whole.rows == 65 and "Computed on 65 labelled rows" in whole.explain()
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ParameterError, match="max_per_class"):
            rank_backbones(data, [bb], cache=off, max_per_class=bad, scores=["ridge_loo"], progress=False)


def test_rank_refuses_unknown_scores_and_label_sets(tmp_path):
    from warmstart.data import Dataset
    from warmstart.errors import ParameterError
    from warmstart.selection import rank_backbones

    with pytest.raises(ParameterError, match="unknown score"):
        rank_backbones(table_data(), [TableBackbone("a", 1.0)], scores=["logmee"])
    with pytest.raises(ParameterError, match="primary"):
        rank_backbones(table_data(), [TableBackbone("a", 1.0)], scores=["knn"], primary="logme")
    multi = Dataset(["alpha x", "beta y"] * 4, [("a",), ("a", "b")] * 4, "text", "multi")
    with pytest.raises(DataError, match="label sets"):
        rank_backbones(multi, [TableBackbone("a", 1.0)], cache=None)


def test_image_backbone_source_classifier_gives_leep(tiny_image_backbone, tmp_path):
    from warmstart.data import Dataset
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    imgs, labels = make_images(6, size=32)
    data = Dataset(imgs, labels, "image", "blocks")
    assert tiny_image_backbone.source_proba(np.zeros((2, 64))) is None
    tiny_image_backbone.has_source_classifier = True  # pretend its classifier was trained
    X = tiny_image_backbone.encode(data, progress=False)
    P = tiny_image_backbone.source_proba(X)
    assert P.shape == (18, 1000) and np.allclose(P.sum(1), 1.0)
    r = rank_backbones(data, [tiny_image_backbone], cache=FeatureCache(tmp_path), resamples=0, progress=False)
    assert r.candidates[0].scores["leep"] == pytest.approx(scores.leep(P, np.repeat([0, 1, 2], 6)), rel=1e-5)


def test_backbone_variants_by_spec(tiny_bert_dir):
    from warmstart.backbones import TransformerTextBackbone, get_backbone
    from warmstart.backbones.registry import _REGISTRY, register_backbone
    from warmstart.errors import BackboneError

    register_backbone("tiny-spec-bert", "text", "test only")(
        lambda **kw: TransformerTextBackbone.from_pretrained(tiny_bert_dir, name="tiny-spec-bert", **kw)
    )
    try:
        full = get_backbone("tiny-spec-bert")
        one = get_backbone("tiny-spec-bert:num_layers=1")
        rand = get_backbone("tiny-spec-bert:init=random,seed=3")
        assert len(one.module.encoder.layer) == 1 and one.name == "tiny-spec-bert:num_layers=1"
        assert len({full.fingerprint(), one.fingerprint(), rand.fingerprint()}) == 3
        assert rand.fingerprint() == get_backbone("tiny-spec-bert:init=random,seed=3").fingerprint()
        assert get_backbone("tiny-spec-bert:num_layers=0").encode(["alpha"], progress=False).shape == (1, 32)
        with pytest.raises(BackboneError, match=r"num_layers.*\[0, 2\]"):
            get_backbone("tiny-spec-bert:num_layers=3")
        with pytest.raises(BackboneError, match="does not take"):
            get_backbone("tiny-spec-bert:num_blocks=3")
        with pytest.raises(BackboneError, match="key=value"):
            get_backbone("tiny-spec-bert:oops")
    finally:
        _REGISTRY.pop("tiny-spec-bert", None)


# -- technique recommendation under a budget ---------------------------------------------------------------------
def test_budget_and_size_parsing():
    from warmstart.errors import ParameterError
    from warmstart.selection.recommend import parse_budget, parse_size

    assert parse_budget("5m") == 300 and parse_budget("90s") == 90 and parse_budget(12) == 12.0
    assert parse_size("76k") == 76_000 and parse_size("2M") == 2e6 and parse_size("1GB", "B") == 1e9
    with pytest.raises(ParameterError, match="duration"):
        parse_budget("five minutes")
    with pytest.raises(ParameterError, match="size"):
        parse_size("lots")


def test_calibration_predicts_the_cost_of_the_full_fit(tiny_bert_dir, text_data):
    """The cost model from two short fits, extrapolated to a fit with many more steps, lands near its real CPU
    time (within a factor of two on a tiny model, where fixed overheads weigh most)."""
    import time

    from warmstart.backbones import get_backbone
    from warmstart.features import FeatureCache
    from warmstart.selection.recommend import calibrate
    from warmstart.techniques import get_technique

    bb = get_backbone(str(tiny_bert_dir))
    params = {"epochs": 6, "batch_size": 8, "use_cache": False}
    cal = calibrate("finetune", bb, text_data, params, FeatureCache(enabled=False))
    assert cal.units == 6 * 15  # 120 rows / batch 8 = 15 steps per epoch
    assert cal.per_unit_cpu_s > 0 and cal.trainable_params > 0
    actual = float("inf")
    # the least of two, as calibration times its own fits: other work only ever inflates a timing
    for _ in range(2):
        start = time.process_time()
        get_technique("finetune", backbone=bb, progress=False, **params).fit(text_data)
        actual = min(actual, time.process_time() - start)
    assert actual / 2 < cal.predicted_cpu_s < actual * 2


def test_calibration_lengthens_the_longer_fit_when_the_two_differ_by_noise(
    tiny_bert_dir, text_data, monkeypatch
):
    """Two fits whose CPU times differ by less than the span calibration needs get a third, longer fit, and the
    per-step cost comes from it: here the short fits' difference (0.02 s over 8 steps) would give a quarter of
    the true per-step cost (0.01 s)."""
    from warmstart.backbones import get_backbone
    from warmstart.features import FeatureCache
    from warmstart.selection import recommend as rec

    calls = []

    def fake_fit(name, bb, rows, params, seed):
        calls.append(params["epochs"])
        steps = params["epochs"] * 2  # 16 sampled rows, batch 8
        cpu = 0.10 + 0.01 * steps if len(calls) != 2 else 0.14  # the second fit: timed too short by noise
        return cpu, 10.0, 100

    monkeypatch.setattr(rec, "_timed_fit", fake_fit)
    bb = get_backbone(str(tiny_bert_dir))
    cal = rec.calibrate(
        "finetune", bb, text_data, {"epochs": 6, "batch_size": 8}, FeatureCache(enabled=False)
    )
    assert calls[:2] == [1, 5] and len(calls) == 3 and calls[2] > 5
    assert (calls[2] - 1) * 2 * 0.01 >= rec._MIN_SPAN_CPU_S  # the third fit spans the least span
    assert cal.per_unit_cpu_s == pytest.approx(0.01, rel=1e-3)


def test_recommend_takes_the_first_candidate_that_fits(tiny_bert_dir, text_data):
    from warmstart.backbones import get_backbone
    from warmstart.features import FeatureCache
    from warmstart.selection.recommend import recommend

    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache(enabled=False)
    few = text_data.subset(np.r_[0:8, 40:48, 80:88])  # 8 per class: the few-shot order
    free = recommend(few, bb, cache=cache, race=False)
    assert free.technique == "contrastive" and len(free.calibrations) == 1
    # a parameter limit that only a probe's head meets
    small = recommend(few, bb, max_params=500, cache=cache, race=False)
    assert small.technique == "probe"
    assert all("trainable params" in c.reason for c in small.calibrations[:-1])
    assert "probe is the first of contrastive" in small.explain()
    # a budget nothing fits
    none = recommend(few, bb, budget=0.001, candidates=["bitfit", "probe"], cache=cache, race=False)
    assert none.technique is None and "Nothing fits" in none.explain()
    assert [c.technique for c in none.calibrations] == ["bitfit", "probe"]


class _Rule:
    """A stand-in technique whose held-out accuracy is known: it reads the class from the row's text ("c2-17" is
    class c2) on a share ``skill`` of the rows, and answers the next class on the others."""

    def __init__(self, skill: float):
        self.skill = skill

    def fit(self, data):
        return self

    def predict(self, inputs):
        out = []
        for text in inputs:
            c, row = (int(x) for x in text[1:].split("-"))
            out.append(f"c{c if (7 * row) % 10 < 10 * self.skill else (c + 1) % 3}")
        return np.asarray(out)


def _rule_data(per_class: int = 12):
    from warmstart.data import Dataset

    texts = [f"c{c}-{i}" for c in range(3) for i in range(per_class)]
    return Dataset(texts, [t.split("-")[0] for t in texts], "text", "rules")


def _cal(name: str, predicted: float):
    from warmstart.selection.recommend import Calibration

    return Calibration(name, 10, 0.0, predicted / 10, 0.0, predicted, 1, 1.0, 0.0, fits=True)


def test_race_folds_are_stratified_and_need_two_rows_per_class():
    from warmstart.selection.race import race_folds

    data = _rule_data(5)
    folds = race_folds(data, 3)
    assert len(folds) == 3 and sorted(np.concatenate(folds).tolist()) == list(range(15))
    for f in folds:  # every class held out in every fold
        assert {data.labels[i] for i in f} == {"c0", "c1", "c2"}
    assert len(race_folds(_rule_data(2), 3)) == 2  # as many folds as the smallest class allows
    assert race_folds(_rule_data(1), 3) is None


def test_race_halves_the_field_and_the_measured_best_wins(monkeypatch):
    from warmstart.selection import race as race_mod

    skills = {"good": 0.9, "fair": 0.6, "poor": 0.1, "probe": 0.5}
    monkeypatch.setattr(race_mod, "get_technique", lambda name, **kw: _Rule(skills[name]))
    cals = [_cal("poor", 5), _cal("good", 30), _cal("fair", 20), _cal("probe", 1)]
    r = race_mod.run_race(_rule_data(), None, cals, budget_left=None, params={}, metric="accuracy")
    assert r.winner == "good" and r.folds == 3
    by_round = [sorted(h.technique for h in r.heats if h.fold == i) for i in range(3)]
    # four start, cheapest first; the better half (two) goes on, and two stay to the last fold
    assert [h.technique for h in r.heats if h.fold == 0] == ["probe", "poor", "fair", "good"]
    assert by_round[1] == by_round[2] == ["fair", "good"]
    assert "out after round 1" in r.dropped["poor"] and "out after round 1" in r.dropped["probe"]
    assert r.reason.startswith("good had the best mean held-out accuracy") and "3 of 3 folds" in r.reason


def test_race_overrules_the_order_only_on_clear_evidence(monkeypatch):
    from warmstart.selection import race as race_mod

    monkeypatch.setattr(race_mod, "get_technique", lambda name, **kw: _Rule({"fav": 0.7, "rival": 0.8}[name]))
    cals = [_cal("fav", 10), _cal("rival", 10)]  # fav is the order's first choice
    # 5 rows per class: the rival is right on 3 rows more (one per class), a sign test p of 1/8
    r = race_mod.run_race(_rule_data(5), None, cals, budget_left=None, params={}, metric="accuracy")
    assert r.mean_scores()["rival"] > r.mean_scores()["fav"]
    assert r.winner == "fav" and "which stays" in r.reason and "3 of the 15" in r.reason
    # 12 rows per class: 6 rows more, none fewer (p = 1/64): clear enough
    r = race_mod.run_race(_rule_data(12), None, cals, budget_left=None, params={}, metric="accuracy")
    assert r.winner == "rival" and "so it replaces fav" in r.reason


def test_race_keeps_the_winners_full_fit_inside_the_budget(monkeypatch):
    from warmstart.selection import race as race_mod

    skills = {"dear": 0.9, "cheap": 0.6, "probe": 0.5}
    monkeypatch.setattr(race_mod, "get_technique", lambda name, **kw: _Rule(skills[name]))
    cals = [_cal("dear", 100), _cal("cheap", 10), _cal("probe", 1)]
    # 100 s could pay for dear's full fit, but not for a heat of it as well: it must leave the race
    r = race_mod.run_race(_rule_data(), None, cals, budget_left=100, params={}, metric="accuracy")
    assert r.winner == "cheap" and "dear" not in {h.technique for h in r.heats}
    assert "no longer fit" in r.dropped["dear"]
    r = race_mod.run_race(_rule_data(), None, cals, budget_left=1000, params={}, metric="accuracy")
    assert r.winner == "dear"


def test_recommend_races_the_contenders_and_records_why(tiny_bert_dir, text_data):
    from warmstart.backbones import get_backbone
    from warmstart.features import FeatureCache
    from warmstart.selection.recommend import Recommendation, recommend

    bb = get_backbone(str(tiny_bert_dir))
    few = text_data.subset(np.r_[0:8, 40:48, 80:88])
    rec = recommend(few, bb, candidates=["bitfit", "probe"], cache=FeatureCache(enabled=False))
    assert rec.race is not None and rec.technique == rec.race.winner
    assert {h.technique for h in rec.race.heats} == {"bitfit", "probe"}
    assert "won a race of" in rec.explain() and "fold 1" in rec.table()
    back = Recommendation.from_dict(rec.to_dict())  # as a run's config stores it
    assert back.race.heats == rec.race.heats and back.explain() == rec.explain()


def test_fit_auto_records_its_choice(tiny_bert_dir, text_data, text_test):
    from warmstart.run import fit_run

    r = fit_run(text_data, test=text_test, backbone=str(tiny_bert_dir), technique="auto", max_params=500)
    choice = r.config["technique_choice"]
    assert choice["technique"] == "probe" == r.config["technique"]
    assert [c["technique"] for c in choice["calibrations"]][-1] == "probe"
    assert r.metrics["accuracy"] > 0.5


def test_rank_says_how_the_top_pick_compares_with_picking_the_largest(tmp_path):
    import dataclasses

    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    cache = FeatureCache(tmp_path)
    big_weak, small_strong = TableBackbone("big-weak", 0.02, dim=40), TableBackbone("small-strong", 1.5)
    r = rank_backbones(table_data(), [big_weak, small_strong], cache=cache, resamples=5, progress=False)
    assert [c.backbone for c in r.candidates] == ["small-strong", "big-weak"]
    assert r.beats_largest_share == 1.0 and r.to_dict()["beats_largest_share"] == 1.0
    text = r.explain()
    assert "Picking the largest instead would give big-weak" in text and "the scores separate them" in text
    # the top pick is the largest: nothing to beat
    r2 = rank_backbones(
        table_data(),
        [TableBackbone("big-strong", 1.5, dim=40), small_strong],
        cache=cache,
        resamples=5,
        progress=False,
    )
    assert r2.beats_largest_share is None and "also the largest candidate" in r2.explain()
    # scores that do not separate the two say so plainly
    coin = dataclasses.replace(r, beats_largest_share=0.5)
    assert "no more than picking the largest" in coin.explain()


# -- the metric the accuracy-like scores estimate --------------------------------------------------------------
def test_prediction_score_macro_f1_is_sklearns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = rng.choice(3, 200, p=[0.8, 0.15, 0.05])
    pred = np.where(rng.random(200) < 0.3, rng.integers(0, 3, 200), y)
    pred[pred == 2] = 0  # class 2 never predicted: its F1 is 0 and still counts
    want = f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0)
    assert scores.prediction_score(pred, y, "macro_f1") == pytest.approx(want)
    assert scores.prediction_score(pred, y) == pytest.approx((pred == y).mean())


@pytest.mark.parametrize("name", ["knn", "ridge_loo", "probe_cv"])
def test_accuracy_like_scores_estimate_macro_f1_on_request(name):
    # features without class signal and 90% of rows in one class: predicting the large class everywhere is
    # 90% accurate, but its macro-F1 is under 0.5
    rng = np.random.default_rng(1)
    y = np.array([0] * 180 + [1] * 20)
    X = rng.normal(size=(200, 5))
    fn = scores.FEATURE_SCORES[name]
    assert fn(X, y) > 0.8
    assert fn(X, y, metric="macro_f1") < 0.6


def test_rank_uses_macro_f1_on_imbalanced_data_and_says_so(tmp_path):
    from warmstart.data import Dataset
    from warmstart.features import FeatureCache
    from warmstart.selection import rank_backbones

    texts = [f"{w} row {i}" for w, n in (("alpha", 60), ("beta", 12), ("gamma", 12)) for i in range(n)]
    data = Dataset(texts, [t.split()[0] for t in texts], "text", "imbalanced")
    bb = TableBackbone("weakish", 0.3)
    cache = FeatureCache(tmp_path)
    # every row (alpha has 60), so the scores can be recomputed from the cached features below
    r = rank_backbones(data, [bb], cache=cache, resamples=0, progress=False, max_per_class=None)
    assert r.metric == "macro_f1" and r.to_dict()["metric"] == "macro_f1"
    assert "estimate macro-F1 here" in r.explain() and "--metric accuracy" in r.explain()
    X = np.asarray(cache.get(bb, data), dtype=np.float64)
    from warmstart.techniques.base import encode_labels

    y = encode_labels(data.labels, np.array(["alpha", "beta", "gamma"]))
    for name in ("knn", "ridge_loo", "probe_cv"):
        want = scores.FEATURE_SCORES[name](X, y, metric="macro_f1")
        assert r.candidates[0].scores[name] == pytest.approx(want)
    assert r.candidates[0].scores["knn"] != pytest.approx(scores.knn_loo(X, y))
    # the default sample of at most 16 rows of each class is balanced; the metric follows the data's counts
    capped = rank_backbones(data, [bb], cache=cache, resamples=0, progress=False)
    assert capped.rows == 16 + 12 + 12 and capped.metric == "macro_f1"
    # asked for accuracy, or told the full set is balanced: accuracy, and nothing said
    for kwargs in ({"metric": "accuracy"}, {"class_counts": {"alpha": 10, "beta": 9, "gamma": 10}}):
        r2 = rank_backbones(
            data, [bb], cache=cache, resamples=0, progress=False, max_per_class=None, **kwargs
        )
        assert r2.metric == "accuracy" and "macro-F1" not in r2.explain()
        assert r2.candidates[0].scores["knn"] == pytest.approx(scores.knn_loo(X, y))


def test_sfda_discriminant_is_shrunk_lda_and_its_shrinkage_follows_the_largest_within_class_eigenvalue():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = blobs(spread=6.0)
    keep = (y != 2) | (np.arange(len(y)) < 60)  # unequal classes, so the priors count
    X, y = X[keep], y[keep]
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.3).fit(X, y)
    P, used, _ = scores._sfda_proba(X, y, 3, 0.3)
    assert used == 0.3
    assert 0.05 < P.max(1).min() < 0.9  # not saturated: a wrong covariance or prior would show
    np.testing.assert_allclose(P, lda.predict_proba(X), atol=1e-8)
    X, y = blobs(spread=0.3)  # small within-class spread: a shrinkage well above the 1e-10 floor
    auto = scores._sfda_proba(X, y, 3, "paper")[1]
    R = X - np.stack([X[y == c].mean(0) for c in range(3)])[y]
    assert 0.01 < auto == pytest.approx(np.exp(-5 * np.linalg.eigvalsh(R.T @ R / len(X))[-1]), rel=1e-3)


def test_sfda_challenges_the_doubtful_rows_and_prefers_separable_features(monkeypatch):
    X, y = blobs(spread=1.0)
    P = scores._sfda_proba(X, y, 3, "paper")[0]
    plain = P[np.arange(len(y)), y].mean()
    assert scores.sfda(X, y) < plain  # pulling rows towards the other classes costs confidence
    noise = np.random.default_rng(1).normal(size=X.shape)
    assert scores.sfda(X, y) > scores.sfda(noise, y) + 0.1
    # the second fit keeps the first one's shrinkage, as in the paper
    calls = []
    real = scores._sfda_proba
    monkeypatch.setattr(
        scores,
        "_sfda_proba",
        lambda *a: calls.append(a[3]) or real(*a),  # noqa: B023
    )
    scores.sfda(X, y, shrinkage="ledoit_wolf")
    assert calls[0] == "ledoit_wolf" and calls[1] == real(X, y, 3, "ledoit_wolf")[1]
    monkeypatch.undo()
    # classes numbered with a gap (2 absent) score as numbered densely
    assert scores.sfda(X, np.where(y == 2, 3, y)) == pytest.approx(scores.sfda(X, y))


def test_sfda_lw_does_not_separate_noise_with_fewer_rows_than_dimensions():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    noise = rng.normal(size=(60, 200))
    assert scores.sfda(noise, y) > 0.99  # the paper's shrinkage: about 0 at this scale, every row separated
    assert scores._sfda_proba(noise, y, 3, "paper")[1] == 1e-10  # its floor
    used = scores._sfda_proba(noise, y, 3, "ledoit_wolf")[1]
    assert used > 0.5
    assert scores.sfda_lw(noise, y) < 0.9  # in-sample, each row still pulls its own class's mean towards it
    X, _ = blobs(n=60, d=200, spread=1.0)
    assert scores.sfda_lw(X, y) > scores.sfda_lw(noise, y) + 0.1
    with pytest.raises(ParameterError, match="shrinkage"):
        scores.sfda(X, y, shrinkage=2.0)
