"""SetFit-style few-shot classification: contrastive tuning of the encoder, then a head on the tuned embeddings.

SetFit (Tunstall et al. 2022) feeds the encoder *pairs* of sentences: every pair costs two forward and backward
passes and yields one similarity target, and the number of pairs grows with the square of the labelled rows.
Here each step encodes one class-balanced batch of B rows once and uses all B(B-1)/2 pairs inside it, so a
forward pass buys ~B/2 pairs instead of one half of a pair, and the pair budget is fixed by the number of steps:

    steps = clip(ceil(epochs * N / B), min(min_steps, min_passes * ceil(N / B)), max_steps)
    pairs seen = steps * B * (B - 1) / 2

``N`` is the number of labelled rows (B is at most N). With the defaults (B=32, epochs=6, 20..300 steps, 10 passes):
8 rows of each of 6 classes train 20 steps (9,920 pairs), 64 of each 72 steps (35,712 pairs), and 50,000 rows
train 300 steps (148,800 pairs), never millions. Rows that fit in one batch (8 of each of 2 classes) train 10
steps: each step sees every row, and on the development collection 10 such passes scored as 20 did
(docs/techniques.md) at half the CPU time.

Two losses: ``supcon`` (supervised contrastive, Khosla et al. 2020: each row's positives against every other row
of the batch at a temperature) and ``cosine`` (SetFit's: squared error between the cosine similarity of a pair and
its target, positive and negative pairs weighted equally). For multi-label data a pair's target is the Jaccard
overlap of the two label sets, so rows that share some labels are pulled together in proportion.

The head is logistic regression on the tuned embeddings (one-vs-rest for multi-label), ``C=1`` by default as in
SetFit; ``C="auto"`` chooses it on the validation rows when given, else by cross-validation on the training rows.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone
from ..data import Dataset
from ..data.labels import all_classes, is_multilabel, multi_hot
from ..errors import ParameterError
from ..runtime import one_blas_thread
from .base import Interval, encode_labels, register_technique, resolve_backbone
from .domain import recalibrate_batchnorm
from .head import LinearHead
from .probe import LinearProbe
from .train import Checkpointer, Hooks, train
from .tuned import Classifier, TunedTechnique

# The head sees the tuned, L2-normalised embeddings centred but not standardised (features of std ~0.05), so
# C=1 regularises strongly, as a few rows per class need: on 3 seeds of VADER amazon at 8 per class, per-feature
# standardisation with C chosen by cross-validation scored 2 points lower. "auto" searches this grid instead.
HEAD_C_GRID = (0.1, 1.0, 10.0, 100.0)


class Embedder(nn.Module):
    """The backbone's pooled features as a module: what contrastive tuning trains."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.body = backbone.module
        self.backbone = backbone

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(**batch)


