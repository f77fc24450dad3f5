"""Loading a backbone from a folder (one written by ``Backbone.save``, a transformers or sentence-transformers
folder) or a hub id, choosing the family from what the folder holds."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BackboneError
from .base import Backbone


def load_saved_backbone(folder: str | Path, **kwargs) -> Backbone:
    folder = Path(folder)
    meta_path = folder / "warmstart_backbone.json"
    if not meta_path.is_file():
        if not (folder / "config.json").is_file():
            raise BackboneError(
                f"{folder}: not a backbone folder (no config.json or warmstart_backbone.json). "
                f"Pass a registered name, a transformers model folder or a hub id."
            )
        return load_hf_model(str(folder), **kwargs)
    meta = json.loads(meta_path.read_text())
    kind = meta.get("kind")
    if kind == "transformers-text":
        from .text_transformers import TransformerTextBackbone

        opts = {k: meta[k] for k in ("pooling", "normalize", "max_length") if k in meta}
        opts.update(kwargs)
        opts.setdefault("name", meta.get("name", str(folder)))
        bb = TransformerTextBackbone.from_pretrained(folder, **opts)
        bb.source = str(folder)
        return bb
    if kind == "hf-vision":
        from .hf_vision import HFVisionBackbone

        return HFVisionBackbone.load_saved(folder, meta, **kwargs)
    if kind == "efficientnet-lite":
        from .efficientnet_lite import EfficientNetLiteBackbone

        return EfficientNetLiteBackbone.load_saved(folder, meta, **kwargs)
    if kind == "static-text":
        from .static import StaticBackbone

        return StaticBackbone.load_saved(folder, meta, **kwargs)
    raise BackboneError(
        f"{meta_path}: unknown backbone kind {kind!r}; this warmstart version reads "
        f"'transformers-text', 'static-text', 'hf-vision' and 'efficientnet-lite'."
    )


def load_hf_model(src: str, **kwargs) -> Backbone:
    """A transformers model (folder or hub id) as a text or image backbone, by its config's ``model_type``;
    a sentence-transformers model (``modules.json``) is a text encoder."""
    from .families import VISION_TYPES
    from .hub import model_json, prepare_hub_id

    prepare_hub_id(src)
    config = model_json(src, "config.json") or {}
    if model_json(src, "modules.json") is None and config.get("model_type") in VISION_TYPES:
        from .hf_vision import HFVisionBackbone

        return HFVisionBackbone.from_pretrained(src, **kwargs)
    from .text_transformers import TransformerTextBackbone

    return TransformerTextBackbone.from_pretrained(src, **kwargs)
