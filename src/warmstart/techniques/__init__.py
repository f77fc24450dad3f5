"""Techniques: one module each, registered by name. Adding one is a new module plus one import line here."""

from .base import Interval, Technique, available_techniques, get_technique, register_technique
from .probe import LinearProbe

__all__ = [
    "Interval",
    "LinearProbe",
    "Technique",
    "available_techniques",
    "get_technique",
    "register_technique",
]
