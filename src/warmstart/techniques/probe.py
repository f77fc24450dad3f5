"""Linear probe: logistic regression on frozen, cached backbone features."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..backbones import Backbone
from ..data import Dataset, stream
from ..errors import ArtifactError, ParameterError
from ..features import FeatureCache
from ..runtime import PRECISIONS, one_blas_thread, resolve
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
# unlabelled rows that alignment reads at most (a random sample of them beyond it): enough to estimate a
# 768-dimensional covariance, and a bound on what 100k unlabelled rows cost to encode
ALIGN_MAX_ROWS = 10_000
# rows whose BatchNorm statistics ``align="adabn"`` averages, per domain (a random sample of them beyond it)
ADABN_MAX_ROWS = 2048


@register_technique("probe")
class LinearProbe(Technique):
    """Multinomial logistic regression on standardised features of a frozen backbone.

    ``C="auto"`` picks the inverse regularisation strength from ``C_GRID`` by accuracy on ``val`` when given,
    else by stratified cross-validation on the training rows (when every class has at least 2).

    ``align`` adapts to a test domain that differs from the labelled rows', given ``fit(..., unlabeled=rows)``
    of that domain: ``"mean"`` moves the labelled rows' features by the difference of the two domains' means;
    ``"coral"`` also maps their covariance onto the unlabelled rows' (CORAL, Sun et al. 2016: whiten, then
    re-colour; both covariances shrunk by Ledoit-Wolf, since a few labelled rows cannot estimate one). The
    head is trained on the moved features and applied to new rows as they are. ``"adabn"`` (image CNNs with
    BatchNorm) encodes each domain with its own BatchNorm statistics (AdaBN, Li et al. 2016): the labelled rows
    with statistics re-estimated on them, the unlabelled rows and every row predicted later with statistics
    re-estimated on the unlabelled rows; that backbone is saved inside the artifact. ``"adabn+coral"`` then maps
    the labelled rows' features onto the unlabelled rows' as ``"coral"`` does.

    ``lexical`` (text): ``"tfidf"`` fits the regression on TF-IDF of the words beside the embedding (``lexical.py``);
    ``"pieces"`` reads TF-IDF of the backbone tokenizer's own ids instead of scikit-learn's words (each id a word,
    up to the backbone's ``max_length`` tokens), what a graph that receives token ids can compute too.

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
        "align": ["none", "mean", "coral", "adabn", "adabn+coral"],
        "lexical": ["none", "tfidf", "pieces"],
        "lexical_weight": [Interval(float, 0, None, "neither"), "auto"],
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
        align: str = "none",
        lexical: str = "none",
        lexical_weight: float | str = "auto",
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
        self.align = align
        self.lexical = lexical
        self.lexical_weight = lexical_weight
        self.input_col = input_col
        self.label_col = label_col

    # -- phases ----------------------------------------------------------------------------------------------
    def features(self, data: Dataset, store: bool = True, backbone: Backbone | None = None) -> np.ndarray:
        """Backbone features for ``data`` (through the feature cache; ``store=False``: read from it but not
        written to); ``fit`` resolves the backbone first. ``backbone``: another than ``backbone_`` (the
        labelled rows' copy under ``align="adabn"``)."""
        if not hasattr(self, "backbone_"):
            self.backbone_ = resolve_backbone(self.backbone)
        if not hasattr(self, "cache_"):
            self.cache_ = FeatureCache(self.cache_dir, enabled=self.use_cache)
        rt = resolve(self.device, self.precision)
        return self.cache_.get(
            (backbone or self.backbone_).to(rt.device),
            data,
            precision=rt.precision,
            batch_size=self.batch_size,
            progress=self.progress,
            store=store,
        )

    def fit(self, X: Any, y: Any = None, val: Any = None, unlabeled: Any = None) -> LinearProbe:
        """Fit on ``X`` (texts or images in any form ``data.inputs.as_dataset`` reads) and labels ``y`` (or
        ``X``'s label column); ``val``: optional labelled rows that choose ``C``; ``unlabeled``: rows of the
        domain to ``align`` to (their labels, if any, are not used)."""
        self._reset_fitted()
        self._validate_params()
        start = time.perf_counter()
        self.backbone_ = resolve_backbone(self.backbone)
        train, val = self._fit_data(X, y, val, self.backbone_.modality)
        require_single_label(train, self.name)
        self._check_lexical(train)
        self.classes_ = np.array(sorted(set(train.labels)))
        if self.align.startswith("adabn"):
            X, labelled_bb = self._adabn_features(train, unlabeled)
        else:
            X, labelled_bb = np.asarray(self.features(train), dtype=np.float64), None
        y = encode_labels(train.labels, self.classes_)
        if self.lexical != "none":
            if unlabeled is not None:
                raise ParameterError(
                    "unlabelled rows given to a probe with lexical='tfidf', which would ignore them; use "
                    "self_train:probe to learn from them."
                )
            with one_blas_thread():  # all of its fits are logistic regressions (parallel.one_blas_thread)
                return self._fit_lexical(train, X, y, val, start)
        move = self._alignment(X, unlabeled)
        X = move(X)
        val_xy = None
        known = known_label_rows(val, self.classes_)
        if known:
            Xv = move(np.asarray(self.features(val, backbone=labelled_bb), dtype=np.float64)[known])
            val_xy = (Xv, encode_labels([val.labels[i] for i in known], self.classes_))
        self.fit_features(X, y, len(self.classes_), val_xy)
        self._calibrate_head(val_xy)  # temperature scaling on the validation rows
        self.temperature_from_ = "validation" if self.temperature_ is not None else None
        if val_xy is None:
            self._calibrate_cross_validated(X, y)
        self.fit_seconds_ = time.perf_counter() - start
        self.n_train_ = len(train)
        return self

    def _adabn_features(self, train: Dataset, unlabeled: Any) -> tuple[np.ndarray, Backbone]:
        """``align="adabn"``: the features of ``train`` with each domain's own BatchNorm statistics, and the
        labelled rows' copy of the backbone (statistics of the labelled rows, for the validation rows too);
        ``backbone_`` becomes the unlabelled rows' copy (the model's from now on). Rows of ``train`` from
        ``pseudo_from`` on came from the unlabelled rows (self-training's pseudo-labelled rows) and go through
        the unlabelled rows' copy."""
        from .domain import adabn_copy

        if unlabeled is None:
            raise ParameterError(
                "align='adabn' encodes the unlabelled rows' domain with its own BatchNorm statistics; pass them "
                "(fit(..., unlabeled=rows); --unlabeled FOLDER on the command line)."
            )
        rt, base = resolve(self.device, self.precision), self.backbone_
        self.base_reference_ = base.reference()
        size = 4 * (self.batch_size or 32)
        first = int(getattr(train, "pseudo_from", len(train)))
        labelled = train if first >= len(train) else train.subset(np.arange(first))
        target = unlabeled_sample(self._data(unlabeled), self.seed, ADABN_MAX_ROWS)
        labelled_bb = adabn_copy(
            base, unlabeled_sample(labelled, self.seed, ADABN_MAX_ROWS), size, rt, progress=self.progress
        )
        self.backbone_ = adabn_copy(base, target, size, rt, progress=self.progress)
        self.n_unlabeled_ = len(target)
        # each part's rows before ``first`` through the labelled rows' copy, the rest through the unlabelled rows'
        pseudo = np.arange(first, len(train))
        parts = [(labelled, np.arange(first)), (train.subset(pseudo), np.arange(len(pseudo)))]
        feats, at = [], 0
        for data, rows in getattr(train, "feature_parts", None) or parts:
            rows, cut = np.asarray(rows), min(max(first - at, 0), len(rows))
            for bb, pick in ((labelled_bb, rows[:cut]), (self.backbone_, rows[cut:])):
                if len(pick):
                    feats.append(np.asarray(self.features(data, backbone=bb), dtype=np.float64)[pick])
            at += len(rows)
        return np.concatenate(feats), labelled_bb

    # -- word features beside the embedding (lexical="tfidf") -------------------------------------------------
    def _check_lexical(self, train: Dataset) -> None:
        if self.lexical == "none":
            return
        if train.modality != "text":
            raise ParameterError(
                f"lexical={self.lexical!r} adds TF-IDF of words to the features; {train.modality} data has no "
                f"words. Leave lexical at 'none' for images."
            )
        if self.align != "none":
            raise ParameterError(
                f"lexical={self.lexical!r} with align={self.align!r}: alignment moves embeddings only and the "
                f"two are not combined; use one of them."
            )

    def _fit_lexical(
        self, train: Dataset, X: np.ndarray, y: np.ndarray, val: Any, start: float
    ) -> LinearProbe:
        """Logistic regression on [TF-IDF of the words, weight * standardised embedding], the weight and C
        chosen together on ``val`` or by cross-validation on the training rows (TF-IDF and the standardisation
        refitted inside each fold); stored as a ``LinearHead`` on the embedding plus a weight matrix on the
        words (``lexical_coef_``), so the logits are the sum of the two."""
        from ..lexical import Design

        texts = self._lexical_rows(train.inputs)
        known = known_label_rows(val, self.classes_)
        held = None  # the validation rows' words, features and labels
        if known:
            held = (
                self._lexical_rows([val.inputs[i] for i in known]),
                np.asarray(self.features(val), dtype=np.float64)[known],
                encode_labels([val.labels[i] for i in known], self.classes_),
            )
        # 5 folds, 3 from 500 rows on (a held-out fold of 166+ rows scores a setting well enough, at 40% less cost)
        folds = min(5 if len(y) < 500 else 3, int(np.bincount(y).min()))
        cv = (
            list(StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(X, y))
            if folds >= 2
            else []
        )
        # on every training row: the final fit's design, and the one validation rows score settings with
        design = Design.fit(texts, X)
        w, c, fold_designs = self._choose_lexical_setting(texts, X, y, design, held, cv)
        clf = LogisticRegression(C=c, max_iter=self.max_iter).fit(design.features(texts, X, w), y)
        V, D = len(design.words), X.shape[1]
        full = LinearHead.from_sklearn(clf, np.zeros(V + D), np.ones(V + D), len(self.classes_))
        weight, bias = full.linear.weight.detach().numpy(), full.linear.bias.detach().numpy()
        self.words_ = design.words
        self.head_ = LinearHead.from_arrays(weight[:, V:], bias, design.mean, design.scale / w)
        self.lexical_coef_ = torch.from_numpy(np.ascontiguousarray(weight[:, :V]))
        self._calibrate_lexical(texts, X, y, held, cv, fold_designs, (w, c))
        self.fit_seconds_ = time.perf_counter() - start
        self.n_train_ = len(train)
        return self

    def _lexical_work(self, texts: Any) -> int:
        """Whether folds over ``texts`` are worth worker processes (``parallel.fold_map``): characters, or
        tokens times 5."""
        from ..parallel import text_work

        return text_work(texts) if self.lexical != "pieces" else 5 * int(texts.sum())

    def _choose_lexical_setting(
        self, texts: Any, X: np.ndarray, y: np.ndarray, design: Any, held: Any, cv: list
    ) -> tuple[float, float, list | None]:
        """The embedding's weight and C (``lexical_weight_``, ``C_``, ``c_scores_``): the best on the validation
        rows (``held``), else over the folds ``cv``; also the folds' designs where the folds made them."""
        from ..lexical import C_GRID as LEX_C_GRID
        from ..lexical import WEIGHT_GRID, score_fold
        from ..parallel import fold_map

        weights = WEIGHT_GRID if self.lexical_weight == "auto" else (float(self.lexical_weight),)
        grid = [(w, c) for w in weights for c in (LEX_C_GRID if self.C == "auto" else (float(self.C),))]
        scores: dict[str, float] = {}
        fold_designs = None
        if len(grid) > 1 and held is not None:
            v_texts, v_X, v_y = held
            for w, c in grid:
                clf = LogisticRegression(C=c, max_iter=self.max_iter).fit(design.features(texts, X, w), y)
                scores[f"{w},{c}"] = float((clf.predict(design.features(v_texts, v_X, w)) == v_y).mean())
        elif len(grid) > 1 and cv:  # the folds in worker processes where there are cores (parallel.fold_map)
            cs = sorted({c for _, c in grid})
            jobs = [(texts, X, y, tr, te, weights, cs, self.max_iter) for tr, te in cv]
            done = fold_map(score_fold, jobs, self._lexical_work(texts))
            fold_designs = [d for d, _ in done]
            scores = {key: float(np.mean([accs[key] for _, accs in done])) for key in done[0][1]}
        if scores:  # ties: C nearer to the grid's middle, then the smaller weight
            best = max(scores, key=lambda k: (scores[k], -abs(np.log10(float(k.split(",")[1])) - 1)))
            w, c = (float(v) for v in best.split(","))
        else:
            w, c = grid[len(grid) // 2] if len(grid) > 1 else grid[0]
        self.lexical_weight_, self.C_, self.c_scores_ = w, c, scores
        return w, c, fold_designs

    def _calibrate_lexical(
        self, texts: Any, X: np.ndarray, y: np.ndarray, held: Any, cv: list, fold_designs: Any, setting: tuple
    ) -> None:
        """Temperature scaling of the fitted words-and-embedding head: on the validation rows (``held``), else
        on out-of-fold logits at the chosen ``setting`` (weight, C)."""
        from ..lexical import Design, fold_logits
        from ..parallel import fold_map
        from .calibrate import MIN_ROWS, fit_temperature, scale_head

        self.temperature_, self.temperature_from_ = None, None
        if self.calibrate != "none" and held is not None:
            self.temperature_from_ = "validation"
            logits = self._logits(held[1], held[0])
            labels = held[2]
        elif self.calibrate != "none" and cv and len(y) >= MIN_ROWS:  # out-of-fold logits at the setting
            self.temperature_from_ = "cross-validation"
            fold_designs = fold_designs or [Design.fit(texts[tr], X[tr]) for tr, _ in cv]
            w, c = setting
            jobs = [
                (d, texts, X, y, tr, te, w, c, self.max_iter)
                for d, (tr, te) in zip(fold_designs, cv, strict=True)
            ]
            logits, labels = np.zeros((len(y), len(self.classes_))), y
            for (_, te), out in zip(cv, fold_map(fold_logits, jobs, self._lexical_work(texts)), strict=True):
                if out is None:
                    self.temperature_from_ = None
                    break
                logits[te] = two_sided(out)
        if self.temperature_from_ is not None and len(labels) >= MIN_ROWS:
            self.temperature_ = round(fit_temperature(logits, labels), 6)
            scale_head(self.head_, self.temperature_)
            self.lexical_coef_ = self.lexical_coef_ / self.temperature_
        else:
            self.temperature_from_ = None

    def _lexical_rows(self, texts: Any) -> Any:
        """What TF-IDF reads of ``texts``: the texts themselves (``lexical="tfidf"``: scikit-learn's words, as an
        object array), or (``"pieces"``) the counts of the backbone tokenizer's ids in each, up to its
        ``max_length`` (a sparse matrix, ``lexical.count_ids``; of texts read from their file, ``data.stream``,
        a chunk at a time, so only the counts are ever all in memory)."""
        if self.lexical != "pieces":
            rows = np.empty(len(texts), dtype=object)
            rows[:] = [str(t) for t in texts]
            return rows
        from ..lexical import count_flat, count_ids

        if hasattr(texts, "select") and len(texts) > stream.CHUNK:
            from scipy import sparse

            parts = [self._lexical_rows(chunk) for chunk in stream.taken_chunks(texts)]
            width = max(m.shape[1] for m in parts)  # a column per id, up to the largest each chunk holds
            for m in parts:
                m.resize((m.shape[0], width))
            return sparse.vstack(parts, format="csr")
        texts = [str(t) for t in texts]
        if hasattr(self.backbone_, "tokenize_flat"):  # a static backbone: its ids end to end, no lists
            return count_flat(*self.backbone_.tokenize_flat(texts))
        return count_ids(self.backbone_.tokenize(texts))

    def _logits(self, X: np.ndarray, texts: Any) -> np.ndarray:
        """The head's logits for embeddings ``X`` of ``texts`` (``_lexical_rows``): the embedding part plus,
        with ``lexical``, the words' part."""
        with torch.inference_mode():
            logits = self.head_(torch.from_numpy(np.array(X, dtype=np.float32))).numpy().astype(np.float64)
        coef = getattr(self, "lexical_coef_", None)
        if coef is not None:
            scores = getattr(self.words_, "scores", None)  # token ids' TF-IDF (``PieceTfidf``): a fused path
            lexical = scores(texts, coef) if scores else self.words_.transform(texts) @ coef.numpy().T
            logits = logits + np.asarray(lexical, dtype=np.float64)
        return logits

    def _alignment(self, X: np.ndarray, unlabeled: Any) -> Any:
        """The map of the labelled rows' features onto the unlabelled rows' domain (``align``; identity for
        "none" and for "adabn", which aligned the encoder); sets ``n_unlabeled_``."""
        if self.align == "adabn":
            return lambda Z: Z
        self.n_unlabeled_ = 0
        if self.align == "none":
            if unlabeled is not None:
                raise ParameterError(
                    "unlabelled rows given to a probe with align='none', which would ignore them; set "
                    "align='mean', 'coral' or (image CNNs) 'adabn', or use self_train:probe."
                )
            return lambda Z: Z
        if unlabeled is None:
            raise ParameterError(
                f"align={self.align!r} maps the labelled rows onto the domain of unlabelled rows; pass them "
                f"(fit(..., unlabeled=rows); --unlabeled FILE on the command line)."
            )
        T = np.asarray(self.features(unlabeled_sample(self._data(unlabeled), self.seed)))
        self.n_unlabeled_ = len(T)
        return domain_map(X, T.astype(np.float64), self.align.removeprefix("adabn+"))

    def _calibrate_cross_validated(self, X: np.ndarray, y: np.ndarray) -> None:
        """Without validation rows (``calibrate="auto"``): the temperature that best fits the out-of-fold
        logits of stratified cross-validation at the chosen C (every class needs 2 rows and all of them
        ``calibrate.MIN_ROWS``), folded into the head; none otherwise."""
        from .calibrate import MIN_ROWS, fit_temperature, scale_head

        folds = min(5, int(np.bincount(y).min()))
        if self.calibrate == "none" or folds < 2 or len(y) < MIN_ROWS:
            return
        Z = (X - self.head_.mean.numpy().astype(np.float64)) / self.head_.scale.numpy().astype(np.float64)
        logits = np.zeros((len(y), len(self.classes_)))
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
        with one_blas_thread():
            for tr, te in cv.split(Z, y):
                fold = LogisticRegression(C=self.C_, max_iter=self.max_iter).fit(Z[tr], y[tr])
                if len(fold.classes_) != len(self.classes_):
                    return
                logits[te] = two_sided(fold.decision_function(Z[te]))
        self.temperature_ = round(fit_temperature(logits, y), 6)
        self.temperature_from_ = "cross-validation"
        scale_head(self.head_, self.temperature_)

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
        with one_blas_thread():  # see parallel.one_blas_thread
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
            raise ParameterError(
                "tta=True: the probe predicts from one feature vector per input and has no test-time "
                "augmentation; it is for trained techniques (finetune, lp_ft, lora, ...)."
            )
        data = self._data(inputs)
        # a Dataset (a study's or a file's test rows) may come again and is kept; a bare list of inputs (what
        # `predict` on a few texts and `warmstart serve` send, request by request) is not written to the cache
        store = isinstance(inputs, Dataset)
        if getattr(self, "lexical_coef_", None) is not None and self.lexical == "pieces" and not store:
            logits = self._pieces_logits(data)
        else:
            X = np.array(
                self.features(data, store=store), dtype=np.float32
            )  # a copy: the cache's is read-only
            if getattr(self, "lexical_coef_", None) is None:
                with torch.inference_mode():
                    return self.head_(torch.from_numpy(X)).softmax(-1).numpy()
            logits = self._logits(X, self._lexical_rows(list(data.inputs)))
        return torch.from_numpy(logits).softmax(-1).numpy().astype(np.float32)

    def _pieces_logits(self, data: Dataset) -> np.ndarray:
        """The logits of texts that are not cached, with ``lexical="pieces"``. A backbone that encodes token ids
        (``encode_flat``: a static one) is given the ids it was tokenized to once, for its features and the
        counts both, since the tokenizer is most of its time; then the rows go on in parts, in as many threads as
        torch uses (counting, the lookup and the head leave the interpreter's lock). Any other backbone encodes
        the texts itself."""
        from ..lexical import count_flat, count_ids
        from ..parallel import even_runs, thread_map

        bb = self.backbone_
        texts = [str(t) for t in data.inputs]
        if not hasattr(bb, "encode_flat"):
            X = np.array(self.features(data, store=False), dtype=np.float32)
            return self._logits(X, count_ids(bb.tokenize(texts)))
        bb = bb.to(resolve(self.device, self.precision).device)
        flat, lengths = bb.tokenize_flat(texts)
        ends = np.cumsum(lengths)

        def part(rows: tuple[int, int]) -> np.ndarray:
            a, b = rows
            start = int(ends[a - 1]) if a else 0
            ids, sizes = flat[start : int(ends[b - 1]) if b else 0], lengths[a:b]
            counts = count_flat(ids, sizes)  # the lookup reads each distinct id once, weighted by these
            return self._logits(bb.encode_flat(ids, sizes, counts), counts)

        parts = even_runs(ends, torch.get_num_threads(), PART_TOKENS)
        return np.concatenate(thread_map(part, parts, len(parts)))

    def predict(self, inputs: Any, tta: bool = False) -> np.ndarray:
        proba = self.predict_proba(inputs, tta=tta)
        return self.classes_[proba.argmax(1)]

    def trainable_parameters(self) -> int:
        """The head's numbers, and with ``lexical`` the word weights (one per class and vocabulary word)."""
        coef = getattr(self, "lexical_coef_", None)
        return super().trainable_parameters() + (int(coef.numel()) if coef is not None else 0)

    # -- persistence (used by warmstart.artifact) ------------------------------------------------------------
    def backbone_record(self, embed: bool) -> tuple[dict, bool]:
        """With ``align="adabn"`` the backbone's BatchNorm statistics are the unlabelled rows': it is saved inside
        the artifact, with the base backbone recorded beside it."""
        if not self.align.startswith("adabn"):
            return super().backbone_record(embed)
        base = getattr(self, "base_reference_", None)
        return {**self.backbone_.reference(), **({"base": base} if base else {})}, True

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"head.{k}": v for k, v in self.head_.state_dict().items()}
        if getattr(self, "lexical_coef_", None) is not None:
            out["lexical.coef"] = self.lexical_coef_.contiguous()
            out["lexical.idf"] = torch.from_numpy(self.words_.idf.copy())
        return out

    def fitted_config(self) -> dict:
        return {
            "C_chosen": self.C_,
            "C_scores": self.c_scores_,
            "n_train": self.n_train_,
            "temperature": getattr(self, "temperature_", None),
            "temperature_from": getattr(self, "temperature_from_", None),
            **({"n_unlabeled": self.n_unlabeled_} if getattr(self, "n_unlabeled_", 0) else {}),
            **({"base_backbone": self.base_reference_} if getattr(self, "base_reference_", None) else {}),
            **(
                {"lexical_weight": self.lexical_weight_, "lexical_vocabulary": self.words_.vocabulary}
                if getattr(self, "lexical_coef_", None) is not None
                else {}
            ),
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
        if (fitted or {}).get("base_backbone"):
            est.base_reference_ = fitted["base_backbone"]
        if "lexical.coef" in tensors:
            from ..lexical import PieceTfidf, Tfidf

            vocabulary = (fitted or {}).get("lexical_vocabulary")
            if vocabulary is None:
                raise ArtifactError(
                    "warmstart.json: the saved probe has word weights but its 'fitted' section has no "
                    "lexical_vocabulary; the artifact is damaged: refit it."
                )
            idf = tensors["lexical.idf"].double().numpy()
            est.words_ = (
                PieceTfidf.from_vocabulary(vocabulary, idf)
                if est.lexical == "pieces"
                else Tfidf(vocabulary, idf)
            )
            est.lexical_coef_ = tensors["lexical.coef"]
            est.lexical_weight_ = (fitted or {}).get("lexical_weight")
        return est


# rows are cut into parts for threads only where each part would hold at least this many tokens
PART_TOKENS = 1 << 15


def two_sided(raw: np.ndarray) -> np.ndarray:
    """Logits of every class from ``decision_function``: a binary model's one score becomes two symmetric logits
    (the same probabilities)."""
    return np.c_[-raw / 2, raw / 2] if raw.ndim == 1 else raw


def domain_map(source: np.ndarray, target: np.ndarray, how: str) -> Any:
    """A function moving features of ``source``'s domain onto ``target``'s: by the difference of their means
    ("mean"), or also whitening by the source covariance and re-colouring by the target's ("coral"), both
    covariances shrunk by Ledoit-Wolf. Example:

        >>> rng = np.random.default_rng(0)
        >>> src, tgt = rng.normal(0, 1, (50, 3)), rng.normal(5, 2, (400, 3))
        >>> moved = domain_map(src, tgt, "coral")(src)
        >>> bool(abs(moved.mean() - 5) < 0.1), bool(abs(moved.std() / src.std() - 2) < 0.3)
        (True, True)
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    if how == "mean":
        return lambda Z: Z - mu_s + mu_t
    from sklearn.covariance import LedoitWolf

    def root(cov: np.ndarray, power: float) -> np.ndarray:
        w, V = np.linalg.eigh(cov)
        w = np.clip(w, max(w.max(), 1e-12) * 1e-6, None)
        return (V * w**power) @ V.T

    A = root(LedoitWolf().fit(source).covariance_, -0.5) @ root(LedoitWolf().fit(target).covariance_, 0.5)
    return lambda Z: (Z - mu_s) @ A + mu_t


def unlabeled_sample(data: Dataset, seed: int, limit: int = ALIGN_MAX_ROWS) -> Dataset:
    """``data`` without labels, and at most ``limit`` of its rows (a seeded random sample, in row order)."""
    if len(data) > limit:
        data = data.subset(np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False)))
    return data.without_labels()
