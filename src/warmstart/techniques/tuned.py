"""The base class of every technique that trains backbone weights (or adapters on them) with the shared loop.

A technique is a small subclass that fills in hooks:

- ``_prepare(backbone)``: change the backbone before training (re-initialise it, inject adapters);
- ``_configure(model)``: choose what is trainable (``requires_grad``);
- ``_param_groups(model)``: learning rate per parameter group (layer-wise decay);
- ``_init_head(head, features, y)``: start the head from somewhere better than random (LP-FT);
- ``_hooks(model)``: an extra loss term (L2-SP) or a per-epoch action (gradual unfreezing);
- ``_finish(model)``: after training (merge adapters).

Everything else (splits into batches, the loop, checkpoints and resume, early stopping, inference, persistence,
cost records) is shared here and in ``train.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from .._io import warmstart_home
from ..backbones import Backbone
from ..backbones.base import BatchSource
from ..data import Dataset
from ..errors import ParameterError
from ..features import FeatureCache
from ..runtime import PRECISIONS, Runtime, peak_flops, resolve
from .augment import POLICIES, AugmentConfig, BatchAugmenter, tta_views
from .base import (
    Interval,
    Technique,
    encode_labels,
    known_label_rows,
    require_single_label,
    resolve_backbone,
)
from .domain import DomainCritic, batchnorms, coral_hook, dann_hook, recalibrate_batchnorm
from .head import LinearHead
from .train import Checkpointer, Hooks, LoopConfig, LoopState, train

NOT_IN_RUN_KEY = (
    "progress",
    "num_workers",
    "device",  # a run resumes on another device (the precision, which changes the numbers, stays in the key)
    "checkpoint_dir",
    "checkpoint_every",
    "checkpoint_seconds",
    "keep_checkpoint",
    "cache_dir",
    "use_cache",
    "input_col",  # which columns held the rows; the rows themselves are in the key
    "label_col",
)


class Classifier(nn.Module):
    """Backbone features followed by a head: ``logits = head(backbone.forward_features(**batch))``."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.body = backbone.module
        self.head = head
        self.backbone = backbone  # not an nn.Module: holds the forward_features recipe (pooling, etc.)
        # BatchNorm layers (names under ``body``) that normalise with their running statistics in training too
        self.kept_norms: tuple[str, ...] = ()

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(**batch))

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode:
            for name in self.kept_norms:
                self.body.get_submodule(name).eval()
        return self


@dataclass
class SoftTargets:
    """Class probabilities to train towards (a teacher's, in distillation): ``proba[i]`` for row ``i`` of the
    training rows, columns in the order of ``classes``. The loss is the cross-entropy against them of the
    student's logits divided by ``temperature``, times ``temperature ** 2`` (Hinton et al. 2015), so the
    gradients keep their size whatever the temperature."""

    classes: np.ndarray
    proba: np.ndarray
    temperature: float = 1.0

    def check(self, data: Dataset, classes: np.ndarray) -> np.ndarray:
        """The classes to train, after checking that the targets fit ``data`` (its labels among them)."""
        proba = np.asarray(self.proba)
        if proba.shape != (len(data), len(self.classes)):
            raise ParameterError(
                f"soft targets of shape {proba.shape} for {len(data)} rows and {len(self.classes)} classes; "
                f"give one row of class probabilities per training row."
            )
        if not np.allclose(proba.sum(1), 1.0, atol=1e-3) or (proba < 0).any():
            raise ParameterError("soft targets must be probabilities: non-negative rows that sum to 1.")
        unknown = sorted(set(classes) - set(self.classes))
        if unknown:
            raise ParameterError(f"labels {unknown[:5]} are not among the soft targets' classes.")
        return np.asarray(self.classes)

    def loss(self) -> Any:
        t = float(self.temperature)

        def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(logits / t, targets) * (t * t)

        return soft_cross_entropy

    def fingerprint(self) -> str:
        h = hashlib.blake2b(np.ascontiguousarray(self.proba, dtype=np.float32).tobytes(), digest_size=12)
        h.update(json.dumps([str(c) for c in self.classes]).encode() + str(self.temperature).encode())
        return h.hexdigest()


