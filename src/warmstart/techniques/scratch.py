"""The from-scratch baseline: the same architecture and loop with randomly initialised weights.

It answers "what did pretraining buy?": any gap between ``scratch`` and ``finetune`` on the same split is the value
of the pretrained weights. It trains at a higher learning rate and for more epochs by default, since random
weights have further to go; a baseline that is starved of steps would flatter transfer."""

from __future__ import annotations

from typing import Any

from ..backbones import Backbone
from .base import register_technique
from .tuned import TunedTechnique


@register_technique("scratch")
class Scratch(TunedTechnique):
    """Random initialisation (seeded by ``seed``), then the shared training loop on every weight.

    Example:
        >>> texts = ["free prize, call now", "lunch at noon?", "win cash today", "see you soon"]
        >>> est = Scratch(backbone="paraphrase-MiniLM-L3-v2", epochs=2, min_steps=2, progress=False)
        >>> est.fit(texts, ["spam", "ham", "spam", "ham"]).predict(texts).shape
        (4,)
    """

    default_lr = {"text": 5e-4, "image": 1e-3}
    caches_features = False  # features of random weights are never worth caching

    def __init__(self, epochs: int = 10, **kwargs: Any):
        super().__init__(epochs=epochs, **kwargs)

    def _prepare(self, backbone: Backbone) -> None:
        backbone.reset_parameters(self.seed)  # running statistics too, so none are kept (batchnorm)
