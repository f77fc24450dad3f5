"""Full fine-tuning, with the three classic ways to protect pretrained layers: freeze the first N, decay the
learning rate layer by layer (lower layers hold the most general features), and fastai-style gradual unfreezing."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ..backbones import Backbone
from ..errors import ParameterError
from .base import Interval, register_technique, resolve_backbone
from .train import Hooks
from .tuned import Classifier, TunedTechnique


@register_technique("finetune")
class FineTune(TunedTechnique):
    """Train the whole backbone and a new linear head.

    Layer groups come from ``Backbone.layer_groups()``: group 0 is the embeddings (text) or stem (images), then one
    group per transformer layer or MBConv block, then anything after them.

    Args:
        freeze_layers: keep the first N layer groups frozen (0: none).
        lr_decay: group ``i`` of ``L`` trains at ``lr * lr_decay ** (L - 1 - i)``; 1.0 means no decay.
        gradual_unfreeze: epoch 0 trains the head only, then layer groups unfreeze from the top, evenly spread
            so that every (non-frozen) group trains in the last epoch.
        **kwargs: the shared loop parameters of ``TunedTechnique`` (epochs, lr, batch_size, bf16, ...).

    Example:
        >>> from warmstart.data import load_packaged, few_shot
        >>> trec = load_packaged("trec").train
        >>> train = trec.subset(few_shot(trec.labels, 4))
        >>> ft = FineTune(backbone="paraphrase-MiniLM-L3-v2", lr_decay=0.8, epochs=1, min_steps=4, progress=False)
        >>> ft.fit(train).predict(["Who wrote Hamlet?"]).shape, ft.classes_.tolist()
        ((1,), ['ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM'])
    """

    # images: 1e-3, chosen on the development set mnist-5k (EfficientNet-Lite0 at 128 px, light augmentation, seed
    # 0; docs/studies.md): at 8/32/100 per class 1e-3 reached .848/.919/.970 against .448/.822/.922 at the old
    # 2e-4 without augmentation, and 2e-3 did worse than 1e-3 at 32 per class (.884 against .915, with trivial)
    default_lr = {"text": 5e-5, "image": 1e-3}
    # batchnorm="auto" keeps a CNN's pretrained BatchNorm statistics, and the image learning rate is then
    # ``kept_norms_lr``: chosen on mnist-5k (Lite0 at 64 px, 8/16/32 per class, 5 seeds) among 1e-3, 3e-4 and 1e-4
    # with the statistics kept (79.8/87.9/92.6 at 3e-4, 70.5/85.7/92.2 at 1e-3, where some runs diverged;
    # 68.8/80.3/89.9 re-estimated at 1e-3); docs/techniques.md
    keeps_pretrained_norms = True
    kept_norms_lr: ClassVar[float | None] = 3e-4
    # images: 10 epochs, chosen on mnist-5k (seed 0, crop scale 0.6): .932 against .861 for 4 epochs at 32 per
    # class, .979 against .970 at 100 (docs/studies.md); text keeps 4
    default_epochs = {"text": 4, "image": 10}
    _parameter_constraints = {
        **TunedTechnique._parameter_constraints,
        "freeze_layers": [Interval(int, 0, None)],
        "lr_decay": [Interval(float, 0, 1, "right")],
        "gradual_unfreeze": [bool],
    }

    def __init__(
        self, freeze_layers: int = 0, lr_decay: float = 1.0, gradual_unfreeze: bool = False, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.freeze_layers = freeze_layers
        self.lr_decay = lr_decay
        self.gradual_unfreeze = gradual_unfreeze

    def _base_lr(self, bb: Backbone) -> float:
        if self.lr == "auto" and bb.tuning_lr is not None:
            return float(bb.tuning_lr)
        if self.lr == "auto" and self.kept_norms_lr is not None and self._kept_norms(bb):
            return float(self.kept_norms_lr)
        return super()._base_lr(bb)

    def base_epochs(self) -> int:
        """``epochs``; ``"auto"``: the backbone's ``tuning_epochs`` where it has its own, else the modality's."""
        if self.epochs == "auto":
            bb = getattr(self, "backbone_", None) or resolve_backbone(self.backbone)
            if bb.tuning_epochs is not None:
                return int(bb.tuning_epochs)
        return super().base_epochs()

    def _layer_groups(self, model: Classifier) -> list[list[str]]:
        return [[f"body.{n}" for n in g] for g in model.backbone.layer_groups()]

    def _configure(self, model: Classifier) -> None:
        super()._configure(model)
        groups = self._layer_groups(model)
        if self.freeze_layers >= len(groups):
            raise ParameterError(
                f"freeze_layers={self.freeze_layers} would freeze all {len(groups)} layer groups of "
                f"{model.backbone.name!r}; use at most {len(groups) - 1}, or the 'probe' technique to train the "
                f"head alone."
            )
        params = dict(model.named_parameters())
        for group in groups[: self.freeze_layers]:
            for name in group:
                params[name].requires_grad_(False)

    def _param_groups(self, model: Classifier) -> list[dict[str, Any]]:
        groups = self._layer_groups(model)
        params = dict(model.named_parameters())
        out = []
        for depth, names in enumerate(groups):
            trainable = [params[n] for n in names if params[n].requires_grad]
            if trainable:
                lr = self.lr_ * self.lr_decay ** (len(groups) - 1 - depth)
                out.append({"params": trainable, "lr": lr, "weight_decay": self.weight_decay})
        return out + [{"params": list(model.head.parameters()), "lr": self.head_lr_, "weight_decay": 0.0}]

    def _hooks(self, model: Classifier) -> Hooks:
        if not self.gradual_unfreeze:
            return Hooks()
        params = dict(model.named_parameters())
        groups = self._layer_groups(model)[self.freeze_layers :]

        def unfreeze_for(epoch: int) -> None:
            n = len(groups)
            epochs = self._loop_config().epochs
            top = n if epochs == 1 else math.ceil(n * epoch / (epochs - 1))
            for i, names in enumerate(groups):
                for name in names:
                    params[name].requires_grad_(i >= n - top)

        return Hooks(on_epoch_start=unfreeze_for)
