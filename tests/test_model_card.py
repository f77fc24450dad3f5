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

    verify_artifact(tmp_path / "art")  # the card is in the manifest ...
    (tmp_path / "art" / "README.md").write_text(card.replace("0.", "1."))
    with pytest.raises(ArtifactError, match="README.md"):  # ... so an edited card is caught
        load_artifact(tmp_path / "art")


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
