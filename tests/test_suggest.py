"""Label suggestions (warmstart.selection.suggest) and `warmstart suggest`: uncertainty, diversity, class balance,
deduplication, labelled rows left out, and the command on a fitted artifact."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_sentences
from warmstart.cli import main
from warmstart.errors import ParameterError
from warmstart.selection.suggest import first_of_each, suggest_rows, uncertainty


def test_uncertainty_by_margin_and_entropy():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
    assert uncertainty(p).tolist() == pytest.approx([0.0, 1.0, 1.0, 0.7])
    assert uncertainty(p, "entropy").tolist() == pytest.approx(
        [0.0, np.log(2) / np.log(3), 1.0, 0.8173], abs=1e-4
    )
    with pytest.raises(ParameterError):
        uncertainty(np.ones((3, 1)))


def _clusters(n_per: int = 20, seed: int = 0) -> np.ndarray:
    """Three tight clusters of rows in 3-d, cluster i along axis i."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.eye(3)[i] + rng.normal(0, 0.01, (n_per, 3)) for i in range(3)])


def test_kcenter_takes_one_row_from_each_cluster_first():
    feats = _clusters()
    picked = suggest_rows(np.full((60, 2), 0.5), feats, 3, strategy="kcenter")
    assert sorted(int(i) // 20 for i in picked) == [0, 1, 2]


def test_margin_takes_the_least_sure_rows_in_order():
    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    assert suggest_rows(proba, np.eye(4), 3, strategy="margin").tolist() == [3, 1, 2]


def test_mixed_prefers_uncertain_rows_but_not_near_copies():
    feats = _clusters(5)  # 15 rows: all among the 10 x n most uncertain candidates
    proba = np.tile([0.9, 0.1], (15, 1))
    proba[:5] = [0.52, 0.48]  # cluster 0: the most uncertain...
    proba[5:10] = [0.6, 0.4]  # ...cluster 1 next; cluster 2 is sure
    picked = suggest_rows(proba, feats, 2)
    # one of each uncertain cluster, not two near-copies; the most uncertain first
    assert [int(i) // 5 for i in picked] == [0, 1]
    margin = suggest_rows(proba, feats, 2, strategy="margin")
    assert [int(i) // 5 for i in margin] == [0, 0]
    three = suggest_rows(proba, feats, 3)
    assert [int(i) // 5 for i in three] == [0, 1, 2]


def test_mixed_takes_typical_rows_not_outliers():
    rng = np.random.default_rng(0)
    feats = np.concatenate(
        [np.eye(3)[0] + rng.normal(0, 0.05, (30, 3)), [[0.2, 1.0, 0.0]]]
    )  # row 30: an outlier
    proba = np.full((31, 2), 0.5)
    picked = suggest_rows(proba, feats, 1)
    assert picked.tolist() != [30]


def test_labelled_rows_steer_diversity_away():
    feats = _clusters()
    proba = np.full((60, 2), 0.5)
    labelled = feats[:5] + 0.001  # cluster 0 is already labelled
    picked = suggest_rows(proba, feats, 2, strategy="kcenter", labeled_features=labelled)
    assert sorted(int(i) // 20 for i in picked) == [1, 2]


def test_typical_takes_the_dense_core_of_each_uncovered_cluster():
    rng = np.random.default_rng(0)
    # three clusters; each has a dense core (rows 0-14 of it) and a loose fringe (rows 15-19)
    feats = np.concatenate(
        [
            np.eye(3)[i] + np.concatenate([rng.normal(0, 0.01, (15, 3)), rng.normal(0, 0.25, (5, 3))])
            for i in range(3)
        ]
    )
    proba = np.full((60, 2), 0.5)  # typical ignores the model's probabilities
    picked = suggest_rows(proba, feats, 3, strategy="typical")
    assert sorted(int(i) // 20 for i in picked) == [0, 1, 2]
    assert all(int(i) % 20 < 15 for i in picked)  # from the core, not the fringe
    # cluster 0 already labelled: the two picks come from the others
    two = suggest_rows(proba, feats, 2, strategy="typical", labeled_features=feats[:3] + 0.001)
    assert sorted(int(i) // 20 for i in two) == [1, 2]
    # a large cluster (many rows: the neighbour reference is a sample of it) still gives its core
    from warmstart.selection import suggest

    big = np.concatenate([feats, np.eye(3)[0] + rng.normal(0, 0.01, (2500, 3))])
    one = suggest._density(suggest._unit(big[np.r_[0:20, 60:2560]]), np.random.default_rng(0))
    assert one[:15].min() > one[15:20].max()


def test_typical_clusters_in_whitened_components_not_the_loudest_direction():
    # five tight groups in five quiet dimensions, and one loud direction (100x the spread) that carries no group
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(5), 60)
    feats = np.c_[rng.normal(0, 100, len(group)), np.eye(5)[group] + rng.normal(0, 0.05, (len(group), 5))]
    picked = suggest_rows(np.full((len(group), 2), 0.5), feats + 500, 5, strategy="typical")
    assert sorted(group[picked].tolist()) == [0, 1, 2, 3, 4]  # one row of each group


def test_coverage_takes_each_clusters_dense_core_and_skips_covered_ones():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 3
    sizes = [80, 40, 40, 40]
    feats = np.concatenate([c + rng.normal(0, 0.3, (k, 4)) for c, k in zip(centres, sizes, strict=True)])
    group = np.repeat(np.arange(4), sizes)
    proba = np.full((len(feats), 2), 0.5)  # coverage ignores the model's probabilities
    picked = suggest_rows(proba, feats, 4, strategy="coverage")
    assert sorted(group[picked].tolist()) == [0, 1, 2, 3]
    # the first pick is a central row of a cluster, not an outlier
    first = int(picked[0])
    own = feats[group == group[first]]
    assert np.linalg.norm(feats[first] - own.mean(0)) < np.median(np.linalg.norm(own - own.mean(0), axis=1))
    # labelled rows in clusters 0 and 1 cover them: the next two picks go to clusters 2 and 3
    two = suggest_rows(proba, feats, 2, strategy="coverage", labeled_features=feats[[0, 1, 80, 81]])
    assert sorted(group[two].tolist()) == [2, 3]


def test_coverage_picks_what_exact_greedy_picks(monkeypatch):
    from warmstart.selection import suggest

    rng = np.random.default_rng(1)
    feats = np.concatenate([rng.normal(0, 1, (60, 8)) + rng.normal(0, 4, 8) for _ in range(6)])
    labeled = feats[:5] + 0.01
    got = suggest._coverage(feats, 12, labeled, seed=3)
    # exact greedy, every row re-measured at every step, on the same kernel
    x, lab = suggest.whitened(feats, labeled, 3)
    x, lab = suggest._unit(x), suggest._unit(lab)
    rng = np.random.default_rng(3)
    sample = x[rng.choice(len(x), min(500, len(x)), replace=False)]

    def sq_dist(a, b):
        return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(axis=-1)

    width = 2 * suggest.COVERAGE_WIDTH * np.median(sq_dist(sample, sample))
    k = np.exp(-sq_dist(x, x) / width)
    covered = np.exp(-sq_dist(x, lab) / width).max(axis=1)
    want = []
    for _ in range(12):
        gain = np.maximum(k - covered[:, None], 0).sum(axis=0)
        gain[want] = -1
        want.append(int(np.argmax(gain)))
        covered = np.maximum(covered, k[:, want[-1]])
    assert got.tolist() == want
    # re-measured a few rows at a time, the lazy bookkeeping must still find the same rows
    monkeypatch.setattr(suggest, "COVERAGE_BLOCK", 3)
    monkeypatch.setattr(suggest, "COVERAGE_BLOCKS", 10_000)
    assert suggest._coverage(feats, 12, labeled, seed=3).tolist() == want
    # with tiny blocks and one block per pick, it still returns distinct rows, the first one exact
    monkeypatch.setattr(suggest, "COVERAGE_BLOCK", 2)
    monkeypatch.setattr(suggest, "COVERAGE_BLOCKS", 1)
    capped = suggest._coverage(feats, 12, labeled, seed=3)
    assert len(set(capped.tolist())) == 12 and capped[0] == want[0]


def test_auto_strategy_is_coverage_for_images_and_text():
    from warmstart.data import Dataset
    from warmstart.selection.suggest import resolve_strategy, suggest_table

    feats = _clusters()
    proba = np.tile([0.9, 0.1], (60, 1))
    proba[::7] = [0.5, 0.5]  # uncertain rows spread over the clusters: mixed and typical pick apart

    class Model:  # what suggest_table needs of a fitted model
        classes_ = np.array(["a", "b"])

        def predict_proba(self, data):
            return proba

        def features(self, data):
            return feats if len(data) == 60 else labelled_feats

    for modality, rows in (
        ("image", [f"img{i}.png" for i in range(60)]),
        ("text", [f"t{i}" for i in range(60)]),
    ):
        data = Dataset(rows, None, modality, "pool")
        want = suggest_rows(proba, feats, 3, strategy=resolve_strategy("auto", modality), keys=rows)
        assert suggest_table(Model(), data, 3)["row"].tolist() == want.tolist()
    # labelled rows (elsewhere, in clusters 0 and 1): coverage places its picks against their features
    rows = [f"img{i}.png" for i in range(60)]
    labelled_feats = feats[[0, 1, 20, 21]] + 0.001
    labelled = Dataset(["l0.png", "l1.png", "l2.png", "l3.png"], None, "image", "labelled")
    table = suggest_table(Model(), Dataset(rows, None, "image", "pool"), 1, labeled=labelled)
    assert table["row"].tolist()[0] // 20 == 2
    assert resolve_strategy("auto", "image") == "coverage" and resolve_strategy("auto", "text") == "coverage"
    with pytest.raises(ParameterError, match="auto or one of"):
        resolve_strategy("best", "text")


def test_duplicates_and_labelled_rows_are_never_suggested():
    keys = ["a", "b", "a", "c", "d", "b"]
    assert first_of_each(keys, {"c"}).tolist() == [0, 1, 4]
    proba = np.tile([0.5, 0.5], (6, 1))
    for strategy in ("mixed", "margin", "entropy", "kcenter", "typical", "coverage", "random"):
        picked = suggest_rows(proba, np.eye(6), 10, strategy=strategy, keys=keys, labeled_keys=["c"])
        assert sorted(picked.tolist()) == [0, 1, 4], strategy


def test_random_is_seeded_and_distinct():
    proba, feats = np.full((50, 2), 0.5), np.eye(50)
    a = suggest_rows(proba, feats, 10, strategy="random", seed=1)
    assert len(set(a.tolist())) == 10
    assert a.tolist() == suggest_rows(proba, feats, 10, strategy="random", seed=1).tolist()
    assert a.tolist() != suggest_rows(proba, feats, 10, strategy="random", seed=2).tolist()


def test_bad_arguments_are_refused():
    with pytest.raises(ParameterError, match="strategy"):
        suggest_rows(np.full((3, 2), 0.5), np.eye(3), 1, strategy="best")
    with pytest.raises(ParameterError, match="3 rows of probabilities but 2"):
        suggest_rows(np.full((3, 2), 0.5), np.eye(2), 1)
    with pytest.raises(ParameterError, match="at least 1"):
        suggest_rows(np.full((3, 2), 0.5), np.eye(3), 0)


def test_cli_suggest_writes_a_table_to_label(tmp_path, tiny_bert_dir, capsys):
    tr, trl = make_sentences(8, seed=0)
    pd.DataFrame({"text": tr, "label": trl}).to_csv(tmp_path / "train.csv", index=False)
    new, _ = make_sentences(10, seed=5)
    new = new + tr[:3] + new[:2]  # three already labelled and two duplicates
    pd.DataFrame({"text": new}).to_csv(tmp_path / "new.csv", index=False)
    art = tmp_path / "art"
    fit = ["fit", "--data", str(tmp_path / "train.csv"), "--backbone", str(tiny_bert_dir)]
    assert main([*fit, "--technique", "probe", "--test-size", "0.25", "-o", str(art)]) == 0
    out = tmp_path / "to_label.csv"
    assert main(["suggest", str(art), str(tmp_path / "new.csv"), "--n", "100", "-o", str(out)]) == 0
    msg = capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["rank", "row", "text", "predicted", "confidence", "uncertainty", "label"]
    fitted_on = {tr[i] for i in json.loads((art / "splits.json").read_text())["train"]}
    labelled = [t for t in tr[:3] if t in fitted_on]  # the rows among the three that the model was fitted on
    assert labelled and not set(table["text"]) & set(labelled)
    assert table["text"].is_unique and len(table) == len(set(new) - set(labelled))
    assert table["rank"].tolist() == list(range(1, len(table) + 1)) and (table["label"] == "").all()
    assert all(table["text"][i] == new[r] for i, r in enumerate(table["row"]))
    assert "labelled rows left out" in msg and "(coverage," in msg  # auto: coverage for text
    assert (
        main(
            ["suggest", str(art), str(tmp_path / "new.csv"), "--n", "4", "--labeled", "none", "-o", str(out)]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 4
    assert (
        main(
            [
                "suggest",
                str(art),
                str(tmp_path / "new.csv"),
                "--strategy",
                "margin",
                "--n",
                "5",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    margin = pd.read_csv(out)
    assert margin["uncertainty"].is_monotonic_decreasing
    capsys.readouterr()
    assert main(["suggest", str(art), str(tmp_path / "new.csv"), "--n", "0", "-o", str(out)]) == 2
    assert "--n takes the number of rows to suggest, at least 1; got 0" in capsys.readouterr().err
