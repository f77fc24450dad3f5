"""LoRA and IA3 through the ``peft`` library: small trained adapters on a frozen backbone.

Target modules are chosen per backbone family (``backbones/families.py``: text and vision transformers, ConvNeXt,
ResNet, CLIP/SigLIP towers, EfficientNet-Lite) and can be overridden.
Each target is a module-name suffix at a dot boundary ("query" matches "encoder.layer.0.attention.self.query");
every one must match at least one Linear or Conv2d layer, else the fit stops with the layers it could have used.

With ``merge=True`` (the default) the adapter is folded into the backbone weights after training, so inference
costs the same as the original backbone and the artifact embeds the merged backbone. With ``merge=False`` the
artifact keeps the adapter tensors beside the head and refers to the unchanged base backbone by fingerprint.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from ..backbones import Backbone
from ..errors import ParameterError
from .base import Interval, register_technique
from .tuned import Classifier, TunedTechnique

TARGETABLE = (nn.Linear, nn.Conv2d)


def matches(name: str, suffix: str) -> bool:
    """Whether the module ``name`` ends in ``suffix`` at a dot boundary."""
    return name == suffix or name.endswith("." + suffix)


def resolve_targets(module: nn.Module, targets: list[str], technique: str, backbone_name: str) -> list[str]:
    """Full names of the Linear/Conv2d layers that the suffixes in ``targets`` match; unmatched ones are errors."""
    layers = [n for n, m in module.named_modules() if isinstance(m, TARGETABLE)]
    found: list[str] = []
    for t in targets:
        hits: list[str] = []
        for alt in t.split("|"):  # alternatives: the first that matches (layer names differ between versions)
            hits = [n for n in layers if matches(n, alt)]
            if hits:
                break
        if not hits:
            suffixes = sorted(
                {n.rsplit(".", 1)[-1] for n in layers} | {".".join(n.split(".")[-2:]) for n in layers}
            )
            close = difflib.get_close_matches(t, suffixes, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ParameterError(
                f"the target module {t!r} of {technique} matches no Linear or Conv2d layer of "
                f"{backbone_name!r}.{hint} Layer names end in: {', '.join(suffixes[:20])}."
            )
        found += [h for h in hits if h not in found]
    return found


class _PeftTechnique(TunedTechnique):
    """Shared by LoRA and IA3: inject with peft, train adapters and head, merge or keep the adapter."""

    default_lr: ClassVar[dict[str, float]] = {"text": 1e-3, "image": 1e-3}
    default_head_lr: ClassVar[float | None] = 5e-3  # the backbone barely moves: the head must do more

    @property
    def changes_backbone(self) -> bool:  # type: ignore[override]
        return bool(self.merge)

    def _default_targets(self, backbone: Backbone) -> list[str]:
        spec = backbone.adapter_targets(self.name)
        if spec is None:
            raise ParameterError(
                f"{self.name} has no default target modules for backbone family {backbone.family!r} "
                f'({backbone.name!r}); pass target_modules, e.g. --param \'target_modules=["query","value"]\'.'
            )
        return spec[0]

    def _peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        raise NotImplementedError

    def _inject(self, backbone: Backbone) -> list[str]:
        targets = resolve_targets(
            backbone.module,
            self.target_modules or self._default_targets(backbone),
            self.name,
            backbone.name,
        )
        self.peft_model_ = _peft_wrap(backbone.module, self._peft_config(targets, backbone))
        return targets

    def _configure(self, model: Classifier) -> None:
        self.targets_ = self._inject(model.backbone)
        for name, p in model.named_parameters():
            if name.startswith("head."):
                p.requires_grad_(True)
        self.adapter_params_ = sum(p.numel() for p in model.body.parameters() if p.requires_grad)

    def _finish(self, model: Classifier) -> None:
        if self.merge:
            merged = self.peft_model_.merge_and_unload()
            model.backbone.module = merged
            model.body = merged
            del self.peft_model_

    def tensors(self) -> dict[str, torch.Tensor]:
        out = super().tensors()
        if not self.merge:
            from peft import get_peft_model_state_dict

            out.update({f"adapter.{k}": v for k, v in get_peft_model_state_dict(self.peft_model_).items()})
        return out

    def fitted_config(self) -> dict:
        return {**super().fitted_config(), "targets": self.targets_, "adapter_params": self.adapter_params_}

    def _restore(self, tensors: dict[str, torch.Tensor], fitted: dict) -> None:
        self.targets_ = fitted.get("targets", [])
        self.adapter_params_ = fitted.get("adapter_params")
        if self.merge:
            return
        from peft import set_peft_model_state_dict

        self.peft_model_ = _peft_wrap(self.backbone_.module, self._peft_config(self.targets_, self.backbone_))
        adapter = {k[len("adapter.") :]: v for k, v in tensors.items() if k.startswith("adapter.")}
        result = set_peft_model_state_dict(self.peft_model_, adapter)
        if getattr(result, "unexpected_keys", None):
            raise ParameterError(
                f"the saved adapter has tensors this backbone lacks: {result.unexpected_keys[:5]}"
            )
        self.backbone_.module.eval()


@register_technique("lora")
class LoRA(_PeftTechnique):
    """Low-rank adapters (Hu et al. 2021) on the attention projections (text) or 1x1 convolutions (images).

    Args:
        r: rank of each adapter.
        alpha: scaling; the update is ``(alpha / r) * B @ A``.
        dropout: dropout on the adapter's input.
        target_modules: module-name suffixes to adapt; None picks the family's defaults (BERT: query, value).
        merge: fold the adapter into the backbone after training (see the module docstring).
        **kwargs: the shared loop parameters.

    Example:
        >>> texts = ["where is paris", "who is she", "where is rome", "who wrote it"]
        >>> lora = LoRA(backbone="paraphrase-MiniLM-L3-v2", r=8, epochs=1, min_steps=2, progress=False)
        >>> lora.fit(texts, ["LOC", "HUM", "LOC", "HUM"]).predict(["Where is the Eiffel Tower?"]).shape
        (1,)
    """

    _parameter_constraints = {
        **TunedTechnique._parameter_constraints,
        "r": [Interval(int, 1, None)],
        "alpha": [Interval(float, 0, None, "neither")],
        "dropout": [Interval(float, 0, 1, "left")],
        "target_modules": [list, None],
        "merge": [bool],
    }

    def __init__(
        self,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.1,
        target_modules: list[str] | None = None,
        merge: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.target_modules = target_modules
        self.merge = merge

    def _peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)


@register_technique("ia3")
class IA3(_PeftTechnique):
    """IA3 (Liu et al. 2022): learned per-channel scales on keys, values and feed-forward inputs.

    Args:
        target_modules: module-name suffixes to scale; None picks the family's defaults.
        feedforward_modules: the subset of targets whose input (not output) is scaled; None: family default.
        merge: fold the scales into the backbone after training.
        **kwargs: the shared loop parameters.
    """

    default_lr = {"text": 3e-3, "image": 3e-3}
    _parameter_constraints = {
        **TunedTechnique._parameter_constraints,
        "target_modules": [list, None],
        "feedforward_modules": [list, None],
        "merge": [bool],
    }

    def __init__(
        self,
        target_modules: list[str] | None = None,
        feedforward_modules: list[str] | None = None,
        merge: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.target_modules = target_modules
        self.feedforward_modules = feedforward_modules
        self.merge = merge

    def _peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import IA3Config

        if self.feedforward_modules is not None:
            ff_suffixes = self.feedforward_modules
        else:
            spec = backbone.adapter_targets("ia3") or ([], [])
            ff_suffixes = spec[1] if self.target_modules is None else []
        ff = [t for t in targets if any(matches(t, alt) for s in ff_suffixes for alt in s.split("|"))]
        return IA3Config(target_modules=targets, feedforward_modules=ff)


def _peft_wrap(module: torch.nn.Module, config: Any) -> Any:
    """``peft.get_peft_model``, without the FutureWarning it triggers inside transformers 5 on every call."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(module, config)
