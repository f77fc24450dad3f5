"""The technique contract: scikit-learn estimators registered by name.

``__init__`` stores keyword hyperparameters only; ``fit(X, y=None, val=None)`` rebuilds every fitted attribute
(they end in ``_``) from the current parameters and returns self; ``predict``, ``predict_proba`` and ``score``
take the inputs ``data.inputs.as_dataset`` reads (lists, arrays, pandas, Hugging Face datasets, warmstart's
``Dataset``). ``get_params`` reads the signature, so ``sklearn.base.clone``, ``GridSearchCV``, ``Pipeline`` and
``cross_val_score`` work. Constraints are declared per class and checked in ``fit``, with messages like
"The 'C' parameter of LinearProbe must be a float in (0, inf) or 'auto'. Got -1 instead."
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from ..backbones import Backbone, get_backbone
from ..data import Dataset
from ..data.inputs import as_dataset
from ..errors import DataError, ParameterError, WarmstartError

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


class NotFittedError(WarmstartError, SklearnNotFittedError):
    """``predict`` before ``fit``: scikit-learn's own exception, so its tools recognise it."""


class Technique(ClassifierMixin, BaseEstimator):
    """Base class of every technique: a scikit-learn classifier whose inputs are raw texts or images.

    Subclasses fill in ``fit``, ``predict_proba`` and persistence; ``input_col``/``label_col`` (parameters of
    every technique) name the columns of table-like inputs.
    """

    name: ClassVar[str] = ""
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a subclass's ``__init__`` its whole signature: its own parameters, then (keyword-only) those it
        passes on with ``**kwargs``. scikit-learn (and ``help``) read the signature, not the class chain."""
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        if init is None:
            return
        own = inspect.signature(init).parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in own):
            return
        params = [p for p in own if p.kind is not p.VAR_KEYWORD]
        seen = {p.name for p in params}
        for base in cls.__mro__[1:]:
            if "__init__" not in vars(base) or base is object:
                continue
            for p in inspect.signature(base.__init__).parameters.values():
                if p.name not in seen and p.name != "self" and p.kind is not p.VAR_KEYWORD:
                    params.append(p.replace(kind=p.KEYWORD_ONLY))
                    seen.add(p.name)
            break  # the first base with an __init__ already carries its own whole signature
        init.__signature__ = inspect.Signature(params)

    @classmethod
    def _param_names(cls) -> list[str]:
        """Keyword parameters of ``__init__``: its whole signature, which ``__init_subclass__`` extends with
        the parameters a subclass passes on with ``**kwargs``."""
        if cls.__init__ is object.__init__:
            return []
        params = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    @classmethod
    def _get_param_names(cls) -> list[str]:  # scikit-learn's get_params and clone read this
        return cls._param_names()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # raw texts (or images) in, not a numeric 2-d array: scikit-learn's numeric checks do not apply
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")

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

    def _calibrate(self, logits: Any, y: np.ndarray) -> None:
        """Temperature scaling on labelled validation rows (``calibrate="auto"``): fit ``T`` on their logits and
        fold it into ``head_``; sets ``temperature_`` (None when not fitted: ``calibrate="none"``, or fewer than
        ``calibrate.MIN_ROWS`` rows)."""
        from .calibrate import MIN_ROWS, fit_temperature, scale_head

        self.temperature_ = None
        if getattr(self, "calibrate", "none") == "none" or len(y) < MIN_ROWS:
            return
        logits = np.asarray(logits.numpy() if hasattr(logits, "numpy") else logits, dtype=np.float64)
        self.temperature_ = round(fit_temperature(logits, np.asarray(y)), 6)
        scale_head(self.head_, self.temperature_)

    def _calibrate_head(self, val_xy: tuple[np.ndarray, np.ndarray] | None) -> None:
        """``_calibrate`` on validation features ``(X, y)`` through ``head_`` (a head on features: the probe's,
        contrastive's); no validation rows (None): no temperature."""
        if val_xy is None:
            self.temperature_ = None
            return
        import torch

        with torch.inference_mode():
            self._calibrate(self.head_(torch.from_numpy(np.asarray(val_xy[0])).float()), val_xy[1])

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first.")

    # -- inputs ----------------------------------------------------------------------------------------------
    def _reset_fitted(self) -> None:
        """Forget every fitted attribute, so a fit starts from the current parameters only."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.endswith("__")]:
            delattr(self, key)

    def _fit_data(self, X: Any, y: Any, val: Any, modality: str) -> tuple[Dataset, Dataset | None]:
        """The training rows (labelled, single-label unless the technique says otherwise) and validation rows
        (a ``Dataset``, a labelled table, or an ``(X_val, y_val)`` pair) as ``Dataset``s."""
        train = self._data(X, y, modality, need_labels=True)
        train.require_labels()
        if val is None:
            return train, None
        if isinstance(val, tuple) and len(val) == 2 and not isinstance(val[1], str):
            return train, self._data(val[0], val[1], modality, need_labels=True)
        return train, self._data(val, None, modality, need_labels=True)

    def _data(self, X: Any, y: Any = None, modality: str | None = None, need_labels: bool = False) -> Dataset:
        """``X`` (and ``y``) as a ``Dataset`` for this technique's backbone (``data.inputs.as_dataset``)."""
        return as_dataset(
            X,
            y,
            modality=modality or self.backbone_.modality,
            input_col=getattr(self, "input_col", None),
            label_col=getattr(self, "label_col", None),
            need_labels=need_labels,
        )

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Accuracy of ``predict(X)`` against ``y`` (or ``X``'s label column); for multi-label data, the share
        of rows whose whole label set is right."""
        self._check_fitted()
        data = self._data(X, y, need_labels=True)
        pred = self.predict(data)
        right = np.fromiter((p == t for p, t in zip(pred, data.labels, strict=True)), bool, len(data))
        return float(np.average(right, weights=sample_weight))


def _matches(option: Any, value: Any) -> bool:
    if isinstance(option, Interval):
        return option.ok(value)
    if isinstance(option, type):
        return isinstance(value, option)
    return value is option if option is None else (type(value) is type(option) and value == option)


def resolve_backbone(backbone: str | Backbone) -> Backbone:
    return backbone if isinstance(backbone, Backbone) else get_backbone(backbone)


def plain_classes(classes: Any) -> list[Any]:
    """The classes as plain JSON values (numpy scalars unwrapped): integers stay integers, names stay strings."""
    return [c.item() if hasattr(c, "item") else c for c in classes]


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