def pair_targets(Y: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` similarity targets from ``(B, C)`` multi-hot labels: the Jaccard overlap of the label sets,
    which is 1 for the same class and 0 for different classes when every row has one label."""
    inter = Y @ Y.T
    union = Y.sum(1, keepdim=True) + Y.sum(1) - inter
    return inter / union.clamp(min=1.0)


def supcon_loss(emb: torch.Tensor, Y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss: for each row with a positive in the batch, the weighted mean over its
    positives of ``-log softmax(cos / temperature)`` taken over all other rows."""
    return weighted_supcon(emb, pair_targets(Y), temperature)


def weighted_supcon(emb: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """``supcon_loss`` with the pairs' targets given as a ``(B, B)`` matrix (1: positive pair)."""
    z = nn.functional.normalize(emb, dim=-1)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = (z @ z.T / temperature).masked_fill(eye, float("-inf")).log_softmax(1).masked_fill(eye, 0.0)
    w = targets.masked_fill(eye, 0.0)
    has = w.sum(1) > 0
    if not has.any():  # no positive pair in this batch: nothing to pull together
        return (z * 0).sum()
    return (-(w * log_prob).sum(1)[has] / w.sum(1)[has]).mean()


def cosine_pair_loss(emb: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """SetFit's loss on every pair of the batch: ``(cos(a, b) - target)^2``, positive and negative pairs
    averaged separately and then together, so the many in-batch negatives do not drown the positives."""
    z = nn.functional.normalize(emb, dim=-1)
    target = pair_targets(Y)
    err = (z @ z.T - target) ** 2
    off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    parts = [err[m].mean() for m in (off & (target > 0), off & (target == 0)) if m.any()]
    return torch.stack(parts).mean()


def balanced_batches(
    Y: np.ndarray, batch_size: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``count`` batches of row indices with several rows of each of several classes, so that every batch has
    positive pairs for most rows. Classes take turns (a shuffled cycle) and so do each class's rows, so all
    rows are used evenly; a batch is topped up with random other rows (more negatives). With ``N <= batch_size``
    every batch is all rows."""
    n = len(Y)
    if n <= batch_size:
        return [np.arange(n) for _ in range(count)]
    members = [np.flatnonzero(Y[:, c]) for c in range(Y.shape[1])]
    members = [m for m in members if len(m)]
    per_class = max(2, batch_size // max(1, len(members)))
    n_classes = max(1, min(len(members), batch_size // per_class))
    class_cycle: list[int] = []
    row_cycles: list[list[int]] = [[] for _ in members]
    out = []
    for _ in range(count):
        batch: list[int] = []
        chosen: set[int] = set()
        while len(chosen) < n_classes:
            if not class_cycle:
                class_cycle = list(rng.permutation(len(members)))
            c = int(class_cycle.pop())
            if c in chosen:  # the cycle restarted mid-batch: take the class on another turn
                class_cycle.insert(0, c)
                continue
            chosen.add(c)
            take = min(per_class, len(members[c]))
            for _ in range(take):
                if not row_cycles[c]:
                    row_cycles[c] = list(rng.permutation(members[c]))
                row = int(row_cycles[c].pop())
                if row not in batch:
                    batch.append(row)
        if len(batch) < batch_size:
            rest = np.setdiff1d(np.arange(n), batch)
            batch += list(rng.choice(rest, size=min(batch_size - len(batch), len(rest)), replace=False))
        out.append(np.asarray(batch[:batch_size], dtype=np.int64))
    return out


@register_technique("contrastive")
class Contrastive(TunedTechnique):
    """Contrastive tuning of the backbone on in-batch pairs, then logistic regression on the tuned embeddings.

    The two phases are public: ``tune_encoder(train)`` then ``fit_head(train, val)``; ``fit`` runs both. Works
    for single-label and multi-label data (labels given as tuples of strings): multi-label pairs are weighted
    by the overlap of their label sets, the head is one-vs-rest and ``predict`` returns label tuples.

    Args:
        steps: optimizer steps of the encoder phase, or "auto" (see the module docstring for the formula).
        min_steps, max_steps: the range "auto" is clipped to.
        min_passes: the floor is lowered to this many passes over the rows where fewer steps than ``min_steps``
            make them (rows that fit in one batch).
        loss: "supcon" (supervised contrastive) or "cosine" (SetFit's cosine-similarity regression).
        temperature: of the supcon loss.
        C: the head's inverse regularisation strength (on centred, unscaled embeddings), or "auto".
        threshold: multi-label only: a label is predicted when its probability reaches it.
        **kwargs: the shared loop parameters of ``TunedTechnique`` (lr, batch_size, epochs, device, precision,
            seed, ...).
            ``epochs`` is the average number of passes over the rows when ``steps="auto"``.

    Example:
        >>> from warmstart.data import load_packaged, few_shot
        >>> data = load_packaged("trec").train
        >>> train = data.subset(few_shot(data.labels, k=4))
        >>> model = Contrastive("paraphrase-MiniLM-L3-v2", steps=4, progress=False).tune_encoder(train)
        >>> model.fit_head(train).predict(["Who wrote Hamlet?"]).shape, model.steps_
        ((1,), 4)
    """

    default_lr = {"text": 1e-4, "image": 1e-4}
    # the text encoder width the default lr was chosen at (all-MiniLM-L6-v2); wider encoders get lr times
    # REFERENCE_WIDTH / width (all-mpnet-base-v2, 768: 5e-5), chosen on the development collection
    REFERENCE_WIDTH = 384
    default_augment = "none"  # pairs are compared as they are; augmenting them is not implemented
    default_head_lr = None
    _parameter_constraints = {
        **TunedTechnique._parameter_constraints,
        "steps": [Interval(int, 1, None), "auto"],
        "max_steps": [Interval(int, 1, None)],
        "min_passes": [Interval(int, 1, None)],
        "loss": ["supcon", "cosine"],
        "temperature": [Interval(float, 0, None, "neither")],
        "C": [Interval(float, 0, None, "neither"), "auto"],
        "threshold": [Interval(float, 0, 1, "neither")],
    }

    def __init__(
        self,
        backbone: str | Backbone = "all-MiniLM-L6-v2",
        steps: int | str = "auto",
        min_steps: int = 20,
        max_steps: int = 300,
        min_passes: int = 10,
        loss: str = "supcon",
        temperature: float = 0.2,
        C: float | str = 1.0,
        threshold: float = 0.5,
        epochs: int = 6,
        batch_size: int = 32,
        **kwargs: Any,
    ):
        super().__init__(
            backbone=backbone, epochs=epochs, min_steps=min_steps, batch_size=batch_size, **kwargs
        )
        self.steps = steps
        self.max_steps = max_steps
        self.min_passes = min_passes
        self.loss = loss
        self.temperature = temperature
        self.C = C
        self.threshold = threshold

    def _base_lr(self, bb: Backbone) -> float:
        """``lr="auto"``: the default, scaled down for text encoders wider than ``REFERENCE_WIDTH`` (the
        hidden size of its transformer, else its embedding's width)."""
        if self.lr != "auto" or bb.modality != "text":
            return super()._base_lr(bb)
        config = getattr(bb.module, "config", None)
        width = (
            getattr(config, "hidden_size", None) or getattr(bb, "num_features", None) or self.REFERENCE_WIDTH
        )
        return self.default_lr["text"] * min(1.0, self.REFERENCE_WIDTH / int(width))

    # -- phase 1 -----------------------------------------------------------------------------------------------
    def planned_steps(self, n_rows: int, rows_per_step: int | None = None) -> int:
        """Encoder steps for ``n_rows`` labelled rows (the pair budget is this times B(B-1)/2): ``epochs``
        passes of ``rows_per_step`` distinct rows (default: a batch) within ``max_steps`` and a floor of
        ``min_steps``, or of ``min_passes`` passes where those are fewer steps."""
        if self.steps != "auto":
            return int(self.steps)
        per_step = rows_per_step or min(self.batch_size, max(n_rows, 1))
        want = math.ceil(self.epochs * n_rows / per_step)
        floor = min(self.min_steps, self.min_passes * math.ceil(max(n_rows, 1) / per_step))
        return int(min(self.max_steps, max(floor, want, 1)))

    def _steps_in_epoch(self, e: int) -> int:
        """``steps_`` spread over the encoder's epochs, the first ones taking the rest."""
        epochs = min(self.epochs, self.steps_)
        return self.steps_ // epochs + int(e < self.steps_ % epochs)

    def _encoder_loop(
        self,
        model: Embedder,
        data: Dataset,
        source: Any,
        targets: torch.Tensor,
        hooks: Hooks,
        start: float,
        recalibrate: bool = True,
    ) -> None:
        """The encoder phase's loop over ``min(epochs, steps_)`` epochs (no early stopping), checkpointed under
        this fit's key; then (``recalibrate``) BatchNorm statistics over ``source``, the backbone's fingerprint
        following its new weights, and the history recorded."""
        bb = model.backbone
        cfg = dataclasses.replace(self._loop_config(), epochs=min(self.epochs, self.steps_), patience=None)
        ckpt = Checkpointer(self._checkpoint_folder(bb, data, None), self._run_key_)
        body = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": body, "lr": self.lr_, "weight_decay": self.weight_decay}]
        state = train(model, groups, source, targets, cfg, ckpt, hooks)
        if recalibrate:
            recalibrate_batchnorm(model, model, source, self.batch_size * 4, self.runtime_)
        bb.invalidate_fingerprint()
        self._record(state, time.perf_counter() - start)
        if not self.keep_checkpoint:
            ckpt.clear()

    def steps_per_epoch(self, n_rows: int) -> int:
        steps = self.planned_steps(n_rows)
        return math.ceil(steps / min(self.epochs, steps))

    def tune_encoder(self, X: Any, y: Any = None) -> Contrastive:
        """Phase 1: contrastive tuning of a copy of the backbone on pairs of rows of ``X`` (labels ``y`` or
        ``X``'s label column). Starts afresh: every fitted attribute is rebuilt."""
        base = resolve_backbone(self.backbone)
        return self._tune(self._data(X, y, base.modality, need_labels=True), base)

    def _tune(self, train_data: Dataset, base: Backbone) -> Contrastive:
        self._reset_fitted()
        self._validate_params()
        train_data.require_labels()
        start = time.perf_counter()
        self.multilabel_ = is_multilabel(train_data.labels)
        self.classes_ = np.array(all_classes(train_data.labels))
        Y = multi_hot(train_data.labels, self.classes_)
        bb = self._copy_backbone(base)
        if self.augment_config(bb.modality).active:
            raise ParameterError(
                f"augment={self.augment!r}, mixup={self.mixup}, cutmix={self.cutmix}: the contrastive technique "
                f"does not augment its pairs; leave them at their defaults, or use finetune or lp_ft."
            )
        rt = self._place(bb)
        self.lr_ = self.head_lr_ = self._base_lr(bb)
        source = bb.batch_source(train_data)
        recalibrate_batchnorm(bb.module, bb.forward_features, source, self.batch_size * 4, rt)
        model = Embedder(bb)
        self._configure(model)  # the backbone's used parameters (an Embedder has no head)
        self.encoder_trainable_params_ = sum(p.numel() for p in model.parameters() if p.requires_grad)

        n = len(train_data)
        self.steps_ = self.planned_steps(n)
        batch = min(self.batch_size, n)
        self.pairs_seen_ = self.steps_ * batch * (batch - 1) // 2
        hooks = Hooks(
            loss=self._loss,
            batches=lambda e: balanced_batches(
                Y, batch, self._steps_in_epoch(e), np.random.default_rng([self.seed, e, 7])
            ),
        )
        self._encoder_loop(model, train_data, source, torch.from_numpy(Y), hooks, start)
        return self

    def tune_unsupervised(self, X: Any, temperature: float = 0.05) -> Backbone:
        """Domain-adaptive tuning without labels (unsupervised SimCSE, Gao et al. 2021): each row of ``X`` is
        its own positive, seen twice in a batch under two dropout masks, and every other row of the batch is a
        negative. ``batch_size`` counts both copies; ``steps="auto"`` makes ``epochs`` passes over the rows
        (within ``min_steps`` and ``max_steps``). Returns the tuned copy of the backbone; a backbone without
        dropout learns nothing this way (its two copies are identical), so it is refused."""
        self._reset_fitted()
        self._validate_params()
        base = resolve_backbone(self.backbone)
        data = self._data(X, None, base.modality).without_labels()  # labels, if any, unused
        if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in base.module.modules()):
            raise ParameterError(
                f"{base.name}: no dropout, so the two copies of a row would be identical and unsupervised "
                f"contrastive tuning has nothing to learn from."
            )
        start = time.perf_counter()
        bb = self._copy_backbone(base)
        self._place(bb)
        self.lr_ = self._base_lr(bb)
        model = Embedder(bb)
        self._configure(model)
        n, half = len(data), max(1, min(self.batch_size // 2, len(data)))
        self.steps_ = self.planned_steps(n, rows_per_step=half)

        def batches(e: int) -> list[np.ndarray]:
            rng = np.random.default_rng([self.seed, e, 11])
            return [np.tile(rng.choice(n, half, replace=False), 2) for _ in range(self._steps_in_epoch(e))]

        def loss(emb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return weighted_supcon(emb, (rows[:, None] == rows[None, :]).float(), temperature)

        hooks = Hooks(loss=loss, batches=batches)
        self._encoder_loop(
            model, data, bb.batch_source(data), torch.arange(n), hooks, start, recalibrate=False
        )
        bb.module.eval()
        return bb

    def _loss(self, emb: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        if self.loss == "cosine":
            return cosine_pair_loss(emb, Y)
        return supcon_loss(emb, Y, self.temperature)

    # -- phase 2 -----------------------------------------------------------------------------------------------
    def fit_head(self, X: Any, y: Any = None, val: Any = None) -> Contrastive:
        """Phase 2: logistic regression on the tuned encoder's embeddings of ``X`` (any labelled rows, not
        necessarily the ones the encoder was tuned on). ``C`` is chosen on labelled ``val`` rows when given."""
        if not hasattr(self, "encoder_trainable_params_"):
            raise ParameterError("fit_head needs a tuned encoder; call tune_encoder(X, y) first (or fit).")
        start = time.perf_counter()
        train_data, val = self._fit_data(X, y, val, self.backbone_.modality)
        X = self._embed(train_data)
        if self.multilabel_:  # C by cross-validation on the training rows
            Y = multi_hot(train_data.labels, self.classes_)
            head, self.C_ = fit_one_vs_rest(X, Y, self.C, self.seed)
        else:
            known = self._known_rows(val)
            val_xy = (self._embed(known[0]), known[1]) if known else None
            probe = LinearProbe(backbone=self.backbone_, C=self.C, seed=self.seed, progress=False)
            y = encode_labels(train_data.labels, self.classes_)
            probe.fit_features(X, y, len(self.classes_), val_xy, standardize=False, c_grid=HEAD_C_GRID)
            head, self.C_ = probe.head_, probe.C_
        self.head_ = head
        self._calibrate_head(
            None if self.multilabel_ else val_xy
        )  # temperature scaling on the validation rows
        self.model_ = Classifier(self.backbone_, head).eval()
        self.total_params_ = sum(p.numel() for p in self.model_.parameters())
        self.trainable_params_ = self.encoder_trainable_params_ + sum(p.numel() for p in head.parameters())
        self.head_seconds_ = round(time.perf_counter() - start, 3)
        return self

    def fit(self, X: Any, y: Any = None, val: Any = None, unlabeled: Any = None) -> Contrastive:
        """Both phases on ``X`` (labels ``y`` or ``X``'s label column); ``val`` chooses the head's ``C``.
        Domain alignment is not implemented here: ``align`` other than "none", or ``unlabeled`` rows, are
        refused (``self_train:contrastive`` uses unlabelled rows)."""
        if self.align != "none" or unlabeled is not None:
            raise ParameterError(
                "contrastive does not align domains (align='coral' or unlabelled rows); use "
                "self_train:contrastive, or finetune/lp_ft with align='coral' or 'dann'."
            )
        base = resolve_backbone(self.backbone)
        train = self._data(X, y, base.modality, need_labels=True)
        return self._tune(train, base).fit_head(train, val=val)

    def _embed(self, data: Dataset) -> np.ndarray:
        rt = self._runtime()
        feats = self.backbone_.to(rt.device).encode(
            data.inputs, progress=self.progress, precision=rt.precision
        )
        return np.asarray(feats, dtype=np.float64)

    # -- inference ---------------------------------------------------------------------------------------------
    def predict_proba(self, inputs: Any, tta: bool = False) -> np.ndarray:
        """Class probabilities; for multi-label data each column is that label's own probability."""
        self._check_fitted()
        if tta:
            raise ParameterError("tta=True: the contrastive technique has no test-time augmentation.")
        data = self._data(inputs)
        logits = self._logits(self.model_, self.backbone_.batch_source(data))
        return (logits.sigmoid() if self.multilabel_ else logits.softmax(-1)).numpy()

    def predict(self, inputs: Any, tta: bool = False) -> np.ndarray:
        """Labels; for multi-label data a tuple of labels per row (possibly empty)."""
        return self.labels_from_proba(self.predict_proba(inputs, tta=tta))

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        if not self.multilabel_:
            return self.classes_[proba.argmax(1)]
        out = np.empty(len(proba), dtype=object)
        out[:] = [tuple(str(c) for c in self.classes_[row >= self.threshold]) for row in proba]
        return out

    # -- persistence -------------------------------------------------------------------------------------------
    def fitted_config(self) -> dict:
        return {
            **super().fitted_config(),
            "multilabel": self.multilabel_,
            "C_chosen": self.C_,
            "steps": self.steps_,
            "pairs_seen": self.pairs_seen_,
        }

    def _restore(self, tensors: dict[str, torch.Tensor], fitted: dict) -> None:
        self.multilabel_ = bool(fitted.get("multilabel", False))
        self.C_ = fitted.get("C_chosen")
        self.steps_ = fitted.get("steps")
        self.pairs_seen_ = fitted.get("pairs_seen")


def fit_one_vs_rest(X: np.ndarray, Y: np.ndarray, C: float | str, seed: int) -> tuple[LinearHead, float]:
    """One logistic regression per label on centred features; ``C="auto"`` is chosen by 3-fold
    cross-validated micro-F1. A label that is always (or never) present gets a constant logit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    mean, scale = X.mean(0), np.ones(X.shape[1])
    Z = X - mean

    def fit(Zt: np.ndarray, Yt: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
        W, b = np.zeros((Yt.shape[1], Z.shape[1])), np.zeros(Yt.shape[1])
        with one_blas_thread():  # see parallel.one_blas_thread
            for j in range(Yt.shape[1]):
                if Yt[:, j].min() == Yt[:, j].max():
                    b[j] = 10.0 if Yt[0, j] else -10.0
                    continue
                clf = LogisticRegression(C=c, max_iter=2000).fit(Zt, Yt[:, j])
                W[j], b[j] = clf.coef_[0], clf.intercept_[0]
        return W, b

    if C == "auto":
        folds = min(3, len(Z))
        scores = {}
        for c in HEAD_C_GRID:
            f1 = []
            for tr, te in KFold(folds, shuffle=True, random_state=seed).split(Z):
                W, b = fit(Z[tr], Y[tr], c)
                f1.append(f1_score(Y[te], (Z[te] @ W.T + b) > 0, average="micro", zero_division=0))
            scores[c] = float(np.mean(f1))
        C = max(scores, key=lambda k: (scores[k], -abs(math.log10(k))))
    W, b = fit(Z, Y, float(C))
    return LinearHead.from_arrays(W, b, mean, scale), float(C)
