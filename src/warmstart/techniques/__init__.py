"""Techniques: one module each, registered by name. Adding one is a new module plus one import line here."""

from .adapters import IA3, LoRA
from .base import Interval, Technique, available_techniques, get_technique, register_technique
from .bitfit import BitFit
from .contrastive import Contrastive
from .finetune import FineTune
from .l2sp import L2SP
from .lp_ft import LPFT
from .probe import LinearProbe
from .scratch import Scratch
from .tuned import TunedTechnique

__all__ = [
    "IA3",
    "L2SP",
    "LPFT",
    "BitFit",
    "Contrastive",
    "FineTune",
    "Interval",
    "LinearProbe",
    "LoRA",
    "Scratch",
    "Technique",
    "TunedTechnique",
    "available_techniques",
    "get_technique",
    "register_technique",
]
