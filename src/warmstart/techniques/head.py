"""Classifier heads shared by techniques."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LinearHead(nn.Module):
    """``logits = ((x - mean) / scale) @ weight.T + bias``: standardisation folded into the head."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.linear = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.scale)

    @classmethod
    def from_sklearn(cls, clf, mean: np.ndarray, scale: np.ndarray, num_classes: int) -> LinearHead:
        """From a fitted LogisticRegression; a binary model becomes two symmetric logits (same probabilities)."""
        coef, intercept = np.asarray(clf.coef_), np.asarray(clf.intercept_)
        if coef.shape[0] == 1 and num_classes == 2:
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return cls.from_arrays(coef, intercept, mean, scale)

    @classmethod
    def from_arrays(
        cls, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
    ) -> LinearHead:
        """A head with these ``(C, D)`` weights, ``(C,)`` biases and ``(D,)`` input mean and scale."""
        head = cls(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.mean.copy_(torch.from_numpy(np.asarray(mean)))
            head.scale.copy_(torch.from_numpy(np.asarray(scale)))
            head.linear.weight.copy_(torch.from_numpy(np.asarray(weight)))
            head.linear.bias.copy_(torch.from_numpy(np.asarray(bias)))
        return head

    @classmethod
    def from_tensors(cls, state: dict[str, torch.Tensor]) -> LinearHead:
        w = state["linear.weight"]
        head = cls(w.shape[1], w.shape[0])
        head.load_state_dict(state, strict=True)
        return head
