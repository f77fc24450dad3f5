"""Hugging Face image encoders (ViT, DeiT, DINOv2, BEiT, Swin, ConvNeXt(V2), ResNet, and the vision towers of CLIP
and SigLIP) by folder or hub id, with the preprocessing their image processor config documents.

The pooled feature is the family's own (``families.VISION_POOLING``): the [CLS] token for ViT, DeiT and DINOv2,
the model's pooler output for BEiT, Swin, ConvNeXt, ResNet and SigLIP, and the projected image embedding for
CLIP. Preprocessing is read from ``preprocessor_config.json`` (resize, centre crop, rescale, mean and std) and run
by ``ImagePreprocess`` with NumPy and Pillow, so no image processor (nor torchvision) is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import BackboneError
from .families import VISION_POOLING
from .hf_common import (
    drop_untrained_pooler,
    hf_reset_parameters,
    quiet_transformers,
    truncate_layers,
    truncate_stages,
)
from .hub import model_json, prepare_hub_id
from .image import RESAMPLE, ImageBackbone, ImagePreprocess

_RESAMPLE_NAMES = {v: k for k, v in RESAMPLE.items()}
STAGED = (
    "swin",
    "convnext",
    "convnextv2",
    "resnet",
)  # built in stages of growing width: num_layers counts stages


def preprocess_from_processor(cfg: dict, src: str) -> ImagePreprocess:
    """An ``ImagePreprocess`` from a transformers image processor config (``preprocessor_config.json``)."""

    def hw(value: Any) -> tuple[int, int] | int:
        if isinstance(value, int):
            return (value, value)
        if "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        raise BackboneError(
            f"{src}: preprocessor_config.json has a size this version cannot read: {value!r}."
        )

    size = hw(cfg.get("size", 224))
    crop = hw(cfg["crop_size"]) if cfg.get("do_center_crop") and cfg.get("crop_size") else None
    if isinstance(crop, int):
        crop = (crop, crop)
    if "crop_pct" in cfg and isinstance(size, int) and crop is None:  # ConvNeXt: resize up, crop to size
        if size < 384:
            size, crop = int(size / cfg["crop_pct"]), (size, size)
        else:
            size = (size, size)
    if isinstance(size, int) and crop is None:
        crop = (size, size)
    mean = cfg.get("image_mean", [0.5, 0.5, 0.5]) if cfg.get("do_normalize", True) else [0.0] * 3
    std = cfg.get("image_std", [0.5, 0.5, 0.5]) if cfg.get("do_normalize", True) else [1.0] * 3
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    resample = _RESAMPLE_NAMES.get(int(cfg.get("resample", 2)), "bilinear")
    return ImagePreprocess(size, crop, tuple(map(float, mean)), tuple(map(float, std)), rescale, resample)


def _model_class(model_type: str) -> Any:
    import transformers

    if model_type in ("clip", "clip_vision_model"):
        return transformers.CLIPVisionModelWithProjection
    if model_type in ("siglip", "siglip_vision_model"):
        return transformers.SiglipVisionModel
    return transformers.AutoModel


class HFVisionBackbone(ImageBackbone):
    """An image encoder from transformers; see the module docstring for pooling and preprocessing."""

    def __init__(self, model: torch.nn.Module, pre: ImagePreprocess, *, name: str, source: str) -> None:
        self.module = model.eval()
        self._pre = pre
        self.name, self.source = name, source
        self.model_type = model.config.model_type
        self.pooling = VISION_POOLING.get(self.model_type, "pooler")
        if self.pooling == "cls":  # a pooler head the [CLS] feature never passes through
            self.unused_parameters = ("pooler.",)
        self.num_features = self._feature_size()
        self._fingerprint = None

    @classmethod
    def from_pretrained(
        cls, src: str, *, name: str | None = None, num_layers: int | None = None
    ) -> HFVisionBackbone:
        from transformers import AutoConfig

        prepare_hub_id(src)
        try:
            with quiet_transformers():
                config = AutoConfig.from_pretrained(src)
                model_type, kwargs = config.model_type, {}
                if (
                    model_type == "clip"
                ):  # the vision tower of a whole CLIP: its projection size is the top level's
                    vision = config.vision_config
                    vision.projection_dim = config.projection_dim
                    kwargs["config"] = vision
                model, info = _model_class(model_type).from_pretrained(
                    src, output_loading_info=True, **kwargs
                )
        except OSError as e:
            raise BackboneError(
                f"could not load the image model {src!r}: {e}. For a hub id without network access, download the "
                f"model elsewhere and pass its local folder."
            ) from e
        drop_untrained_pooler(model, info, src)
        processor = model_json(src, "preprocessor_config.json")
        if processor is None:
            raise BackboneError(
                f"{src}: no preprocessor_config.json, so the model's preprocessing (size, crop, mean, std) is "
                f"unknown; add the image processor's config to the folder (processor.save_pretrained(folder))."
            )
        if num_layers is not None:
            if model_type in STAGED:
                truncate_stages(model, num_layers, src)
            else:
                truncate_layers(model, num_layers, src)
        return cls(model, preprocess_from_processor(processor, src), name=name or src, source=src)

    def _feature_size(self) -> int:
        cfg = self.module.config
        if self.pooling == "projected":
            return int(cfg.projection_dim)
        if getattr(cfg, "hidden_sizes", None):  # ConvNeXt, ResNet: the last stage's width
            return int(cfg.hidden_sizes[-1])
        if self.model_type == "swin":
            return int(self.module.num_features)
        return int(cfg.hidden_size)

    @property
    def image_preprocess(self) -> ImagePreprocess:
        return self._pre

    def preprocess_config(self) -> dict:
        return {"kind": "image", "family": self.model_type, "pooling": self.pooling, **self._pre.to_dict()}

    def forward_features(self, pixels: torch.Tensor, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Pooled features; ``module`` replaces the model (its low-precision copy)."""
        out = (self.module if module is None else module)(pixel_values=pixels)
        if self.pooling == "projected":
            return out.image_embeds.float()
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0].float()
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise BackboneError(f"{self.name}: the model returned no pooler output to use as its feature.")
        return pooled.flatten(1).float()

    def reset_parameters(self, seed: int) -> None:
        if not hf_reset_parameters(self.module, seed):
            return super().reset_parameters(seed)  # each layer's reset_parameters: running statistics too
        # a random network has no running statistics; the model's own init need not reset them
        for m in self.module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        self.has_source_classifier = False
        self.invalidate_fingerprint()

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.module.save_pretrained(folder, safe_serialization=True)
        meta = {
            "kind": "hf-vision",
            "name": self.name,
            "class": type(self.module).__name__,
            "preprocess": self._pre.to_dict(),
        }
        (folder / "warmstart_backbone.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load_saved(cls, folder: Path, meta: dict, **kwargs: Any) -> HFVisionBackbone:
        import transformers

        with quiet_transformers():
            model, info = getattr(transformers, meta["class"]).from_pretrained(
                folder, output_loading_info=True
            )
        drop_untrained_pooler(model, info, str(folder))
        pre = ImagePreprocess.from_dict(meta["preprocess"])
        return cls(model, pre, name=kwargs.get("name", meta.get("name", str(folder))), source=str(folder))
