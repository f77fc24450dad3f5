"""L2-SP (Li et al. 2018): fine-tune with ``alpha / 2 * ||w - w_pretrained||^2`` added to the loss.

Plain weight decay pulls weights toward zero, which for a pretrained backbone means toward forgetting; L2-SP pulls
them toward where they started instead, so the backbone gets no ordinary weight decay (the head still does)."""

from __future__ import annotations

from typing import Any

import torch

from .base import Interval, register_technique
from .finetune import FineTune
from .train import Hooks
from .tuned import Classifier


@register_technique("l2sp")
class L2SP(FineTune):
    """Full fine-tuning regularised toward the pretrained weights.

    Args:
        alpha: strength of the pull toward the starting weights.
        **kwargs: everything ``FineTune`` takes (freeze_layers, lr_decay, ...) and the loop parameters.
    """

    _parameter_constraints = {**FineTune._parameter_constraints, "alpha": [Interval(float, 0, None)]}
    # BatchNorm statistics re-estimated at lr 1e-3, as before: kept ones were not measured with L2-SP
    keeps_pretrained_norms = False

    def __init__(self, alpha: float = 0.01, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = alpha

    def _param_groups(self, model: Classifier) -> list[dict[str, Any]]:
        groups = super()._param_groups(model)
        for g in groups[:-1]:  # every backbone group; the last one is the head
            g["weight_decay"] = 0.0
        return groups

    def _hooks(self, model: Classifier) -> Hooks:
        hooks = super()._hooks(model)
        pairs = [(p, p.detach().clone()) for p in model.body.parameters() if p.requires_grad]
        alpha = self.alpha

        def penalty() -> torch.Tensor:
            return 0.5 * alpha * sum(((p - p0) ** 2).sum() for p, p0 in pairs)

        hooks.extra_loss = penalty
        return hooks
