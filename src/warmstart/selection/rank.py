"""Rank candidate backbones for a labelled data set by transferability scores on their cached features.

Features come from the FeatureCache, so ranking after any earlier run (or ranking twice) costs only the
scores: seconds. Rows beyond ``max_rows`` are left out by a stratified sample, because every score's ranking
settles long before the full set (and kNN's cost grows with the square of the rows).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backbones import Backbone, get_backbone
from ..data import Dataset
from ..data.splits import few_shot, stratified_split
from ..errors import ParameterError
from ..features import FeatureCache
from ..runtime import resolve
from ..techniques.base import encode_labels, require_single_label
from .scores import FEATURE_SCORES, METRIC_SCORES, SCORE_HELP, leep

ALL_SCORES = ("logme", "knn", "hscore", "leep", "nleep", "ridge_loo", "probe_cv", "sfda", "sfda_lw")
DEFAULT_SCORES = ("logme", "knn", "hscore", "leep", "ridge_loo", "probe_cv")


@dataclasses.dataclass
class Candidate:
    """One backbone's scores (missing where a score does not apply) and the seconds each took."""

    backbone: str
    num_features: int
    params: int
    scores: dict[str, float | None]
    seconds: dict[str, float]
    extract_seconds: float
    cached: bool


@dataclasses.dataclass
class Ranking:
    """Candidates ordered by ``primary`` (best first), with the stability of that order under resampling."""

    candidates: list[Candidate]
    primary: str
    rows: int
    classes: int
    top_share: float | None  # share of row subsamples in which the top candidate stays first
    resamples: int
    # share of those subsamples in which the top candidate scores above the largest one (by parameters); None
    # when the top candidate is the largest
    beats_largest_share: float | None = None
    # what knn, ridge_loo and probe_cv estimate (accuracy or macro_f1), and why when it was chosen for the user
    metric: str = "accuracy"
    metric_reason: str | None = None
    # the labelled rows given, before the samples of at most max_rows in all and max_per_class of each class
    labelled_rows: int | None = None
    max_per_class: int | None = None

    def table(self) -> str:
        """A markdown table: one row per backbone, a column per score and per score's seconds."""
        names = [s for s in ALL_SCORES if any(s in c.scores for c in self.candidates)]
        head = ["rank", "backbone", "dim"] + names + [f"{s} s" for s in names] + ["features s"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, c in enumerate(self.candidates, 1):
            vals = [_fmt(c.scores.get(s)) for s in names]
            secs = [f"{c.seconds[s]:.2f}" if s in c.seconds else "" for s in names]
            feat = f"{c.extract_seconds:.1f}" + (" (cached)" if c.cached else "")
            lines.append(
                "| " + " | ".join([str(i), c.backbone, str(c.num_features), *vals, *secs, feat]) + " |"
            )
        return "\n".join(lines)

    def explain(self) -> str:
        """Plain sentences: what the primary score predicts and how far to trust this order."""
        best = self.candidates[0]
        text = [
            f"Ranked by {self.primary}: {SCORE_HELP[self.primary]}. Higher is better; the scores compare "
            f"backbones on this data set only, not across data sets.",
            f"Computed on {self.rows} labelled rows of {self.classes} classes.",
        ]
        if self.labelled_rows is not None and self.labelled_rows > self.rows:
            cap = f", at most {self.max_per_class} of each class" if self.max_per_class else ""
            text[-1] = (
                f"Computed on a sample of {self.rows} of the {self.labelled_rows} labelled rows ({self.classes} "
                f"classes{cap}; --max-per-class and --max-rows set how many)."
            )
        if self.metric == "macro_f1":
            text.append(
                f"{', '.join(METRIC_SCORES)} estimate macro-F1 here, not accuracy"
                + (f" ({self.metric_reason}; --metric accuracy to change it)." if self.metric_reason else ".")
            )
        if len(self.candidates) > 1:
            second = self.candidates[1]
            text.append(
                f"{best.backbone} is first; {second.backbone} is next "
                f"({self.primary} {_fmt(best.scores[self.primary])} vs {_fmt(second.scores[self.primary])})."
            )
            if self.top_share is not None:
                verdict = (
                    "a clear lead"
                    if self.top_share >= 0.9
                    else "a likely lead; confirm with a short run of the top two"
                    if self.top_share >= 0.6
                    else "too close to call: train the top candidates and compare"
                )
                text.append(
                    f"On {self.resamples} random 80% subsamples of the rows it stayed first in "
                    f"{self.top_share:.0%} of them: {verdict}."
                )
        text += self._against_size()
        agree = [
            s
            for s in self.candidates[0].scores
            if s != self.primary
            and self.candidates[0].scores[s] is not None
            and _top(self.candidates, s) == best
        ]
        if agree:
            text.append(f"The other scores that put it first too: {', '.join(agree)}.")
        return " ".join(text)

    def _against_size(self) -> list[str]:
        """Sentences on the top pick against a size prior (pick the candidate with the most parameters), which
        is hard to beat when the candidates are really different models."""
        if len(self.candidates) < 2:
            return []
        best, largest = self.candidates[0], max(self.candidates, key=lambda c: c.params)
        if largest is best:
            return [
                f"It is also the largest candidate ({best.params / 1e6:.1f}M parameters): the scores and "
                f"picking the largest agree."
            ]
        rank = self.candidates.index(largest) + 1
        text = [
            f"Picking the largest instead would give {largest.backbone} ({largest.params / 1e6:.1f}M parameters "
            f"against {best.params / 1e6:.1f}M; rank {rank} here, {self.primary} "
            f"{_fmt(largest.scores[self.primary])} against {_fmt(best.scores[self.primary])})."
        ]
        share = self.beats_largest_share
        if share is None:
            return text
        if share >= 0.9:
            verdict = "the scores separate them"
        elif share >= 0.6:
            verdict = "a likely lead over the largest; confirm with a short run of both"
        else:
            verdict = (
                "the scores do not separate them better than a coin, so they say no more than picking the "
                "largest does; train both if the choice matters"
            )
        text.append(f"The top pick scored above it in {share:.0%} of the subsamples: {verdict}.")
        return text

    def to_dict(self) -> dict:
        return {
            "primary": self.primary,
            "rows": self.rows,
            "classes": self.classes,
            "top_share": self.top_share,
            "beats_largest_share": self.beats_largest_share,
            "metric": self.metric,
            "metric_reason": self.metric_reason,
            "resamples": self.resamples,
            "labelled_rows": self.labelled_rows,
            "max_per_class": self.max_per_class,
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
        }


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _top(candidates: list[Candidate], score: str) -> Candidate:
    return max((c for c in candidates if c.scores.get(score) is not None), key=lambda c: c.scores[score])


def score_features(
    X: np.ndarray,
    y: np.ndarray,
    scores: Sequence[str] = DEFAULT_SCORES,
    source_proba: np.ndarray | None = None,
    metric: str = "accuracy",
) -> tuple[dict[str, float | None], dict[str, float]]:
    """Each requested score of features ``X`` for class indices ``y`` and the seconds it took; ``leep`` is
    None without the source classifier's probabilities. ``metric`` is what ``knn``, ``ridge_loo`` and
    ``probe_cv`` estimate: accuracy or macro_f1."""
    values: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    for name in scores:
        start = time.perf_counter()
        if name == "leep":
            values[name] = None if source_proba is None else leep(source_proba, y)
        else:
            values[name] = _feature_score(name, X, y, metric)
        seconds[name] = time.perf_counter() - start
    return values, seconds


def _feature_score(name: str, X: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Score ``name`` of features ``X``; ``metric`` goes to the scores that estimate one (``METRIC_SCORES``)."""
    fn = FEATURE_SCORES[name]
    return fn(X, y, metric=metric) if name in METRIC_SCORES else fn(X, y)


def rank_backbones(
    data: Dataset,
    backbones: Sequence[str | Backbone],
    *,
    scores: Sequence[str] = DEFAULT_SCORES,
    primary: str | None = None,
    cache: FeatureCache | None = None,
    max_rows: int = 3000,
    max_per_class: int | None = 16,
    resamples: int = 20,
    precision: str = "auto",
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    metric: str = "auto",
    class_counts: dict[str, int] | None = None,
) -> Ranking:
    """Score every backbone on (a stratified sample of at most ``max_rows`` of) ``data`` and order them by
    ``primary`` (default: ``ridge_loo`` when it is among ``scores``, else the first of ``scores``).
    ``max_per_class``: then at most this many rows of each class (a seeded sample; None: no limit). The
    default 16 is the smallest cap tried (16, 32) that ordered the candidates no worse than every row did, by
    mean tau and regret against fine-tuned accuracy, on the development collection (docs/selection.md).

    ``metric`` is what ``knn``, ``ridge_loo`` and ``probe_cv`` estimate: ``auto`` takes macro-F1 when the
    largest class is more than 3x the smallest in ``class_counts`` (default: the class counts of ``data``; pass
    the full set's counts when ``data`` is a balanced few-shot sample of it), else accuracy.

    Example:
        >>> from warmstart.data import load_packaged
        >>> r = rank_backbones(load_packaged("trec").train, ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"],
        ...                    max_per_class=10, progress=False)
        >>> sorted(c.backbone for c in r.candidates), r.rows
        (['all-MiniLM-L6-v2', 'paraphrase-MiniLM-L3-v2'], 60)
        >>> print(r.table())  # doctest: +ELLIPSIS
        | rank | backbone | dim | ...
    """
    primary = _check_scores(scores, primary, backbones)
    data.require_labels()
    require_single_label(data, "rank")
    chosen, reason = _choose_metric(data, metric, class_counts)
    labelled_rows = len(data)
    if len(data) > max_rows:
        keep = stratified_split(data.labels, val_size=0.0, test_size=max_rows / len(data), seed=seed).test
        data = data.subset(np.sort(keep))
    if max_per_class is not None:
        data = _cap_per_class(data, max_per_class, seed)
    classes = np.array(sorted({str(v) for v in data.labels}))
    y = encode_labels(data.labels, classes)
    cache = cache if cache is not None else FeatureCache()
    rt = resolve(device, precision)
    candidates = []
    features: list[np.ndarray] = []
    for spec in backbones:
        bb = (get_backbone(spec) if isinstance(spec, str) else spec).to(rt.device)
        candidate, X = _score_one(bb, data, y, scores, cache, rt.precision, progress, chosen)
        candidates.append(candidate)
        features.append(X)
    order = sorted(
        range(len(candidates)),
        key=lambda i: -np.inf if candidates[i].scores[primary] is None else candidates[i].scores[primary],
        reverse=True,
    )
    largest = order.index(max(order, key=lambda i: candidates[i].params))
    shares = (
        _top_share([features[i] for i in order], y, primary, resamples, seed, largest, chosen)
        if primary != "leep"
        else (None, None)
    )
    return Ranking(
        candidates=[candidates[i] for i in order],
        primary=primary,
        rows=len(y),
        classes=len(classes),
        top_share=shares[0],
        resamples=resamples,
        beats_largest_share=shares[1] if largest != 0 else None,
        metric=chosen,
        metric_reason=reason,
        labelled_rows=labelled_rows,
        max_per_class=max_per_class,
    )


def _cap_per_class(data: Dataset, max_per_class: int, seed: int) -> Dataset:
    """At most ``max_per_class`` rows of each class, a seeded sample (``few_shot``'s, so a smaller cap's rows
    are among a larger one's); ``data`` itself when no class has more."""
    if (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, (int, np.integer))
        or max_per_class < 2
    ):
        raise ParameterError(
            f"max_per_class (--max-per-class) must be a whole number of at least 2, the rows of each class to "
            f"score on, or None (0 on the command line) for every row; got {max_per_class!r}."
        )
    if max(data.class_counts().values()) <= max_per_class:
        return data
    return data.subset(np.sort(few_shot(data.labels, int(max_per_class), seed=seed)))


def _choose_metric(data: Dataset, metric: str, class_counts: dict[str, int] | None) -> tuple[str, str | None]:
    """The metric the accuracy-like scores estimate, and why when ``auto`` chose macro-F1."""
    from collections import Counter

    from ..study_stats import choose_metric

    counts = class_counts if class_counts is not None else Counter(str(v) for v in data.labels)
    chosen = choose_metric(dict(counts), metric)
    if metric == "auto" and chosen == "macro_f1":
        return chosen, "the largest class has more than 3x the rows of the smallest"
    return chosen, None


def _check_scores(scores: Sequence[str], primary: str | None, backbones: Sequence[Any]) -> str:
    """The primary score (``ridge_loo`` when computed, else the first), after refusing unknown scores."""
    unknown = [s for s in scores if s not in ALL_SCORES]
    if unknown or not scores:
        raise ParameterError(f"unknown score(s) {unknown}; choose from {', '.join(ALL_SCORES)}.")
    if primary is None:
        primary = "ridge_loo" if "ridge_loo" in scores else scores[0]
    if primary not in scores:
        raise ParameterError(
            f"the primary score {primary!r} must be one of the scores computed: {list(scores)}."
        )
    if not backbones:
        raise ParameterError("give at least one backbone to rank.")
    return primary


def _score_one(
    bb: Any,
    data: Dataset,
    y: np.ndarray,
    scores: Sequence[str],
    cache: FeatureCache,
    precision: str,
    progress: bool,
    metric: str = "accuracy",
) -> tuple[Candidate, np.ndarray]:
    """One backbone's features (through the cache) and every score of them, timed."""
    hits, start = cache.hits, time.perf_counter()
    X = np.asarray(cache.get(bb, data, precision=precision, progress=progress), dtype=np.float64)
    extract = time.perf_counter() - start
    values, seconds = score_features(
        X, y, scores, bb.source_proba(X) if "leep" in scores else None, metric=metric
    )
    candidate = Candidate(
        backbone=bb.name,
        num_features=int(X.shape[1]),
        params=int(sum(p.numel() for p in bb.module.parameters())),
        scores=values,
        seconds=seconds,
        extract_seconds=round(extract, 3),
        cached=cache.hits > hits,
    )
    return candidate, X


def _top_share(
    features: list[np.ndarray],
    y: np.ndarray,
    score: str,
    resamples: int,
    seed: int,
    largest: int = 0,
    metric: str = "accuracy",
) -> tuple[float | None, float | None]:
    """Shares of stratified 80% row subsamples in which the first candidate (by ``score`` on all rows) still
    scores highest, and in which it scores above candidate ``largest``. Subsampling, not the bootstrap, because
    repeated rows would flatter kNN."""
    if len(features) < 2 or resamples < 1:
        return None, None
    wins = above = 0
    for r in range(resamples):
        keep = stratified_split(y.astype(str), val_size=0.0, test_size=0.8, seed=seed + 1 + r).test
        values = [_feature_score(score, X[keep], y[keep], metric) for X in features]
        wins += int(np.argmax(values) == 0)
        above += int(values[0] > values[largest])
    return wins / resamples, above / resamples
