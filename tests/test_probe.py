import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from warmstart.backbones import get_backbone
from warmstart.data import Dataset, from_arrays
from warmstart.errors import ParameterError
from warmstart.techniques import LinearProbe, available_techniques, get_technique


def test_probe_is_registered_and_unknown_technique_suggests():
    assert available_techniques()["probe"] is LinearProbe
    with pytest.raises(ParameterError, match="unknown technique 'prob'. Did you mean 'probe'"):
        get_technique("prob")


def test_init_stores_params_only_and_get_params_reads_signature(tiny_bert_dir):
    est = LinearProbe(str(tiny_bert_dir), C=0.5)
    assert not hasattr(est, "backbone_") and not hasattr(est, "classes_")
    assert est.get_params()["C"] == 0.5 and set(est.get_params()) >= {
        "backbone",
        "C",
        "max_iter",
        "device",
        "precision",
    }
    est.set_params(C=2.0)
    assert est.C == 2.0
    with pytest.raises(ParameterError, match="has no parameter 'lr'"):
        est.set_params(lr=1)


@pytest.mark.parametrize(
    "bad, msg",
    [
        (
            {"C": -1},
            r"The 'C' parameter of LinearProbe must be a float in \(0, inf\) or 'auto'. Got -1 instead.",
        ),
        ({"C": "best"}, r"'C' parameter of LinearProbe must be .* Got 'best' instead"),
        ({"max_iter": 0}, r"'max_iter' parameter of LinearProbe must be an int in \[1, inf\)"),
        (
            {"precision": "fp8"},
            r"'precision' parameter of LinearProbe must be 'auto' or 'fp32' or 'bf16' or 'fp16'. Got 'fp8'",
        ),
    ],
)
def test_bad_params_raise_readable_errors(tiny_bert_dir, text_data, bad, msg):
    with pytest.raises(ParameterError, match=msg):
        LinearProbe(str(tiny_bert_dir), **bad).fit(text_data)


def test_fit_predict_learns_synthetic_topics(tiny_bert_dir, text_data, text_test):
    est = LinearProbe(str(tiny_bert_dir), progress=False)
    assert est.fit(text_data) is est
    proba = est.predict_proba(text_test)
    assert proba.shape == (len(text_test), 3)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    acc = (est.predict(text_test) == np.array(text_test.labels)).mean()
    assert acc >= 0.8, acc  # chance is 1/3; random tiny BERT features are noisy
    assert est.C_ in (0.01, 0.1, 1.0, 10.0) and est.c_scores_
    assert list(est.predict(["the ball and the goal"])) == ["sports"]


def test_probe_probabilities_equal_sklearn_binary_and_multiclass(tiny_bert_dir, text_data):
    for keep in (["sports", "tech"], ["sports", "tech", "food"]):
        idx = [i for i, lab in enumerate(text_data.labels) if lab in keep]
        ds = text_data.subset(idx)
        # calibrate="none": the head alone (the temperature's own tests are in test_calibrate.py)
        est = LinearProbe(str(tiny_bert_dir), C=1.0, progress=False, calibrate="none").fit(ds)
        X = est.features(ds).astype(np.float64)
        Z = (X - X.mean(0)) / X.std(0)
        ref = LogisticRegression(C=1.0, max_iter=2000).fit(
            Z, [list(est.classes_).index(y) for y in ds.labels]
        )
        np.testing.assert_allclose(est.predict_proba(ds), ref.predict_proba(Z), atol=1e-4)


def test_validation_set_chooses_C(tiny_bert_dir, text_data, text_test):
    est = LinearProbe(str(tiny_bert_dir), progress=False).fit(text_data, val=text_test)
    assert set(est.c_scores_) == {"0.01", "0.1", "1.0", "10.0"}
    assert est.c_scores_[str(est.C_)] == max(est.c_scores_.values())


def test_single_example_per_class_still_fits(tiny_bert_dir):
    ds = Dataset(["ball goal", "code chip"], ["sports", "tech"], "text")
    est = LinearProbe(str(tiny_bert_dir), progress=False).fit(ds)
    assert est.C_ == 1.0 and list(est.predict(["ball goal"])) == ["sports"]


def test_predict_before_fit_is_explained(tiny_bert_dir):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        LinearProbe(str(tiny_bert_dir)).predict(["x"])


def test_image_probe(tiny_image_backbone):
    from tests.conftest import make_images

    x, y = make_images(12, seed=0)
    xt, yt = make_images(6, seed=1)
    est = LinearProbe(tiny_image_backbone, progress=False).fit(from_arrays(x, y))
    assert (est.predict(xt) == np.array(yt)).mean() >= 0.9


def test_bf16_probe_predictions_agree_with_fp32(tiny_bert_dir, text_data, text_test):
    a = (
        LinearProbe(str(tiny_bert_dir), C=1.0, precision="fp32", progress=False)
        .fit(text_data)
        .predict(text_test)
    )
    b = (
        LinearProbe(str(tiny_bert_dir), C=1.0, precision="bf16", progress=False)
        .fit(text_data)
        .predict(text_test)
    )
    assert (a == b).mean() >= 0.95


def test_backbone_object_or_name_both_work(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))
    a = LinearProbe(bb, C=1.0, progress=False).fit(text_data).predict_proba(text_data)
    b = LinearProbe(str(tiny_bert_dir), C=1.0, progress=False).fit(text_data).predict_proba(text_data)
    np.testing.assert_allclose(a, b, atol=1e-6)
