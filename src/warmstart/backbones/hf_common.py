"""Shared by the Hugging Face families (text and vision): quiet loading, the untrained pooler, cutting a layer stack,
and re-initialisation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from ..errors import BackboneError


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars; warmstart reports what matters itself."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:  # as the user had them: bars they turned off stay off
            hf_logging.enable_progress_bar()


def drop_untrained_pooler(model: torch.nn.Module, info: dict, src: str) -> None:
    """Encoders saved without a pooler get a random one from AutoModel; we never use it, so remove it
    (random weights would also change the fingerprint on every load). Other missing weights are an error."""
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing and all(k.startswith("pooler.") for k in missing) and hasattr(model, "pooler"):
        model.pooler = None
    elif missing:
        raise BackboneError(
            f"{src}: the checkpoint lacks weights for {missing[:5]} ({len(missing)} in all); "
            f"they would be random. Check the folder holds the full model."
        )


def _main_stack(model: torch.nn.Module) -> tuple[torch.nn.Module, str] | None:
    """The repeated transformer layers (``encoder.layer`` or ``encoder.layers``) and the path to them."""
    for path in (
        "encoder.layer",
        "vision_model.encoder.layers",
        "encoder.layers",
        "layers",
        "transformer.layer",
    ):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj, path
    return None


def truncate_layers(model: torch.nn.Module, num_layers: int, src: str) -> None:
    """Keep the first ``num_layers`` of a transformer's layer stack (``num_hidden_layers`` updated)."""
    found = _main_stack(model)
    if found is None:
        raise BackboneError(f"{src}: cannot cut layers of {type(model).__name__} (no stack of layers found).")
    stack, path = found
    if not 0 <= num_layers <= len(stack):
        raise BackboneError(
            f"The 'num_layers' parameter must be an int in [0, {len(stack)}] for {src}. Got {num_layers!r}."
        )
    owner: Any = model
    for part in path.split(".")[:-1]:
        owner = getattr(owner, part)
    setattr(owner, path.split(".")[-1], torch.nn.ModuleList(list(stack)[:num_layers]))
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "num_hidden_layers"):
        cfg.num_hidden_layers = num_layers


def hf_reset_parameters(module: torch.nn.Module, seed: int) -> bool:
    """The model's own initialisation (e.g. BERT's normal(0, 0.02)) from ``seed``; False where it has none."""
    init = getattr(module, "_init_weights", None)
    if init is None:
        return False
    torch.manual_seed(seed)
    # transformers (>= 4.5x) marks loaded tensors as initialised and its init functions then skip them, which
    # would leave the pretrained weights in place: clear the marks first
    for t in [*module.parameters(), *module.buffers()]:
        if getattr(t, "_is_hf_initialized", False):
            t._is_hf_initialized = False
    module.apply(init)
    return True


def truncate_stages(model: torch.nn.Module, num_stages: int, src: str) -> None:
    """Keep the first ``num_stages`` stages of a model built in stages of growing width (ConvNeXt, ResNet, Swin).

    The feature then comes from the last kept stage. Its final LayerNorm (ConvNeXt, Swin) normalises the last
    stage's width, so where that width changes it is replaced by a fresh one (weight 1, bias 0): the pretrained
    affine parameters of a norm over other channels cannot carry over.
    """
    encoder = model.encoder
    stages = getattr(encoder, "stages", None)
    if stages is None:
        stages = encoder.layers
    if not 1 <= num_stages <= len(stages):
        raise BackboneError(
            f"The 'num_layers' parameter must be an int in [1, {len(stages)}] for {src} (it counts stages here). "
            f"Got {num_stages!r}."
        )
    kept = torch.nn.ModuleList(list(stages)[:num_stages])
    cfg = model.config
    if hasattr(encoder, "stages"):
        encoder.stages = kept
        width = cfg.hidden_sizes[num_stages - 1]
        cfg.hidden_sizes, cfg.depths = list(cfg.hidden_sizes[:num_stages]), list(cfg.depths[:num_stages])
        if hasattr(cfg, "num_stages"):
            cfg.num_stages = num_stages
    else:  # Swin: the last kept stage no longer merges patches for a next one
        encoder.layers = kept
        kept[-1].downsample = None
        width = int(cfg.embed_dim * 2 ** (num_stages - 1))
        cfg.depths, cfg.num_heads = list(cfg.depths[:num_stages]), list(cfg.num_heads[:num_stages])
        cfg.num_layers = num_stages
        encoder.num_layers = num_stages
        model.num_features = width
    norm = getattr(model, "layernorm", None)
    if isinstance(norm, torch.nn.LayerNorm) and norm.normalized_shape[0] != width:
        model.layernorm = torch.nn.LayerNorm(width, eps=norm.eps)
