"""Linear probe: logistic regression on frozen, cached backbone features."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..backbones import Backbone
from ..data import Dataset
from ..features import FeatureCache
from ..runtime import PRECISIONS, resolve
from .base import (
    Interval,
    Technique,
    encode_labels,
    known_label_rows,
    register_technique,
    require_single_label,
    resolve_backbone,
)
from .head import LinearHead

C_GRID = (0.01, 0.1, 1.0, 10.0)


@register_technique("probe")
class LinearProbe(Technique):
    """Multinomial logistic regression on standardised features of a frozen backbone.

    ``C="auto"`` picks the inverse regularisation strength from ``C_GRID`` by accuracy on ``val`` when given,
    else by stratified cross-validation on the training rows (when every class has at least 2).

    Example:
        >>> from warmstart.data import load_packaged, few_shot
        >>> data = load_packaged("sms-spam").train
        >>> train = data.subset(few_shot(data.labels, k=8))
        >>> probe = LinearProbe("all-MiniLM-L6-v2", progress=False).fit(train)
        >>> probe.predict(["WIN a FREE prize now!!! Txt CLAIM to 81010"]).shape, probe.classes_.tolist()
        ((1,), ['ham', 'spam'])
        >>> test = data.subset(range(300))
        >>> probe.score(test) > 0.6  # sms-spam is 87% ham: accuracy from 8 rows per class
        True
    """

    _parameter_constraints = {
        "backbone": [str, Backbone],
        "C": [Interval(float, 0, None, "neither"), "auto"],
        "max_iter": [Interval(int, 1, None)],
        "device": [str],
        "precision": list(PRECISIONS),
        "batch_size": [Interval(int, 1, None), None],
        "cache_dir": [str, None],
        "use_cache": [bool],
        "seed": [Interval(int, 0, None)],
        "progress": [bool],
        "calibrate": ["auto", "none"],
        "input_col": [str, None],
        "label_col": [str, None],
    }

    def __init__(
        self,
        backbone: str | Backbone = "all-MiniLM-L6-v2",
        C: float | str = "auto",
        max_iter: int = 2000,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        cache_dir: str | None = None,
        use_cache: bool = True,
        seed: int = 0,
        progress: bool = True,
        calibrate: str = "auto",
        input_col: str | None = None,
        label_col: str | None = None,
    ):
        self.backbone = backbone
        self.C = C
        self.max_iter = max_iter
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.seed = seed
        self.progress = progress
        self.calibrate = calibrate
        self.input_col = input_col
        self.label_col = label_col

    # -- phases ----------------------------------------------------------------------------------------------
    def features(self, data: Dataset) -> np.ndarray:
        """Backbone features for ``data`` (through the feature cache); ``fit`` resolves the backbone first."""
        if not hasattr(self, "backbone_"):
            self.backbone_ = resolve_backbone(self.backbone)
        if not hasattr(self, "cache_"):
            self.cache_ = FeatureCache(self.cache_dir, enabled=self.use_cache)
        rt = resolve(self.device, self.precision)
        return self.cache_.get(
            self.backbone_.to(rt.device),
            data,
            precision=rt.precision,
            batch_size=self.batch_size,
            progress=self.progress,
        )

    def fit(self, X: Any, y: Any = None, val: Any = None) -> LinearProbe:
        """Fit on ``X`` (texts or images in any form ``data.inputs.as_dataset`` reads) and labels ``y`` (or
        ``X``'s label column); ``val``: optional labelled rows that choose ``C``."""
        self._reset_fitted()
        self._validate_params()
        start = time.perf_counter()
        self.backbone_ = resolve_backbone(self.backbone)
        train, val = self._fit_data(X, y, val, self.backbone_.modality)
        require_single_label(train, self.name)
        self.classes_ = np.array(sorted(set(train.labels)))
        X = np.asarray(self.features(train), dtype=np.float64)
        y = encode_labels(train.labels, self.classes_)
        val_xy = None
        known = known_label_rows(val, self.classes_)
        if known:
            Xv = np.asarray(self.features(val), dtype=np.float64)[known]
            val_xy = (Xv, encode_labels([val.labels[i] for i in known], self.classes_))
        self.fit_features(X, y, len(self.classes_), val_xy)
        self._calibrate_head(val_xy)  # temperature scaling on the validation rows
        self.fit_seconds_ = time.perf_counter() - start
        self.n_train_ = len(train)
        return self

    def fit_features(
        self,
        X: np.ndarray,
        y: np.ndarray,
        num_classes: int,
        val_xy: tuple | None = None,
        per_feature_scale: bool = True,
        standardize: bool = True,
        c_grid: tuple[float, ...] = C_GRID,
    ) -> LinearProbe:
        """The probe's second phase on ready features: standardise, choose C, fit, build ``head_``.

        ``y`` holds class indices in ``[0, num_classes)``; ``val_xy`` is an optional ``(X_val, y_val)``.
        ``per_feature_scale=False`` divides by one global scale instead (what LP-FT fine-tunes from);
        ``standardize=False`` only centres the features, so ``C`` acts on their own scale.
        """
        X = np.asarray(X, dtype=np.float64)
        mean, scale = X.mean(0), X.std(0)
        if not standardize:
            scale = np.ones_like(scale)
        elif not per_feature_scale:
            scale = np.full_like(scale, scale.mean())
        scale[scale < 1e-12] = 1.0
        Z = (X - mean) / scale
        if val_xy is not None:
            val_xy = ((np.asarray(val_xy[0], dtype=np.float64) - mean) / scale, val_xy[1])
        self.C_, self.c_scores_ = self._choose_C(Z, y, val_xy, c_grid)
        clf = LogisticRegression(C=self.C_, max_iter=self.max_iter).fit(Z, y)
        self.head_ = LinearHead.from_sklearn(clf, mean, scale, num_classes)
        return self

    def _choose_C(
        self, Z: np.ndarray, y: np.ndarray, val_xy: tuple | None, grid: tuple[float, ...] = C_GRID
    ) -> tuple[float, dict[str, float]]:
        if self.C != "auto":
            return float(self.C), {}
        scores: dict[str, float] = {}
        if val_xy is not None:
            for c in grid:
                clf = LogisticRegression(C=c, max_iter=self.max_iter).fit(Z, y)
                scores[str(c)] = float((clf.predict(val_xy[0]) == val_xy[1]).mean())
        else:
            folds = min(5, int(np.bincount(y).min()))
            if folds < 2:
                return 1.0, {}
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            for c in grid:
                accs = []
                for tr, te in cv.split(Z, y):
                    clf = LogisticRegression(C=c, max_iter=self.max_iter).fit(Z[tr], y[tr])
                    accs.append((clf.predict(Z[te]) == y[te]).mean())
                scores[str(c)] = float(np.mean(accs))
        best = max(scores, key=lambda k: (scores[k], -abs(np.log10(float(k)))))  # ties: nearer to C=1
        return float(best), scores

    # -- inference -------------------------------------------------------------------------------------------
    def predict_proba(self, inputs: Any, tta: bool = False) -> np.ndarray:
        self._check_fitted()
        if tta:
            from ..errors import ParameterError

            raise ParameterError(
                "tta=True: the probe predicts from one feature vector per input and has no test-time "
                "augmentation; it is for trained techniques (finetune, lp_ft, lora, ...)."
            )
        X = torch.from_numpy(np.array(self.features(self._data(inputs)), dtype=np.float32))
        with torch.inference_mode():
            return self.head_(X).softmax(-1).numpy()

    def predict(self, inputs: Any, tta: bool = False) -> np.ndarray:
        proba = self.predict_proba(inputs, tta=tta)
        return self.classes_[proba.argmax(1)]

    # -- persistence (used by warmstart.artifact) ------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v for k, v in self.head_.state_dict().items()}

    def fitted_config(self) -> dict:
        return {
            "C_chosen": self.C_,
            "C_scores": self.c_scores_,
            "n_train": self.n_train_,
            "temperature": getattr(self, "temperature_", None),
        }

    @classmethod
    def from_saved(
        cls,
        params: dict,
        tensors: dict[str, torch.Tensor],
        classes: list[str],
        backbone: Backbone,
        fitted: dict | None = None,
    ) -> LinearProbe:
        est = cls(**{**params, "backbone": backbone})
        est.backbone_ = backbone
        est.classes_ = np.array(classes)
        est.head_ = LinearHead.from_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        return est
