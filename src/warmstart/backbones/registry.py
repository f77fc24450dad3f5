"""Backbone registry: names to factories, with close-match suggestions for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackboneError
from .base import Backbone


@dataclass
class BackboneSpec:
    name: str
    modality: str
    factory: Callable[..., Backbone]
    description: str
    needs: str = ""  # the package that carries the weights, shown by `warmstart backbones`


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, modality: str, description: str, needs: str = ""):
    """Decorator that registers ``factory(**kwargs) -> Backbone`` under ``name``.

    Example:
        >>> @register_backbone("my-encoder", "text", "an example")
        ... def _make(**kw):
        ...     raise NotImplementedError
        >>> "my-encoder" in available_backbones()
        True
        >>> _ = _REGISTRY.pop("my-encoder")
    """

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _REGISTRY[name] = BackboneSpec(name, modality, factory, description, needs)
        return factory

    return deco


def available_backbones() -> dict[str, BackboneSpec]:
    return dict(_REGISTRY)


def get_backbone(name_or_path: str, **kwargs) -> Backbone:
    """A backbone by registry name, local transformers folder, saved warmstart backbone folder or hub id."""
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path].factory(**kwargs)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        from .saved import load_saved_backbone

        return load_saved_backbone(path, **kwargs)
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if looks_like_hub_id:
        from .text_transformers import TransformerTextBackbone

        return TransformerTextBackbone.from_pretrained(name_or_path, **kwargs)
    close = difflib.get_close_matches(name_or_path, list(_REGISTRY), n=3, cutoff=0.3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise BackboneError(
        f"unknown backbone {name_or_path!r}.{hint} `warmstart backbones` lists the registered ones; a local "
        f"transformers folder or a hub id like 'org/model' also works."
    )
