"""Loading a backbone from a folder: one written by ``Backbone.save`` or a plain transformers folder."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BackboneError
from .base import Backbone


def load_saved_backbone(folder: str | Path, **kwargs) -> Backbone:
    folder = Path(folder)
    meta_path = folder / "warmstart_backbone.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"kind": "transformers-text"}
    kind = meta.get("kind")
    if kind == "transformers-text":
        if not (folder / "config.json").is_file():
            raise BackboneError(
                f"{folder}: not a backbone folder (no config.json or warmstart_backbone.json). "
                f"Pass a registered name, a transformers model folder or a hub id."
            )
        from .text_transformers import TransformerTextBackbone

        opts = {k: meta[k] for k in ("pooling", "normalize", "max_length") if k in meta}
        opts.update(kwargs)
        opts.setdefault("name", meta.get("name", str(folder)))
        bb = TransformerTextBackbone.from_pretrained(folder, **opts)
        bb.source = str(folder)
        return bb
    if kind == "efficientnet-lite":
        from .efficientnet_lite import EfficientNetLiteBackbone

        return EfficientNetLiteBackbone.load_saved(folder, meta, **kwargs)
    raise BackboneError(
        f"{meta_path}: unknown backbone kind {kind!r}; this warmstart version reads "
        f"'transformers-text' and 'efficientnet-lite'."
    )
