"""What differs between backbone families, in one table: which layers adapters target, and which Hugging Face
model types are vision encoders.

A family is the transformers ``model_type`` of the module's config, or the module's class name for plain
PyTorch models (``EfficientNetLite``). Targets are module-name suffixes at a dot boundary (see
``techniques/adapters.py``); ``"q_proj|query"`` lists alternatives, the first that matches being used, since
transformers renames layers between versions (ViT's ``attention.query`` became ``attention.q_proj``).
"""

from __future__ import annotations

# family -> (LoRA targets, IA3 targets, the IA3 targets treated as feed-forward: IA3 scales their input)
_BERT = (["query", "value"], ["key", "value", "output.dense"], ["output.dense"])
_CLIP = (["q_proj", "v_proj"], ["k_proj", "v_proj", "fc2"], ["fc2"])
_VIT = (
    ["q_proj|query", "v_proj|value"],
    ["k_proj|key", "v_proj|value", "fc2|output.dense"],
    ["fc2|output.dense"],
)
ADAPTER_TARGETS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # text encoders
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "camembert": _BERT,
    "electra": _BERT,
    "mpnet": (["q", "v"], ["k", "v", "output.dense"], ["output.dense"]),
    "deberta-v2": (
        ["query_proj", "value_proj"],
        ["key_proj", "value_proj", "output.dense"],
        ["output.dense"],
    ),
    "distilbert": (["q_lin", "v_lin"], ["k_lin", "v_lin", "lin2"], ["lin2"]),
    "modernbert": (["Wqkv", "attn.Wo"], ["Wqkv", "mlp.Wo"], ["mlp.Wo"]),
    # vision encoders
    "vit": _VIT,
    "deit": _VIT,
    "beit": _VIT,
    "swin": _VIT,
    "dinov2": _VIT,
    "convnext": (["pwconv1", "pwconv2"], ["pwconv1", "pwconv2"], ["pwconv2"]),
    "convnextv2": (["pwconv1", "pwconv2"], ["pwconv1", "pwconv2"], ["pwconv2"]),
    "resnet": (["convolution"], ["convolution"], []),
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
    "siglip": _CLIP,
    "siglip_vision_model": _CLIP,
    # plain PyTorch
    "EfficientNetLite": (
        ["_expand_conv", "_project_conv", "_conv_head"],
        ["_project_conv", "_conv_head"],
        [],
    ),
}

# transformers model types loaded as image encoders (anything else with a config is tried as a text encoder)
VISION_TYPES = {
    "vit",
    "deit",
    "dinov2",
    "beit",
    "swin",
    "convnext",
    "convnextv2",
    "resnet",
    "clip",
    "clip_vision_model",
    "siglip",
    "siglip_vision_model",
}

# how the pooled image feature is defined per family (documented in docs/backbones.md)
VISION_POOLING = {
    "vit": "cls",  # the [CLS] token after the final LayerNorm (ViT's own pooler is an untrained tanh layer)
    "deit": "cls",
    "dinov2": "cls",  # DINOv2's pooler output is the [CLS] token after LayerNorm
    "beit": "pooler",  # mean of the patch tokens, then LayerNorm (BEiT's use_mean_pooling)
    "swin": "pooler",  # mean of the last stage's tokens after LayerNorm
    "convnext": "pooler",  # global average pool, then LayerNorm
    "convnextv2": "pooler",
    "resnet": "pooler",  # global average pool
    "clip": "projected",  # the projected image embedding (the one CLIP compares with text)
    "clip_vision_model": "projected",
    "siglip": "pooler",  # SigLIP's attention-pooling head: its image embedding
    "siglip_vision_model": "pooler",
}


def family_of(module) -> str:
    config = getattr(module, "config", None)
    return getattr(config, "model_type", None) or type(module).__name__
