"""LP-FT (Kumar et al. 2022): fit a linear probe first, then fine-tune everything starting from that head.

A random head sends large, noisy gradients into the backbone during the first steps and distorts features that
were fine; starting from the probe's head avoids that. The probe reuses the feature cache, so when the same
backbone and rows were probed before, the first phase costs only the logistic regression."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Interval, register_technique
from .finetune import FineTune
from .head import LinearHead
from .probe import LinearProbe


@register_technique("lp_ft")
class LPFT(FineTune):
    """Linear probe, then full fine-tuning from the probe's head at the backbone's learning rate.

    Args:
        C: the probe's inverse regularisation strength, or "auto" (chosen by cross-validation, as for ``probe``).
        **kwargs: everything ``FineTune`` takes and the loop parameters. ``head_lr`` defaults to ``lr``.
    """

    default_head_lr = None  # the head is already good: move it no faster than the backbone
    # batchnorm="auto" keeps the pretrained statistics (as for finetune): the probe's head starts on the features
    # they give, and kept, they gained 7.8 points on MNIST-5k at fine-tuning's image lr of 1e-3, which LP-FT
    # keeps: from the probe's head it did not diverge (docs/techniques.md)
    kept_norms_lr = None
    _parameter_constraints = {
        **FineTune._parameter_constraints,
        "C": [Interval(float, 0, None, "neither"), "auto"],
    }

    def __init__(self, C: float | str = "auto", **kwargs: Any):
        super().__init__(**kwargs)
        self.C = C

    def _init_head(self, head: LinearHead, features: np.ndarray, y: np.ndarray) -> None:
        probe = LinearProbe(backbone=self.backbone_, C=self.C, seed=self.seed, progress=False)
        # one global scale, as fine-tuning uses (see tuned.set_standardisation): the L2 penalty then keeps
        # weights on low-variance features small, where a per-feature scale would make the head hypersensitive
        # to their drift once the backbone trains (measured on TREC: training diverged, loss 59)
        probe.fit_features(features, y, num_classes=len(self.classes_), per_feature_scale=False)
        self.probe_C_ = probe.C_
        head.load_state_dict(probe.head_.state_dict())

    def fitted_config(self) -> dict:
        return {**super().fitted_config(), "probe_C": getattr(self, "probe_C_", None)}
