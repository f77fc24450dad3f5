"""The one "fit, predict, measure" path: ``fit_measured`` fits under the cost meter, ``evaluate`` predicts the test
rows and scores them. ``run.fit_run``, ``study.run_cell`` and ``selection.recommend`` use these, so a change to
how a model is scored or timed has one home."""

from __future__ import annotations

import time
from typing import Any

from .cost import Cost, measure
from .data import Dataset
from .metrics import calibration, classification_metrics


def fit_measured(est: Any, train: Dataset, val: Dataset | None = None, **fit_options: Any) -> Cost:
    """Fit ``est`` on ``train`` (``val``: its validation rows; ``fit_options``: more of ``fit``'s keywords, such
    as distillation's ``soft_targets``) and return what the fit cost."""
    with measure() as cost:
        est.fit(train, val=val, **fit_options)
    return cost


def evaluate(est: Any, test: Dataset) -> tuple[dict, float]:
    """Test metrics of a fitted ``est`` on the labelled ``test`` rows (``metrics.classification_metrics``: accuracy,
    macro-F1, per class, confusion matrix; for single-label models also ``ece``, the expected calibration error
    of the top class, and its ``reliability`` table) and the seconds prediction took."""
    metrics, seconds, _ = evaluate_predictions(est, test)
    return metrics, seconds


def evaluate_predictions(est: Any, test: Dataset) -> tuple[dict, float, Any]:
    """``evaluate``, and the predicted labels it scored (for comparing two models row by row)."""
    start = time.perf_counter()
    proba = est.predict_proba(test)
    pred = est.labels_from_proba(proba)
    seconds = time.perf_counter() - start
    metrics = classification_metrics(list(test.labels), list(pred), list(est.classes_))
    if not metrics.get("multilabel"):
        metrics.update(calibration(proba, list(test.labels), list(est.classes_)))
    return metrics, seconds, pred