class TunedTechnique(Technique):
    """Shared hyperparameters and fit/predict/save for techniques that train with ``train.train``.

    ``lr="auto"`` takes the subclass's ``default_lr`` for the backbone's modality; ``head_lr="auto"`` is 1e-3
    (the head starts random) unless the subclass says otherwise. Without a validation set the loop runs all
    ``epochs``; with one each epoch is validated, and with ``patience`` too training stops after that many epochs
    without a gain in ``metric`` and keeps the best epoch (without it, the default, every epoch runs and the last
    is kept: on small validation sets choosing the epoch lost accuracy, docs/techniques.md).

    ``batchnorm`` (CNNs with BatchNorm): ``"pretrained"`` keeps the statistics the backbone came with, in
    training (those layers normalise with them, not with the batch's) and after; a layer that has none yet (at
    its initial mean 0 and variance 1: a new layer, or a random network) is estimated on the training rows.
    ``"recalibrate"`` re-estimates every layer's on the training rows before training, before each validation and
    at the end, and trains on batch statistics. ``"auto"``: ``"pretrained"`` for ``finetune`` and LP-FT
    (``keeps_pretrained_norms``), and ``"recalibrate"`` for the others and with ``align`` (which ends on the
    unlabelled rows' statistics). Re-estimated on a few hundred images, statistics of channels nearly constant on
    them made the model fragile and less accurate; kept, ``finetune`` trains images at ``kept_norms_lr`` (3e-4),
    since from a random head at 1e-3 some runs diverged (docs/techniques.md).
    """

    default_lr: ClassVar[dict[str, float]] = {"text": 5e-5, "image": 2e-4}
    default_head_lr: ClassVar[float | None] = 1e-3  # None: same as lr
    default_epochs: ClassVar[dict[str, int]] = {"text": 4, "image": 4}  # what epochs="auto" means
    changes_backbone: ClassVar[bool] = True
    caches_features: ClassVar[bool] = True  # False where the starting weights are random (scratch)

    _parameter_constraints = {
        "backbone": [str, Backbone],
        "epochs": [Interval(int, 1, None), "auto"],
        "min_steps": [Interval(int, 0, None)],
        "lr": [Interval(float, 0, None, "neither"), "auto"],
        "head_lr": [Interval(float, 0, None, "neither"), "auto"],
        "weight_decay": [Interval(float, 0, None)],
        "batch_size": [Interval(int, 1, None)],
        "grad_accum": [Interval(int, 1, None)],
        "warmup_ratio": [Interval(float, 0, 1)],
        "schedule": ["cosine", "linear", "constant"],
        "patience": [Interval(int, 1, None), None],
        "metric": ["accuracy", "macro_f1", "loss"],
        "max_grad_norm": [Interval(float, 0, None, "neither"), None],
        "device": [str],
        "precision": list(PRECISIONS),
        "gradient_checkpointing": [bool],
        "num_workers": [Interval(int, 0, None), "auto"],
        "seed": [Interval(int, 0, None)],
        "checkpoint_dir": [str, Path, None],
        "checkpoint_every": [Interval(int, 0, None)],
        "checkpoint_seconds": [Interval(float, 0, None)],
        "keep_checkpoint": [bool],
        "cache_dir": [str, None],
        "use_cache": [bool],
        "progress": [bool],
        "calibrate": ["auto", "none"],
        "augment": ["auto", *POLICIES],
        "hflip": [bool],
        "crop_scale": [Interval(float, 0, 1, "right")],
        "mixup": [Interval(float, 0, 1)],
        "cutmix": [Interval(float, 0, 1)],
        "label_smoothing": [Interval(float, 0, 1, "left")],
        "align": ["none", "coral", "dann"],
        "align_weight": [Interval(float, 0, None, "neither")],
        "batchnorm": ["auto", "pretrained", "recalibrate"],
        "input_col": [str, None],
        "label_col": [str, None],
    }
    # what augment="auto" means for images (text is never augmented): crop and flip, chosen on mnist-5k, where
    # TrivialAugment on top did no better at 32 per class (.915 against .919) and worse at 8 (.643 against .848)
    default_augment: ClassVar[str] = "light"
    # what batchnorm="auto" means without align: keep the pretrained statistics (True) or re-estimate them
    keeps_pretrained_norms: ClassVar[bool] = False
    # the learning rate of DANN's domain critic (align="dann"), which starts from random weights
    critic_lr: ClassVar[float] = 1e-3

    def __init__(
        self,
        backbone: str | Backbone = "all-MiniLM-L6-v2",
        epochs: int | str = "auto",
        min_steps: int = 50,
        lr: float | str = "auto",
        head_lr: float | str = "auto",
        weight_decay: float = 0.01,
        batch_size: int = 16,
        grad_accum: int = 1,
        warmup_ratio: float = 0.1,
        schedule: str = "cosine",
        patience: int | None = None,
        metric: str = "accuracy",
        max_grad_norm: float | None = 1.0,
        device: str = "auto",
        precision: str = "auto",
        gradient_checkpointing: bool = False,
        num_workers: int | str = "auto",
        seed: int = 0,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 50,
        checkpoint_seconds: float = 30.0,
        keep_checkpoint: bool = False,
        cache_dir: str | None = None,
        use_cache: bool = True,
        progress: bool = True,
        calibrate: str = "auto",
        augment: str = "auto",
        hflip: bool = True,
        crop_scale: float = 0.6,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        label_smoothing: float = 0.0,
        align: str = "none",
        align_weight: float = 1.0,
        batchnorm: str = "auto",
        input_col: str | None = None,
        label_col: str | None = None,
    ):
        # long by design: scikit-learn's convention is one stored attribute per hyperparameter, nothing else
        self.backbone = backbone
        self.epochs = epochs
        self.min_steps = min_steps
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.warmup_ratio = warmup_ratio
        self.schedule = schedule
        self.patience = patience
        self.metric = metric
        self.max_grad_norm = max_grad_norm
        self.device = device
        self.precision = precision
        self.gradient_checkpointing = gradient_checkpointing
        self.num_workers = num_workers
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.keep_checkpoint = keep_checkpoint
        self.cache_dir = cache_dir
        self.use_cache = use_cache
        self.progress = progress
        self.calibrate = calibrate
        self.augment = augment
        self.hflip = hflip
        self.crop_scale = crop_scale
        self.mixup = mixup
        self.cutmix = cutmix
        self.label_smoothing = label_smoothing
        self.align = align
        self.align_weight = align_weight
        self.batchnorm = batchnorm
        self.input_col = input_col
        self.label_col = label_col

    # -- hooks for subclasses ----------------------------------------------------------------------------------
    def _prepare(self, backbone: Backbone) -> None:
        """Change the backbone before the head is built (default: nothing)."""

    def _configure(self, model: Classifier) -> None:
        """Set ``requires_grad`` (default: the whole backbone, minus parameters it never uses, and the head)."""
        used = {f"body.{n}" for g in model.backbone.layer_groups() for n in g}
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head.") or name in used)

    def _param_groups(self, model: Classifier) -> list[dict[str, Any]]:
        """Two groups by default: the backbone at ``lr_`` and the head at ``head_lr_``."""
        body = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
        groups = [{"params": body, "lr": self.lr_, "weight_decay": self.weight_decay}] if body else []
        return groups + [{"params": list(model.head.parameters()), "lr": self.head_lr_, "weight_decay": 0.0}]

    def _init_head(self, head: LinearHead, features: np.ndarray, y: np.ndarray) -> None:
        """Default: standardise the head's input with the training features' mean and scale; random weights."""
        set_standardisation(head, features)

    def _hooks(self, model: Classifier) -> Hooks:
        return Hooks()

    def _finish(self, model: Classifier) -> None:
        """After training (default: nothing)."""

    # -- fit ---------------------------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        val: Any = None,
        soft_targets: SoftTargets | None = None,
        unlabeled: Any = None,
    ) -> TunedTechnique:
        """Train on ``X`` (texts or images in any form ``data.inputs.as_dataset`` reads) and labels ``y`` (or
        ``X``'s label column); with labelled ``val`` rows, keep the best epoch and stop early.

        ``soft_targets`` (distillation): class probabilities per row of ``X`` to train towards instead of the
        labels, which then only start the head; the classes are ``soft_targets.classes``.

        ``unlabeled`` (with ``align="coral"`` or ``"dann"``): rows of the domain the model will predict on.
        Training adds ``align_weight`` times the CORAL distance between the features of each batch and of a
        batch of these rows, or (DANN) a domain critic's loss on both batches through a gradient reversal of
        ``align_weight`` times a strength that rises over the epochs (``domain.py``); and a BatchNorm
        backbone's statistics are re-estimated on them after training (AdaBN), so the model meets the test
        domain with that domain's statistics."""
        self._reset_fitted()
        self._validate_params()
        start = time.perf_counter()
        base = resolve_backbone(self.backbone)
        train_data, val = self._fit_data(X, y, val, base.modality)
        require_single_label(train_data, self.name)
        self.classes_ = np.array(sorted(set(train_data.labels)))
        if soft_targets is not None:
            self.classes_ = soft_targets.check(train_data, self.classes_)
        y = torch.from_numpy(encode_labels(train_data.labels, self.classes_))
        bb = self._copy_backbone(base)
        self.lr_ = self._base_lr(bb)
        head_default = self.default_head_lr if self.default_head_lr is not None else self.lr_
        self.head_lr_ = float(head_default if self.head_lr == "auto" else self.head_lr)
        target_data = self._target_rows(unlabeled, base.modality)
        torch.manual_seed(self.seed)  # the head's initial weights
        self._prepare(bb)  # on the CPU still, so a random re-initialisation is the same on every device
        rt = self._place(bb)
        augmenter = self._augmenter(bb)
        source = bb.training_source(train_data, progress=self.progress)
        self.kept_norms_ = self._kept_norms(bb)
        self._recalibrate(bb, bb.forward_features, source, rt)
        bb.invalidate_fingerprint()  # weights or BN statistics may have changed: the cache key must follow
        head = LinearHead(bb.num_features, len(self.classes_))
        self._init_head(head, self._train_features(bb, train_data), y.numpy())
        model = Classifier(bb, head.to(rt.device))
        model.kept_norms = tuple(self.kept_norms_)
        self._configure(model)
        self.trainable_params_ = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total_params_ = sum(p.numel() for p in model.parameters())
        self.epochs_ = self.planned_epochs(len(train_data))
        hooks = self._hooks(model)
        hooks.augment = augmenter
        target, unalign = None, None
        self.n_unlabeled_ = len(target_data) if target_data is not None else 0
        groups = self._param_groups(model)
        if target_data is not None:
            target = bb.training_source(target_data, progress=self.progress)
            unalign = self._align(model, target, groups, hooks, rt)
        val_known = self._known_rows(val)
        if val_known is not None:
            val_source = bb.training_source(val_known[0], progress=self.progress)
            hooks.evaluate = lambda: self._evaluate(model, val_known, val_source, source)
        targets = y
        if soft_targets is not None:
            if augmenter is not None and (augmenter.cfg.mixup or augmenter.cfg.cutmix):
                raise ParameterError(
                    "mixup and cutmix mix class indices; with soft targets (distillation) leave them at 0."
                )
            targets = torch.as_tensor(soft_targets.proba, dtype=torch.float32)
            hooks.loss = soft_targets.loss()
        folder = self._checkpoint_folder(bb, train_data, val_known, soft_targets, target_data)
        ckpt = Checkpointer(folder, self._run_key_)
        state = train(model, groups, source, targets, self._loop_config(), ckpt, hooks)
        if unalign is not None:
            unalign()
        self._recalibrate(bb, model, target or source, rt)
        self._finish(model)
        bb.invalidate_fingerprint()
        self.model_, self.head_ = model, model.head
        self.temperature_ = None
        if val_known is not None:  # temperature scaling on the validation rows
            self._calibrate(self._logits(model, val_source), val_known[1])
        self._record(state, time.perf_counter() - start)
        if not self.keep_checkpoint:
            ckpt.clear()
        return self

    def _align(self, model: Classifier, target: Any, groups: list[dict], hooks: Any, rt: Any) -> Any:
        """Set ``hooks`` up to align the features with ``target`` (a ``BatchSource`` of unlabelled rows) as
        ``align`` says; DANN's critic joins ``model`` (so checkpoints keep it) and ``groups`` (its own learning
        rate: it starts random; ``groups`` come from ``_param_groups`` before it joins). Returns the function that
        undoes this after training: it removes the hook on the head, and the critic, which only training needs."""
        if self.align == "dann":
            model.critic = DomainCritic(model.backbone.num_features).to(rt.device)
            groups.append(
                {"params": list(model.critic.parameters()), "lr": self.critic_lr, "weight_decay": 0.0}
            )
            hooks.extra_loss, hooks.on_epoch_start, unhook = dann_hook(
                model,
                model.critic,
                target,
                self.batch_size,
                self.align_weight,
                self.epochs_,
                rt,
                hooks.extra_loss,
                hooks.on_epoch_start,
            )

            def unalign() -> None:
                unhook()
                del model.critic

            return unalign
        hooks.extra_loss, unhook = coral_hook(
            model, target, self.batch_size, self.align_weight, rt, hooks.extra_loss
        )
        return unhook

    def _target_rows(self, unlabeled: Any, modality: str) -> Dataset | None:
        """The unlabelled rows ``align`` adapts to (labels dropped), or None; refuses rows that would be
        ignored, alignment without rows, and data-parallel runs (the extra forward pass is outside DDP's)."""
        if self.align == "none":
            if unlabeled is not None:
                raise ParameterError(
                    f"unlabelled rows given to {self.name} with align='none', which would ignore them; set "
                    f"align='coral' or 'dann', or use self_train:{self.name}."
                )
            return None
        if self._batchnorm_mode() == "pretrained":
            raise ParameterError(
                f"align={self.align!r} re-estimates BatchNorm statistics on the unlabelled rows after training, "
                f"and batchnorm='pretrained' keeps the pretrained ones; use batchnorm='recalibrate' with align."
            )
        if unlabeled is None:
            raise ParameterError(
                f"align={self.align!r} adapts to the domain of unlabelled rows; pass them (fit(..., "
                f"unlabeled=rows); --unlabeled FILE on the command line)."
            )
        from .. import distributed

        if distributed.world_size() > 1:
            raise ParameterError(f"align={self.align!r} runs in one process; run it without torchrun.")
        from .probe import unlabeled_sample

        return unlabeled_sample(self._data(unlabeled, modality=modality), self.seed)

    def augment_config(self, modality: str) -> AugmentConfig:
        """The augmentation this fit applies, ``augment="auto"`` resolved (``default_augment`` for images, none
        for text); image augmentation asked for on text is refused."""
        policy = self.augment
        if modality != "image":
            asked = [
                f"{k}={getattr(self, k)!r}"
                for k, off in (("augment", "none"), ("mixup", 0.0), ("cutmix", 0.0))
                if getattr(self, k) not in ("auto", off)
            ]
            if asked:
                raise ParameterError(
                    f"{', '.join(asked)}: image augmentation, but the backbone reads {modality}. Leave them at "
                    f"their defaults."
                )
            policy = "none"
        elif policy == "auto":
            policy = self.default_augment
        return AugmentConfig(policy, self.hflip, self.crop_scale, self.mixup, self.cutmix)

    def _augmenter(self, bb: Backbone) -> BatchAugmenter | None:
        cfg = self.augment_config(bb.modality)
        self.augment_ = cfg.policy
        if not cfg.active:
            return None
        pre = bb.image_preprocess
        return BatchAugmenter(cfg, pre.mean, pre.std, pre.rescale, len(self.classes_))

    def _copy_backbone(self, base: Backbone) -> Backbone:
        """A private copy of ``base`` to train (``backbone_``); the original's reference is kept."""
        self.base_reference_ = base.reference()
        self.backbone_ = copy.deepcopy(base)  # training must never change a backbone the caller still holds
        return self.backbone_

    def _runtime(self) -> Runtime:
        """The device and precision of this estimator's parameters, resolved (``runtime.resolve``)."""
        return resolve(self.device, self.precision)

    def _place(self, bb: Backbone) -> Runtime:
        """Put the backbone being trained on this fit's device, with gradient checkpointing if asked; returns
        (and records as ``runtime_``) the fit's device and precision."""
        rt = self.runtime_ = self._runtime()
        bb.to(rt.device)
        self._enable_gradient_checkpointing(bb)
        return rt

    def _enable_gradient_checkpointing(self, bb: Backbone) -> None:
        """Recompute activations in the backward pass instead of keeping them: less memory for large backbones
        at about a third more compute. transformers models support it; others are refused, not ignored."""
        if not self.gradient_checkpointing:
            return
        enable = getattr(bb.module, "gradient_checkpointing_enable", None)
        if enable is None or not getattr(bb.module, "supports_gradient_checkpointing", False):
            raise ParameterError(
                f"gradient_checkpointing=True: the backbone {bb.name!r} ({type(bb.module).__name__}) does not "
                f"support it; only transformers models do. Drop the parameter or use a smaller batch_size."
            )
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def _base_lr(self, bb: Backbone) -> float:
        return float(self.default_lr[bb.modality] if self.lr == "auto" else self.lr)

    def base_epochs(self) -> int:
        """``epochs``, with ``"auto"`` resolved by the backbone's modality (``default_epochs``)."""
        if self.epochs != "auto":
            return int(self.epochs)
        bb = getattr(self, "backbone_", None) or resolve_backbone(self.backbone)
        return self.default_epochs[bb.modality]

    def planned_epochs(self, n_rows: int) -> int:
        """``epochs``, raised so that training takes at least ``min_steps`` optimizer steps on ``n_rows`` rows.

        A few labelled rows make short epochs: 4 rows of each of 6 classes are 2 batches of 16, so 4 epochs
        would be 8 steps, too few for a random head and a moving backbone to settle.
        """
        base = self.base_epochs()
        per_epoch = max(1, self._loop_config(base).steps_per_epoch(n_rows))
        return max(base, math.ceil(self.min_steps / per_epoch))

    def _loop_config(self, epochs: int | None = None) -> LoopConfig:
        rt = self._runtime()
        return LoopConfig(
            epochs=(getattr(self, "epochs_", None) or self.base_epochs()) if epochs is None else epochs,
            batch_size=self.batch_size,
            grad_accum=self.grad_accum,
            warmup_ratio=self.warmup_ratio,
            schedule=self.schedule,
            max_grad_norm=self.max_grad_norm,
            patience=self.patience,
            metric=self.metric,
            label_smoothing=self.label_smoothing,
            device=str(rt.device),
            precision=rt.precision,
            num_workers=self.num_workers,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            checkpoint_min_seconds=self.checkpoint_seconds,
            progress=self.progress,
        )

    def steps_per_epoch(self, n_rows: int) -> int:
        """Optimizer steps of one epoch over ``n_rows`` training rows."""
        return self._loop_config().steps_per_epoch(n_rows)

    def _train_features(self, bb: Backbone, data: Dataset) -> np.ndarray:
        """Features of the (prepared) backbone on the training rows, through the feature cache."""
        cache = FeatureCache(self.cache_dir, enabled=self.use_cache and self.caches_features)
        self.cache_ = cache
        return np.asarray(
            cache.get(bb, data, precision=self._runtime().precision, progress=self.progress), dtype=np.float64
        )

    def _kept_norms(self, bb: Backbone) -> list[str]:
        """The BatchNorm layers of ``bb`` whose statistics stay as they are (``batchnorm="pretrained"``): those
        that hold statistics, that is all but layers still at their initial ones (mean 0, variance 1: a layer
        new to the network, such as the 1x1 head of a cut EfficientNet, or every layer of a random network)."""
        if self._batchnorm_mode() != "pretrained":
            return []
        held = {id(m) for m in batchnorms(bb.module)}
        return [
            name
            for name, m in bb.module.named_modules()
            if id(m) in held and not (bool((m.running_mean == 0).all()) and bool((m.running_var == 1).all()))
        ]

    def _batchnorm_mode(self) -> str:
        """``batchnorm`` resolved: ``"auto"`` keeps the pretrained statistics where the technique says so
        (``keeps_pretrained_norms``: finetune, LP-FT), but re-estimates them where ``align`` adapts to unlabelled rows (it
        ends on the target rows' statistics)."""
        if self.batchnorm != "auto":
            return self.batchnorm
        return "pretrained" if self.keeps_pretrained_norms and self.align == "none" else "recalibrate"

    def _recalibrate(self, bb: Backbone, forward: Any, source: BatchSource, rt: Runtime) -> None:
        """BatchNorm statistics re-estimated over ``source``, but for the layers in ``kept_norms_``."""
        keep = [bb.module.get_submodule(n) for n in self.kept_norms_]
        recalibrate_batchnorm(bb.module, forward, source, self.batch_size * 4, rt, keep=keep)

    def _known_rows(self, val: Dataset | None) -> tuple[Dataset, np.ndarray] | None:
        known = known_label_rows(val, self.classes_)
        if not known:
            return None
        sub = val.subset(known)
        return sub, encode_labels(sub.labels, self.classes_)

    def _evaluate(
        self,
        model: Classifier,
        val: tuple[Dataset, np.ndarray],
        val_source: BatchSource,
        train_source: BatchSource,
    ) -> dict[str, float]:
        self._recalibrate(model.backbone, model, train_source, self._runtime())
        logits = self._logits(model, val_source).float()
        pred = logits.argmax(1).numpy()
        return {
            "accuracy": float((pred == val[1]).mean()),
            "macro_f1": float(f1_score(val[1], pred, average="macro", labels=range(len(self.classes_)))),
            "loss": float(
                torch.nn.functional.cross_entropy(logits, torch.as_tensor(val[1], dtype=torch.long))
            ),
        }

    def _checkpoint_folder(
        self,
        bb: Backbone,
        train_data: Dataset,
        val: Any,
        soft_targets: SoftTargets | None = None,
        target: Dataset | None = None,
    ) -> Path:
        """Named by a hash of everything that decides the result, so rerunning the same fit resumes it."""
        params = {k: v for k, v in self.get_params().items() if k != "backbone" and k not in NOT_IN_RUN_KEY}
        h = hashlib.blake2b(digest_size=12)
        for part in (
            self.name,
            json.dumps(params, sort_keys=True, default=str),
            self.base_reference_["fingerprint"],
            train_data.fingerprint(),
            json.dumps(list(train_data.labels or [])),
            val[0].fingerprint() + json.dumps(list(val[0].labels)) if val else "no-val",
            soft_targets.fingerprint() if soft_targets is not None else "",
            target.fingerprint() if target is not None else "",
        ):
            h.update(part.encode())
            h.update(b"\x1f")
        self._run_key_ = h.hexdigest()
        root = Path(self.checkpoint_dir) if self.checkpoint_dir else warmstart_home() / "checkpoints"
        return root / f"{self.name}-{self._run_key_}"

    def _record(self, state: LoopState, seconds: float) -> None:
        self.history_ = state.history
        self.best_epoch_ = state.best_epoch
        self.stopped_early_ = state.stopped_early
        self.train_seconds_ = round(state.seconds, 3)
        self.fit_seconds_ = round(seconds, 3)
        self.train_flops_ = float(state.flops)
        # achieved FLOP/s of the training steps, and model FLOPs utilisation where the device's peak is known
        rate = state.flops / state.seconds if state.seconds > 0 else None
        peak = peak_flops(self.runtime_) if hasattr(self, "runtime_") else None
        self.train_flops_per_s_ = rate
        self.train_rows_per_s_ = round(state.rows / state.seconds, 2) if state.seconds > 0 else None
        self.mfu_ = round(rate / peak, 4) if rate and peak else None

    # -- inference ---------------------------------------------------------------------------------------------
    def _logits(
        self, model: Classifier, source: BatchSource, batch_size: int = 64, tta: bool = False
    ) -> torch.Tensor:
        """Logits of every row of ``source``; with ``tta``, the log of the softmax averaged over the test-time
        views of each image (``augment.tta_views``)."""
        n = len(source)
        order = np.argsort(-source.lengths, kind="stable") if source.lengths is not None else np.arange(n)
        out = torch.empty((n, len(self.classes_)))
        rt = self._runtime()
        model.to(rt.device).eval()
        with torch.inference_mode(), rt.autocast():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch = rt.to_device(source.collate(idx))
                if tta:
                    views = tta_views(batch["pixels"], self.hflip)
                    proba = sum(model(**{**batch, "pixels": v}).float().softmax(-1) for v in views)
                    out[torch.as_tensor(idx)] = (proba / len(views)).log().cpu()
                else:
                    out[torch.as_tensor(idx)] = model(**batch).float().cpu()
        return out

    def predict_proba(self, inputs: Any, tta: bool = False) -> np.ndarray:
        """Class probabilities; ``tta=True`` (images only) averages them over the image, a zoomed centre crop
        and, with ``hflip``, their mirror images."""
        self._check_fitted()
        data = self._data(inputs)
        if tta and self.backbone_.modality != "image":
            raise ParameterError("tta=True: test-time augmentation is for images; this model reads text.")
        source, rows = self.backbone_.batch_source(data), self.backbone_.inference_batch_size
        return self._logits(self.model_, source, batch_size=rows, tta=tta).softmax(-1).numpy()

    def predict(self, inputs: Any, tta: bool = False) -> np.ndarray:
        return self.classes_[self.predict_proba(inputs, tta=tta).argmax(1)]

    # -- persistence (used by warmstart.artifact) --------------------------------------------------------------
    def backbone_record(self, embed: bool) -> tuple[dict, bool]:
        """Changed weights are always saved inside the artifact, with the base backbone recorded beside them."""
        if not self.changes_backbone:
            if embed:
                from ..errors import ArtifactError

                raise ArtifactError(
                    f"an unmerged {self.name} adapter is saved beside a reference to its base backbone, which "
                    f"cannot be embedded; fit with merge=True to keep the whole (merged) backbone in the artifact."
                )
            return dict(self.base_reference_), False
        return {**self.backbone_.reference(), "base": self.base_reference_}, True

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v for k, v in self.head_.state_dict().items()}

    def fitted_config(self) -> dict:
        return {
            "epochs": self._loop_config().epochs,
            "lr": self.lr_,
            "head_lr": self.head_lr_,
            "trainable_params": self.trainable_params_,
            "total_params": self.total_params_,
            "best_epoch": self.best_epoch_,
            "stopped_early": self.stopped_early_,
            "history": self.history_,
            "train_seconds": self.train_seconds_,
            "train_flops": getattr(self, "train_flops_", None),
            "temperature": getattr(self, "temperature_", None),
            "base_backbone": self.base_reference_,
            "runtime": getattr(self, "runtime_", None) and self.runtime_.describe(),
            "train_flops_per_s": getattr(self, "train_flops_per_s_", None),
            "mfu": getattr(self, "mfu_", None),
            "train_rows_per_s": getattr(self, "train_rows_per_s_", None),
            "augment": getattr(self, "augment_", None),
            **({"n_unlabeled": self.n_unlabeled_} if getattr(self, "n_unlabeled_", 0) else {}),
        }

    def trainable_parameters(self) -> int:
        return int(self.trainable_params_)

    @classmethod
    def from_saved(
        cls,
        params: dict,
        tensors: dict[str, torch.Tensor],
        classes: list[str],
        backbone: Backbone,
        fitted=None,
    ) -> TunedTechnique:
        est = cls(**{**params, "backbone": backbone})
        est.backbone_ = backbone
        est.classes_ = np.array(classes)
        fitted = fitted or {}
        est.base_reference_ = fitted.get("base_backbone", backbone.reference())
        est._restore(tensors, fitted)
        est.head_ = LinearHead.from_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        est.model_ = Classifier(backbone, est.head_).eval()
        for k in (
            "lr",
            "head_lr",
            "trainable_params",
            "total_params",
            "best_epoch",
            "stopped_early",
            "history",
        ):
            setattr(est, f"{k}_", fitted.get(k))
        est.train_seconds_ = fitted.get("train_seconds")
        est.train_flops_ = fitted.get("train_flops")
        return est

    def _restore(self, tensors: dict[str, torch.Tensor], fitted: dict) -> None:
        """Rebuild anything beyond the head from saved tensors (adapters); default: nothing."""


def set_standardisation(head: LinearHead, features: np.ndarray) -> None:
    """Centre the head's input per feature and divide by one global scale (the mean per-feature std).

    A per-feature scale would be the natural choice for a frozen backbone, but when the backbone trains it
    multiplies the features' drift by 1/std per dimension: sentence-embedding dimensions with std ~0.03 turn small
    weight updates into huge logits and fine-tuning diverges (measured on TREC: train loss 17 after one epoch, vs
    1.4 with a single scale). One scale keeps inputs O(1) without favouring any dimension.
    """
    std = features.std(0)
    scale = float(std.mean()) if std.mean() > 1e-12 else 1.0
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(features.mean(0)))
        head.scale.fill_(scale)
