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


def parse_backbone_spec(spec: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` to ``(name, {key: value})``, values as ints where they are ints. Only a
    registered name takes options, so folders and hub ids pass through whole."""
    base, sep, rest = spec.partition(":")
    if not sep or base not in _REGISTRY:
        return spec, {}
    options: dict = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise BackboneError(f"{spec!r}: options are key=value pairs after the colon; got {part!r}.")
        value = value.strip()
        options[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return base, options


def available_backbones() -> dict[str, BackboneSpec]:
    return dict(_REGISTRY)


def get_backbone(name_or_path: str, **kwargs) -> Backbone:
    """A backbone by registry name, local transformers folder, saved warmstart backbone folder or hub id.

    A registered name may carry options after a colon, which make cheaper or deliberately worse variants (for
    ranking studies and baselines): ``num_layers=N`` keeps a text encoder's first N layers (0 leaves the
    embeddings alone), ``num_blocks=N`` keeps an image CNN's first N blocks, ``init=random`` replaces the
    pretrained weights with a seeded random initialisation (``seed=S``, default 0).

        >>> get_backbone("all-MiniLM-L6-v2:num_layers=2,init=random")  # doctest: +SKIP
    """
    base, options = parse_backbone_spec(name_or_path)
    if base in _REGISTRY:
        init, seed = options.pop("init", "pretrained"), int(options.pop("seed", 0))
        if init not in ("pretrained", "random"):
            raise BackboneError(f"{name_or_path!r}: init must be 'pretrained' or 'random'; got {init!r}.")
        try:
            bb = _REGISTRY[base].factory(**options, **kwargs)
        except TypeError as e:
            raise BackboneError(
                f"{name_or_path!r}: {base} does not take these options ({e}). Text encoders take num_layers, "
                f"image CNNs num_blocks; any backbone takes init=random and seed."
            ) from e
        if init == "random":
            bb.reset_parameters(seed)
        if base != name_or_path:
            bb.name = bb.source = name_or_path
        return bb
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
