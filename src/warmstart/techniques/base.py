"""The technique contract: scikit-learn-style estimators registered by name.

``__init__`` stores keyword hyperparameters only; ``fit(train, val)`` returns self; fitted state ends in ``_``;
``get_params`` reads the signature. Constraints are declared per class and checked in ``fit``, with messages like
"The 'C' parameter of LinearProbe must be a float in (0, inf) or 'auto'. Got -1 instead."
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..backbones import Backbone, get_backbone
from ..data import Dataset, from_arrays
from ..errors import DataError, ParameterError

_TECHNIQUES: dict[str, type[Technique]] = {}


def register_technique(name: str):
    """Class decorator: make a technique available as ``--technique NAME``."""

    def deco(cls: type[Technique]) -> type[Technique]:
        cls.name = name
        _TECHNIQUES[name] = cls
        return cls

    return deco


def available_techniques() -> dict[str, type[Technique]]:
    return dict(_TECHNIQUES)


def get_technique(name: str, **params: Any) -> Technique:
    if name not in _TECHNIQUES:
        close = difflib.get_close_matches(name, list(_TECHNIQUES), n=3, cutoff=0.3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ParameterError(
            f"unknown technique {name!r}.{hint} Available: {', '.join(sorted(_TECHNIQUES))}."
        )
    cls = _TECHNIQUES[name]
    known = cls._param_names()
    unknown = [k for k in params if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ParameterError(
            f"{name} has no parameter {unknown[0]!r}.{hint} `warmstart techniques -v` lists each technique's "
            f"parameters."
        )
    return cls(**params)


@dataclass(frozen=True)
class Interval:
    """A numeric range constraint, e.g. ``Interval(float, 0, None, "neither")`` for (0, inf)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return False
        if self.kind is int and not float(v).is_integer():
            return False
        if isinstance(v, float) and math.isnan(v):
            return False
        lo_ok = self.low is None or (v >= self.low if self.closed in ("both", "left") else v > self.low)
        hi_ok = self.high is None or (v <= self.high if self.closed in ("both", "right") else v < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        article = "an" if self.kind is int else "a"
        return f"{article} {self.kind.__name__} in {left}{lo}, {hi}{right}"


def _describe(option: Any) -> str:
    if isinstance(option, Interval):
        return option.describe()
    if isinstance(option, type):
        return f"an instance of {option.__name__}"
    return repr(option) if option is not None else "None"


class Technique:
    """Base class of every technique. Subclasses fill in ``fit`` and ``_features_to_logits``."""

    name: ClassVar[str] = ""
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        """Keyword parameters of ``__init__`` along the class hierarchy, so a subclass can take its own
        parameters and pass the rest on with ``**kwargs``."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            params = inspect.signature(klass.__init__).parameters.values()
            names += [
                p.name
                for p in params
                if p.name != "self"
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                and p.name not in names
            ]
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return names

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Technique:
        for k, v in params.items():
            if k not in self._param_names():
                raise ParameterError(
                    f"{type(self).__name__} has no parameter {k!r}; it has {self._param_names()}."
                )
            setattr(self, k, v)
        return self

    def _validate_params(self) -> None:
        for key, options in self._parameter_constraints.items():
            value = getattr(self, key)
            if any(_matches(o, value) for o in options):
                continue
            allowed = " or ".join(_describe(o) for o in options)
            raise ParameterError(
                f"The {key!r} parameter of {type(self).__name__} must be {allowed}. Got {value!r} instead."
            )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, Backbone))
        return f"{type(self).__name__}({params})"

    def backbone_record(self, embed: bool) -> tuple[dict, bool]:
        """What backbone.json records, and whether the backbone's weights go into the artifact (asked: ``embed``)."""
        return self.backbone_.reference(), embed

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Predicted labels from ``predict_proba``'s output (the most probable class, by default)."""
        return self.classes_[np.asarray(proba).argmax(1)]

    def trainable_parameters(self) -> int:
        """How many numbers training changed (for a probe: the head's)."""
        head = getattr(self, "head_", None)
        return sum(p.numel() for p in head.parameters()) if head is not None else 0

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ParameterError(f"this {type(self).__name__} is not fitted yet; call fit(train) first.")


def _matches(option: Any, value: Any) -> bool:
    if isinstance(option, Interval):
        return option.ok(value)
    if isinstance(option, type):
        return isinstance(value, option)
    return value is option if option is None else (type(value) is type(option) and value == option)


def resolve_backbone(backbone: str | Backbone) -> Backbone:
    return backbone if isinstance(backbone, Backbone) else get_backbone(backbone)


def as_dataset(inputs: Any, modality: str) -> Dataset:
    """Accept a Dataset, a list of texts, a list of image paths or an image array."""
    if isinstance(inputs, Dataset):
        return inputs
    if isinstance(inputs, str):
        raise DataError("expected a list of inputs, got a single string; wrap it in a list.")
    if modality == "image" and isinstance(inputs, np.ndarray):
        return from_arrays(inputs)
    return Dataset(list(inputs), None, modality)


def known_label_rows(data: Dataset | None, classes: np.ndarray) -> list[int]:
    """Rows of a labelled ``data`` whose label is one of ``classes`` (validation rows a model can be scored on)."""
    if data is None or data.labels is None:
        return []
    seen = set(classes)
    return [i for i, lab in enumerate(data.labels) if lab in seen]


def require_single_label(data: Dataset, technique: str) -> None:
    """Fail clearly when a single-label technique is given label sets."""
    if data.multilabel:
        raise DataError(
            f"{data.source}: the labels are label sets (multi-label), which {technique!r} does not support; "
            f"use --technique contrastive, which trains one-vs-rest heads on label sets."
        )


def encode_labels(labels: list[str], classes: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))
