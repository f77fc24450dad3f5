"""warmstart: transfer learning for text and images.

Example:
    >>> import warmstart
    >>> sorted(warmstart.available_techniques())[:1]
    ['probe']
"""

__version__ = "0.1.0"

from .artifact import load_artifact, save_artifact  # noqa: E402
from .backbones import available_backbones, get_backbone, register_backbone  # noqa: E402
from .data import few_shot, from_arrays, load_image_folder, load_packaged, load_text, stratified_split  # noqa: E402
from .features import FeatureCache  # noqa: E402
from .run import fit_run  # noqa: E402
from .techniques import available_techniques, get_technique, register_technique  # noqa: E402

__all__ = [
    "FeatureCache",
    "available_backbones",
    "available_techniques",
    "few_shot",
    "fit_run",
    "from_arrays",
    "get_backbone",
    "get_technique",
    "load_artifact",
    "load_image_folder",
    "load_packaged",
    "load_text",
    "register_backbone",
    "register_technique",
    "save_artifact",
    "stratified_split",
    "__version__",
]
