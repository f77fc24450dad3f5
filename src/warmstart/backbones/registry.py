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
    needs: str = ""  # the packages that carry the weights, shown by `warmstart backbones`
    licence: str = ""  # of the weights
    hub_id: str = ""  # where the same weights live on the Hugging Face hub (a model card's base_model)
    ready: Callable[[], bool] | None = (
        None  # whether the weights are here; default: the packages are installed
    )

    def installed(self) -> bool:
        if self.ready is not None:
            return bool(self.ready())
        import importlib.metadata

        for pkg in filter(None, (p.strip() for p in self.needs.split(","))):
            try:
                importlib.metadata.distribution(pkg)
            except importlib.metadata.PackageNotFoundError:
                return False
        return True


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    modality: str,
    description: str,
    needs: str = "",
    licence: str = "",
    ready: Callable[[], bool] | None = None,
    hub_id: str = "",
):
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
        _REGISTRY[name] = BackboneSpec(name, modality, factory, description, needs, licence, hub_id, ready)
        return factory

    return deco


def parse_backbone_spec(spec: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` to ``(name, {key: value})``, values as ints where they are ints. The options
    follow the last colon of a registered name, a folder or a hub id (``hf:org/name:num_layers=2``); a colon
    not followed by key=value pairs is part of the name."""
    base, sep, rest = spec.rpartition(":")
    if not sep or not base or base == "hf":
        return spec, {}
    parts = [p for p in rest.split(",") if p.strip()]
    if not parts or not all("=" in p for p in parts):
        if base in _REGISTRY:
            bad = next((p for p in parts if "=" not in p), rest)
            raise BackboneError(f"{spec!r}: options are key=value pairs after the colon; got {bad!r}.")
        return spec, {}
    options: dict = {}
    for part in parts:
        key, _, value = part.partition("=")
        if not key.strip():
            raise BackboneError(f"{spec!r}: options are key=value pairs after the colon; got {part!r}.")
        value = value.strip()
        options[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return base, options


def available_backbones() -> dict[str, BackboneSpec]:
    return dict(_REGISTRY)


def get_backbone(name_or_path: str, **kwargs) -> Backbone:
    """A backbone by registry name, local folder or Hugging Face hub id; the family is read from the model's
    config (``hf:`` before a hub id or folder says so explicitly).

    Options after a colon make cheaper or deliberately worse variants (for ranking studies and baselines):
    ``num_layers=N`` keeps a transformer's first N layers (0 leaves the embeddings alone), ``num_blocks=N`` keeps
    an image CNN's first N blocks, ``init=random`` replaces the pretrained weights with a seeded random
    initialisation (``seed=S``, default 0).

        >>> get_backbone("all-MiniLM-L6-v2:num_layers=2,init=random").num_features
        384

    A hub id downloads the model (this example is skipped: it needs the network):

        >>> get_backbone("hf:facebook/dinov2-small")  # doctest: +SKIP
    """
    # a folder is a folder, even with a colon in its name (one named after an option spec, for instance)
    is_folder = Path(name_or_path).expanduser().is_dir()
    base, options = (name_or_path, {}) if is_folder else parse_backbone_spec(name_or_path)
    init, seed = options.pop("init", "pretrained"), int(options.pop("seed", 0))
    if init not in ("pretrained", "random"):
        raise BackboneError(f"{name_or_path!r}: init must be 'pretrained' or 'random'; got {init!r}.")
    try:
        bb = _load(base, name_or_path, {**options, **kwargs})
    except TypeError as e:
        raise BackboneError(
            f"{name_or_path!r}: {base} does not take these options ({e}). Transformers take num_layers, "
            f"image CNNs num_blocks; any backbone takes init=random and seed."
        ) from e
    if init == "random":
        bb.reset_parameters(seed)
    if base != name_or_path:
        bb.name = bb.source = name_or_path
    return bb


def _load(base: str, spec: str, kwargs: dict) -> Backbone:
    if base in _REGISTRY:
        return _REGISTRY[base].factory(**kwargs)
    if base.startswith("static:"):
        from .static import static_backbone

        teacher = base[len("static:") :]
        return static_backbone(get_backbone(teacher), teacher, **kwargs)
    from .hub import strip_prefix

    src = strip_prefix(base)
    path = Path(src).expanduser()
    if path.is_dir():
        from .saved import load_saved_backbone

        return load_saved_backbone(path, **kwargs)
    looks_like_hub_id = src.count("/") == 1 and not src.startswith((".", "/", "~"))
    if looks_like_hub_id or base.startswith("hf:"):
        from .saved import load_hf_model

        return load_hf_model(src, **kwargs)
    close = difflib.get_close_matches(base, list(_REGISTRY), n=3, cutoff=0.3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise BackboneError(
        f"unknown backbone {spec!r}.{hint} `warmstart backbones` lists the registered ones; a local model folder "
        f"or a hub id like 'org/model' (or 'hf:org/model') also works."
    )
