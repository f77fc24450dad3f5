"""Temperature scaling (warmstart.techniques.calibrate): fitted on validation rows by every technique family,
folded into the head so that saved artifacts predict calibrated probabilities, and never changing a prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import make_sentences
from warmstart.artifact import load_artifact, save_artifact
from warmstart.techniques import get_technique
from warmstart.techniques.calibrate import fit_temperature, nll, scale_head
from warmstart.techniques.head import LinearHead


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_the_fitted_temperature_minimises_the_validation_nll():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4))
    logits[np.arange(500), y] += 1.5
    logits *= 0.4  # underconfident: the best T is below 1
    t = fit_temperature(logits, y)
    assert t < 1
    for other in (0.8 * t, 1.2 * t, 1.0):
        assert nll(logits, y, t) <= nll(logits, y, other)


def test_a_scaled_head_divides_its_logits_and_keeps_every_prediction():
    rng = np.random.default_rng(0)
    head = LinearHead.from_arrays(
        rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=5), rng.uniform(0.5, 2, 5)
    )
    x = torch.from_numpy(rng.normal(size=(40, 5))).float()
    before = head(x)
    scale_head(head, 2.5)
    after = head(x)
    assert torch.allclose(after, before / 2.5, atol=1e-5)
    assert torch.equal(after.argmax(1), before.argmax(1))


def _split():
    texts, labels = make_sentences(16, seed=0)
    vt, vl = make_sentences(6, seed=1)
    tt, tl = make_sentences(6, seed=2)
    return (texts, labels), (vt, vl), (tt, tl)


@pytest.mark.parametrize("technique", ["probe", "finetune", "contrastive"])
def test_each_family_calibrates_on_validation_rows_only(technique, tiny_bert_dir, tmp_path):
    """With validation rows the temperature is fitted and the probabilities are the uncalibrated model's at that
    temperature (same predictions); without them, or with calibrate="none", nothing changes."""
    (X, y), val, (tx, _) = _split()
    # fp32: in bf16 the head's product rounds differently once its weights are divided by T
    params = {"backbone": str(tiny_bert_dir), "progress": False, "seed": 0, "precision": "fp32"}
    if technique == "finetune":
        params |= {"epochs": 2, "min_steps": 4, "batch_size": 8, "checkpoint_dir": str(tmp_path)}
    if technique == "contrastive":
        params |= {"steps": 3, "batch_size": 8}
    plain = get_technique(technique, calibrate="none", **params).fit(X, y, val=val)
    cal = get_technique(technique, **params).fit(X, y, val=val)
    assert plain.temperature_ is None
    t = cal.temperature_
    assert t is not None and t != 1.0
    assert cal.fitted_config()["temperature"] == t
    p_plain, p_cal = plain.predict_proba(tx), cal.predict_proba(tx)
    assert np.allclose(p_cal, _softmax(np.log(p_plain) / t), atol=2e-4)
    assert (cal.predict(tx) == plain.predict(tx)).all()
    no_val = get_technique(technique, **params).fit(X, y)
    if technique == "probe":  # the probe cross-validates one on its training rows instead
        assert no_val.fitted_config()["temperature_from"] == "cross-validation"
    else:
        assert no_val.temperature_ is None  # no validation rows
    # saved and loaded, the artifact predicts the calibrated probabilities
    save_artifact(cal, tmp_path / f"art-{technique}")
    loaded = load_artifact(tmp_path / f"art-{technique}")
    assert np.allclose(loaded.predict_proba(tx), p_cal, atol=1e-5)


def test_calibration_lowers_the_validation_nll_of_an_overconfident_probe(tiny_bert_dir):
    (X, y), (vx, vy), _ = _split()
    probe = get_technique(
        "probe", backbone=str(tiny_bert_dir), C=1000.0, progress=False
    )  # barely regularised
    plain = get_technique("probe", backbone=str(tiny_bert_dir), C=1000.0, calibrate="none", progress=False)
    probe.fit(X, y, val=(vx, vy))
    plain.fit(X, y, val=(vx, vy))
    idx = np.searchsorted(probe.classes_, vy)
    nll_cal = -np.log(probe.predict_proba(vx)[np.arange(len(vy)), idx]).mean()
    nll_plain = -np.log(plain.predict_proba(vx)[np.arange(len(vy)), idx]).mean()
    assert nll_cal < nll_plain


def test_without_validation_rows_the_probe_fits_its_temperature_on_out_of_fold_logits(tiny_bert_dir):
    """The cross-validated temperature softens a barely regularised (overconfident) probe and sharpens a
    strongly regularised (underconfident) one; it changes the probabilities, never a prediction."""
    (X, y), (vx, _), _ = _split()
    kw = {"backbone": str(tiny_bert_dir), "progress": False, "precision": "fp32"}
    loose = get_technique("probe", C=1000.0, **kw).fit(X, y)
    tight = get_technique("probe", C=0.01, **kw).fit(X, y)
    assert loose.temperature_from_ == tight.temperature_from_ == "cross-validation"
    assert loose.temperature_ > 1 > tight.temperature_
    plain = get_technique("probe", C=1000.0, calibrate="none", **kw).fit(X, y)
    assert plain.temperature_ is None
    assert (loose.predict(vx) == plain.predict(vx)).all()
    assert np.allclose(
        loose.predict_proba(vx), _softmax(np.log(plain.predict_proba(vx)) / loose.temperature_), atol=2e-4
    )
    # too few rows per class for two folds: no temperature
    few = get_technique("probe", **kw).fit(X[:1] + X[16:17] + X[32:33], y[:1] + y[16:17] + y[32:33])
    assert few.temperature_ is None and few.fitted_config()["temperature_from"] is None
