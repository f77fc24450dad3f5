"""Every artifact carries a model card (README.md): Hugging Face metadata that parses, the labels, test metrics
with a 95% interval, training rows and cost, limits; covered by the artifact's manifest."""

from __future__ import annotations

import pytest
import yaml
from scipy.stats import binomtest

from warmstart.artifact import load_artifact, verify_artifact
from warmstart.data import Dataset
from warmstart.errors import ArtifactError
from warmstart.model_card import base_model, wilson_interval
from warmstart.run import fit_run

from .conftest import make_sentences


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_fit_writes_a_model_card_with_metadata_metrics_and_cost(tiny_bert_dir, tmp_path):
    texts, labels = make_sentences(20)
    result = fit_run(
        Dataset(texts, labels, "text", "reviews.csv"),
        backbone=str(tiny_bert_dir),
        technique="probe",
        params={"progress": False},
        output=tmp_path / "art",
    )
    card = (tmp_path / "art" / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "warmstart" and meta["pipeline_tag"] == "text-classification"
    assert "probe" in meta["tags"] and "base_model" not in meta  # a local folder has no hub id
    results = meta["model-index"][0]["results"][0]
    assert results["dataset"]["name"] == "reviews.csv"
    m = result.metrics
    assert {x["type"]: x["value"] for x in results["metrics"]} == {
        "accuracy": round(m["accuracy"], 4),
        "f1": round(m["macro_f1"], 4),
    }
    lo, hi = wilson_interval(m["accuracy"] * m["n"], m["n"])
    assert f"| accuracy | {m['accuracy']:.4f} | [{lo:.4f}, {hi:.4f}]" in card
    assert "`food`, `sports`, `tech`" in card
    assert f"training rows: {result.config['n_train']}" in card
    assert "fit CPU time:" in card and "## Intended use and limits" in card
    temperature = load_artifact(tmp_path / "art").temperature_
    assert ("probabilities calibrated: temperature" in card) == (temperature is not None)

    verify_artifact(tmp_path / "art")  # the card is in the manifest ...
    (tmp_path / "art" / "README.md").write_text(card.replace("0.", "1."))
    with pytest.raises(ArtifactError, match="README.md"):  # ... so an edited card is caught
        load_artifact(tmp_path / "art")


def test_the_card_names_the_temperature_of_a_calibrated_model(tiny_bert_dir, tmp_path):
    texts, labels = make_sentences(30)
    fit_run(
        Dataset(texts, labels, "text", "reviews.csv"),
        backbone=str(tiny_bert_dir),
        technique="probe",
        params={"progress": False},
        val_size=0.2,
        output=tmp_path / "art",
    )
    temperature = load_artifact(tmp_path / "art").temperature_
    assert temperature is not None  # 18 validation rows: calibrated
    assert (
        f"probabilities calibrated: temperature {temperature:.3f}"
        in (tmp_path / "art" / "README.md").read_text()
    )


@pytest.mark.parametrize(("k", "n"), [(45, 50), (0, 12), (12, 12), (7, 9), (300, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    want = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((want.low, want.high), abs=1e-6)


def test_base_model_is_the_hub_id_where_one_is_known():
    assert base_model({"name": "all-MiniLM-L6-v2"}) == "sentence-transformers/all-MiniLM-L6-v2"
    trained = {"name": "x", "base": {"name": "all-mpnet-base-v2", "source": "all-mpnet-base-v2"}}
    assert base_model(trained) == "sentence-transformers/all-mpnet-base-v2"
    assert base_model({"name": "dino", "source": "hf:facebook/dinov2-small"}) == "facebook/dinov2-small"
    assert base_model({"name": "mine", "source": "/models/mine"}) is None
    assert base_model({"name": "efficientnet-lite0", "source": "efficientnet-lite0"}) is None


def test_metrics_carry_the_calibration_error_and_its_table(tiny_bert_dir, tmp_path):
    """ECE and the reliability table come from the predicted probabilities of the same test rows."""
    import numpy as np

    from warmstart.evaluate import evaluate
    from warmstart.metrics import calibration
    from warmstart.techniques import get_technique

    texts, labels = make_sentences(12)
    test_texts, test_labels = make_sentences(6, seed=3)
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, precision="fp32").fit(
        texts, labels
    )
    test = Dataset(test_texts, test_labels, "text", "held-out")
    metrics, _ = evaluate(est, test)
    want = calibration(est.predict_proba(test), test_labels, list(est.classes_))
    assert metrics["ece"] == pytest.approx(want["ece"]) and metrics["reliability"] == want["reliability"]
    assert sum(b["n"] for b in metrics["reliability"]) == len(test_labels)
    right = np.mean(est.predict(test) == np.array(test_labels))
    assert metrics["accuracy"] == pytest.approx(right)  # predictions from the same probabilities
    result = fit_run(
        Dataset(texts, labels, "text", "t.csv"),
        backbone=str(tiny_bert_dir),
        params={"progress": False},
        output=tmp_path / "art",
    )
    assert "ece" in result.metrics
    assert f"| {result.metrics['ece']:.4f} |" in (tmp_path / "art" / "README.md").read_text()


def test_ece_is_near_zero_for_calibrated_probabilities():
    import numpy as np

    from warmstart.metrics import calibration

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20000)
    right = rng.uniform(size=20000) < conf  # each row is right with the probability it claims
    proba = np.stack([conf, 1 - conf], 1)
    truth = np.where(right, "a", "b")
    assert calibration(proba, truth, ["a", "b"])["ece"] < 0.02
    overconfident = np.stack([np.full(20000, 0.99), np.full(20000, 0.01)], 1)
    assert calibration(overconfident, truth, ["a", "b"])["ece"] == pytest.approx(
        0.99 - right.mean(), abs=1e-9
    )
