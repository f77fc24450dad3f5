"""BitFit (Ben Zaken et al. 2022): train only the bias terms, and here also the normalisation layers' scales.

Convolutional backbones such as EfficientNet have no conv biases at all; their BatchNorm shifts and scales are
the only candidates, so ``norms=False`` is refused for them rather than training nothing."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ParameterError
from .base import register_technique
from .tuned import Classifier, TunedTechnique

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


@register_technique("bitfit")
class BitFit(TunedTechnique):
    """Train the backbone's biases (and, with ``norms=True``, its LayerNorm/BatchNorm weights) plus a new head.

    Example:
        >>> texts = ["free prize, call now", "lunch at noon?", "win cash today", "see you soon"]
        >>> est = BitFit(backbone="paraphrase-MiniLM-L3-v2", norms=False, epochs=1, min_steps=2, progress=False)
        >>> est.fit(texts, ["spam", "ham", "spam", "ham"]).predict(["free cash prize"]).shape
        (1,)
    """

    default_lr = {"text": 1e-3, "image": 1e-3}
    default_head_lr = 5e-3  # the backbone barely moves: the head must do more
    _parameter_constraints = {**TunedTechnique._parameter_constraints, "norms": [bool]}

    def __init__(self, norms: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.norms = norms

    def _configure(self, model: Classifier) -> None:
        super()._configure(model)
        norm_params = {
            id(p) for m in model.body.modules() if isinstance(m, NORM_TYPES) for p in m.parameters()
        }
        for name, p in model.body.named_parameters():
            keep = name.endswith("bias") or (self.norms and id(p) in norm_params)
            p.requires_grad_(p.requires_grad and keep)
        if not any(p.requires_grad for p in model.body.parameters()):
            raise ParameterError(
                f"bitfit found no bias terms to train in {model.backbone.name!r}; set norms=True to train its "
                f"normalisation layers, or use another technique."
            )
