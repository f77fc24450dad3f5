"""Cross-validation folds in worker processes (parallel.fold_map): the same results as one after another, the
worker count from the environment or torch's threads, and the TF-IDF baseline still scikit-learn's grid search."""

import os

import numpy as np
import pytest

from warmstart import parallel
from warmstart.errors import ParameterError


def pid_of(_job):
    return os.getpid()


@pytest.fixture
def two_workers(monkeypatch):
    """Workers for any amount of work (the tiny test data sets are far under MIN_WORK)."""
    monkeypatch.setattr(parallel, "MIN_WORK", 0)
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")


def test_folds_run_in_workers_only_when_there_is_work_and_more_than_one_worker(monkeypatch):
    monkeypatch.setenv(parallel.WORKERS_ENV, "2")
    assert set(parallel.fold_map(pid_of, [0, 1], work=parallel.MIN_WORK - 1)) == {os.getpid()}
    pids = parallel.fold_map(pid_of, [0, 1, 2], work=parallel.MIN_WORK)
    assert len(pids) == 3 and os.getpid() not in pids
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    assert set(parallel.fold_map(pid_of, [0, 1], work=parallel.MIN_WORK)) == {os.getpid()}


def test_the_worker_count_follows_the_environment_then_torchs_threads(monkeypatch):
    import torch

    monkeypatch.setenv(parallel.WORKERS_ENV, "3")
    assert parallel.fit_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(parallel.WORKERS_ENV, bad)
        with pytest.raises(ParameterError, match=parallel.WORKERS_ENV):
            parallel.fit_workers()
    monkeypatch.delenv(parallel.WORKERS_ENV)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as the benchmarks' --threads 1 does: one core for the whole run
        assert parallel.fit_workers() == 1
    finally:
        torch.set_num_threads(before)


def test_probe_with_words_chooses_and_calibrates_the_same_with_folds_in_workers(
    tiny_bert_dir, text_data, text_test, two_workers, monkeypatch
):
    from warmstart.techniques import get_technique

    def fit():
        return get_technique("probe", backbone=str(tiny_bert_dir), lexical="tfidf", progress=False).fit(
            text_data
        )

    calls = []
    real = parallel.fold_map
    monkeypatch.setattr(
        parallel, "fold_map", lambda fn, jobs, work: calls.append(fn.__name__) or real(fn, jobs, work)
    )
    in_workers = fit()
    assert calls == ["score_fold", "fold_logits"]
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    here = fit()
    assert in_workers.c_scores_ == here.c_scores_ and len(here.c_scores_) == 12
    assert in_workers.temperature_ == here.temperature_ and here.temperature_from_ == "cross-validation"
    np.testing.assert_allclose(
        in_workers.predict_proba(text_test.inputs), here.predict_proba(text_test.inputs)
    )


def test_tfidf_baseline_is_scikit_learns_grid_search_in_workers_or_not(
    text_data, text_test, two_workers, monkeypatch
):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from warmstart.baselines import tfidf_logreg

    folds = min(5, int(np.unique(text_data.labels, return_counts=True)[1].min()))
    ref = GridSearchCV(
        make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=2000)),
        {"logisticregression__C": [1.0, 10.0, 100.0]},
        cv=StratifiedKFold(folds, shuffle=True, random_state=3),
    ).fit(list(text_data.inputs), text_data.labels)
    want = ref.predict(list(text_test.inputs))
    in_workers = tfidf_logreg(text_data, text_test, seed=3)
    monkeypatch.setenv(parallel.WORKERS_ENV, "1")
    here = tfidf_logreg(text_data, text_test, seed=3)
    expected = float(np.mean(want == np.asarray(text_test.labels)))
    assert in_workers["accuracy"] == here["accuracy"] == pytest.approx(expected)
    from warmstart.baselines import fit_tfidf_logreg

    fitted = fit_tfidf_logreg(
        text_data, seed=3
    )  # the fitted model itself: the same predictions as the pipeline
    np.testing.assert_array_equal(fitted.predict(text_test.inputs), want)
    proba = fitted.predict_proba(list(text_test.inputs))
    np.testing.assert_array_equal(fitted.classes_[proba.argmax(1)], want)
    np.testing.assert_allclose(proba, ref.predict_proba(list(text_test.inputs)), atol=1e-6)
