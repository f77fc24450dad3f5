"""Temperature scaling (Guo et al. 2017): one number ``T`` that divides the logits so that the predicted
probabilities match how often the model is right, fitted on labelled validation rows by minimising their
negative log-likelihood. The predicted class never changes (dividing every logit by the same ``T > 0`` keeps
their order); only the confidence does.

``T`` is folded into the classifier head (its weight and bias divided by ``T``), so every path that computes
probabilities from the head (``predict_proba``, a loaded artifact, the server, the ONNX and transformers exports)
gives the calibrated ones with no code of its own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MIN_ROWS = 10  # fewer labelled validation rows than this: no temperature is fitted
BOUNDS = (0.05, 20.0)


def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of the classes ``y`` under ``softmax(logits / t)``."""
    z = np.asarray(logits, dtype=np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in ``BOUNDS`` that minimises the negative log-likelihood of ``y`` (class indices).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = 2 * rng.normal(size=(5000, 3))                     # logits, and classes drawn from them:
        >>> p = np.exp(z) / np.exp(z).sum(1, keepdims=True)        # z is calibrated by construction
        >>> y = (rng.random(5000)[:, None] > p.cumsum(1)).sum(1)
        >>> round(fit_temperature(3 * z, y), 1)                    # 3x overconfident logits: T near 3
        2.9
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.int64)
    lo, hi = (math.log(b) for b in BOUNDS)
    r = minimize_scalar(lambda s: nll(logits, y, math.exp(s)), bounds=(lo, hi), method="bounded")
    return float(math.exp(r.x))


def scale_head(head: torch.nn.Module, t: float) -> None:
    """Divide the logits of a ``LinearHead`` by ``t`` for good: its weight and bias are divided in place."""
    with torch.no_grad():
        head.linear.weight.div_(t)
        head.linear.bias.div_(t)
