"""warmstart techniques through scikit-learn's public API only: clone, set_params, Pipeline, GridSearchCV,
cross_val_score, and scikit-learn's own API checks.

The techniques read raw texts or images, so scikit-learn's checks that feed a numeric 2-D array cannot apply;
``NUMERIC_ONLY`` names each and says why, and every other API check runs on every registered technique.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks as checks

from warmstart.techniques import available_techniques, get_technique

from .conftest import make_sentences

FAST = {"epochs": 1, "min_steps": 0, "progress": False, "batch_size": 8}

# scikit-learn API checks that run on every technique as they are
API_CHECKS = (
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_valid_tag_types",
    "check_estimator_tags_renamed",
)
# the checks scikit-learn yields for a classifier that feed fit/predict a numeric 2-D array (random floats,
# NaN, sparse matrices, memmaps); a technique's backbone reads texts or images, so these cannot apply. The
# behaviour they stand for is tested on real inputs below (fit returns self, refits rebuild state, unfitted
# predict raises NotFittedError, score takes y, parameters are never changed by fit).
NUMERIC_ONLY = (
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_estimators_unfitted",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
)


def test_the_checks_named_here_are_every_api_check_scikit_learn_has():
    """If scikit-learn adds an API check, this fails until it is run here or its skip is explained."""
    yielded = {c.__name__ for c in checks._yield_api_checks(get_technique("probe"))}
    assert yielded <= set(API_CHECKS) | set(NUMERIC_ONLY)
    assert all(hasattr(checks, name) for name in API_CHECKS + NUMERIC_ONLY)


@pytest.mark.parametrize("name", sorted(available_techniques()))
@pytest.mark.parametrize("check", API_CHECKS)
def test_scikit_learn_api_checks(name, check):
    getattr(checks, check)(name, get_technique(name))


def _texts(n=12, seed=0):
    return make_sentences(n, seed=seed)


@pytest.fixture
def probe(tiny_bert_dir):
    return get_technique("probe", backbone=str(tiny_bert_dir), progress=False)


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(probe):
    texts, labels = _texts()
    probe.set_params(C=0.5).fit(texts, labels)
    copy = clone(probe)
    assert copy.get_params() == probe.get_params()
    assert not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        copy.predict(texts[:2])


def test_get_params_deep_and_set_params(probe):
    assert probe.get_params(deep=True) == probe.get_params(deep=False)
    assert probe.set_params(C=0.1, max_iter=50) is probe
    assert (probe.C, probe.max_iter) == (0.1, 50)
    with pytest.raises(ValueError, match="has no parameter 'Cee'"):
        probe.set_params(Cee=1)


def test_set_params_backbone_then_fit_uses_the_new_backbone(tiny_bert_dir, tiny_bert_dir_b):
    texts, labels = _texts()
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(texts, labels)
    first = est.backbone_.fingerprint()
    est.set_params(backbone=str(tiny_bert_dir_b)).fit(texts, labels)
    assert est.backbone_.fingerprint() != first
    fresh = get_technique("probe", backbone=str(tiny_bert_dir_b), progress=False).fit(texts, labels)
    np.testing.assert_allclose(est.predict_proba(texts), fresh.predict_proba(texts), atol=1e-6)


def test_refit_rebuilds_every_fitted_attribute(tiny_bert_dir):
    texts, labels = _texts()
    est = get_technique("finetune", backbone=str(tiny_bert_dir), **FAST).fit(texts, labels)
    est.leftover_ = "from an earlier fit"
    two = [i for i, lab in enumerate(labels) if lab != "food"]
    est.fit([texts[i] for i in two], [labels[i] for i in two])
    assert list(est.classes_) == ["sports", "tech"]
    assert not hasattr(est, "leftover_")
    assert est.predict_proba(texts[:3]).shape == (3, 2)


def test_score_is_accuracy(probe):
    texts, labels = _texts()
    probe.fit(texts, labels)
    pred = probe.predict(texts)
    assert probe.score(texts, labels) == pytest.approx(np.mean(pred == np.array(labels)))
    weights = np.arange(len(texts), dtype=float)
    assert probe.score(texts, labels, sample_weight=weights) == pytest.approx(
        np.average(pred == np.array(labels), weights=weights)
    )


def test_pipeline_gridsearch_and_cross_val_score(probe):
    texts, labels = _texts(10)
    pipe = make_pipeline(FunctionTransformer(lambda xs: [x.upper() for x in xs]), probe)
    assert pipe.fit(texts, labels).predict(texts[:4]).shape == (4,)
    assert 0.0 <= pipe.score(texts, labels) <= 1.0

    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(probe, {"C": [0.01, 1.0]}, cv=cv).fit(texts, labels)
    assert search.best_params_["C"] in (0.01, 1.0)
    assert search.best_estimator_.C == search.best_params_["C"]
    assert search.cv_results_["mean_test_score"].shape == (2,)

    scores = cross_val_score(probe, texts, labels, cv=cv)
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))


def test_integer_labels_come_back_as_integers_and_survive_an_artifact(probe, tmp_path):
    from warmstart.artifact import load_artifact, save_artifact

    texts, labels = _texts()
    y = np.array([["sports", "tech", "food"].index(lab) for lab in labels])
    probe.fit(texts, y)
    assert probe.classes_.tolist() == [0, 1, 2]
    pred = probe.predict(texts)
    assert pred.dtype.kind == "i"
    assert cross_val_score(clone(probe), texts, y, cv=3).min() >= 0  # scores compare ints with ints
    save_artifact(probe, tmp_path / "a")
    back = load_artifact(tmp_path / "a")
    assert back.predict(texts).tolist() == pred.tolist()


def test_a_dataset_as_y_is_refused_with_the_val_keyword(probe, text_data, text_test):
    with pytest.raises(ValueError, match=r"fit\(train, val=\.\.\.\)"):
        probe.fit(text_data, text_test)
    probe.fit(text_data, val=text_test)  # the keyword works
    probe.fit(text_data, val=(text_test.inputs, text_test.labels))  # so does a pair
    assert probe.C_ in (0.01, 0.1, 1.0, 10.0)
