"""warmstart: transfer learning for text and images.

The names below are imported on first use, so ``warmstart --help`` (and any import of a light submodule) does
not pay for torch.

Example:
    >>> import warmstart
    >>> "probe" in warmstart.available_techniques()
    True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FeatureCache": "features",
    "available_backbones": "backbones",
    "available_techniques": "techniques",
    "few_shot": "data",
    "fit_run": "run",
    "from_arrays": "data",
    "get_backbone": "backbones",
    "get_technique": "techniques",
    "load_artifact": "artifact",
    "load_image_folder": "data",
    "load_packaged": "data",
    "load_text": "data",
    "register_backbone": "backbones",
    "register_technique": "techniques",
    "save_artifact": "artifact",
    "stratified_split": "data",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'warmstart' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
