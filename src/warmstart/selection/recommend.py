"""Which technique to run: the best expected accuracy that fits a compute budget, with costs measured, not guessed.

Expected accuracy is an order of preference per modality and data size, taken from the measured tables in
docs/techniques.md (TREC at 64 per class; Fashion-MNIST at 100 per class) and the few-shot benchmark against
setfit. Cost is measured: each candidate, in that order, runs two short calibration fits on a sample of the
real training rows (the same backbone, batch size and precision as the real fit), and the CPU time is fitted as

    cpu(units) = fixed + per_unit * units        units = optimizer steps (trained techniques) or rows (probe)

then extrapolated to the full fit's planned steps, plus encoding the rest of the training rows at the measured
per-row rate. Candidates whose predicted CPU time fits what is left of the budget after calibration (and whose
trainable parameters and peak memory fit their limits) are contenders: the first ``MAX_CONTENDERS`` trained
techniques in the order that fit, and the probe. They race on held-out folds of the labelled rows
(``selection.race``) and the best by measured accuracy (macro-F1 on imbalanced rows) is the recommendation.
``race=False`` takes the first contender in the order without racing.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backbones import Backbone, get_backbone
from ..cost import measure
from ..data import Dataset
from ..errors import ParameterError
from ..evaluate import fit_measured
from ..features import FeatureCache
from ..runtime import resolve
from ..study_stats import choose_metric
from ..techniques import get_technique
from .race import RaceResult, run_race

MAX_CONTENDERS = 3  # trained techniques raced (besides the probe): each costs a calibration and its heats
# at or below this many rows per class, the few-shot order applies. Text: 64, where on the development collection
# (TREC, VADER nyt, amazon and tweets; 32 and 64 per class) contrastive was ahead of lp_ft in 10 of 12 runs, by
# 3.1 points on average (docs/selection.md); images: 16
FEW_SHOT_PER_CLASS = {"text": 64, "image": 16}
PREFERENCE = {
    ("text", "few"): ("contrastive", "lp_ft", "finetune", "lora", "bitfit", "probe"),
    ("text", "many"): ("lp_ft", "contrastive", "finetune", "lora", "bitfit", "probe"),
    ("image", "few"): ("lp_ft", "probe", "finetune", "lora", "bitfit"),
    ("image", "many"): ("lp_ft", "finetune", "probe", "lora", "bitfit"),
}


@dataclasses.dataclass
class Calibration:
    """One candidate's measured cost model and its prediction for the full fit."""

    technique: str
    units: int  # planned steps (or rows, for the probe) of the full fit
    fixed_cpu_s: float
    per_unit_cpu_s: float
    per_row_encode_cpu_s: float
    predicted_cpu_s: float
    trainable_params: int
    peak_rss_mb: float
    calibration_cpu_s: float
    fits: bool = False
    reason: str = ""


@dataclasses.dataclass
class Recommendation:
    technique: str | None
    params: dict
    budget_cpu_s: float | None
    calibrations: list[Calibration]
    order: tuple[str, ...]
    race: RaceResult | None = None  # the race among the contenders, when one was run
    note: str = ""  # why no race was run, when contenders were left

    @classmethod
    def from_dict(cls, d: dict) -> Recommendation:
        """Back from ``to_dict`` (as a run's config records it)."""
        race = RaceResult.from_dict(d["race"]) if d.get("race") else None
        return cls(**{**d, "calibrations": [Calibration(**c) for c in d["calibrations"]], "race": race})

    def table(self) -> str:
        lines = [
            "| technique | predicted CPU s | per step s | trainable params | peak MB | calibration s | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.calibrations:
            verdict = "chosen" if c.technique == self.technique else c.reason or "fits"
            lines.append(
                f"| {c.technique} | {c.predicted_cpu_s:.0f} | {c.per_unit_cpu_s:.3f} | {c.trainable_params:,} | "
                f"{c.peak_rss_mb:.0f} | {c.calibration_cpu_s:.1f} | {verdict} |"
            )
        if self.race is not None and self.race.heats:
            r = self.race
            lines += [
                "",
                f"| technique | {' | '.join(f'fold {i + 1}' for i in range(r.folds))} | race CPU s |",
            ]
            lines.append("|---|" + "---|" * (r.folds + 1))
            for t in dict.fromkeys(h.technique for h in r.heats):
                by = {h.fold: h for h in r.heats if h.technique == t}
                cells = [f"{by[i].score:.3f}" if i in by else "" for i in range(r.folds)]
                lines.append(f"| {t} | {' | '.join(cells)} | {sum(h.cpu_s for h in by.values()):.1f} |")
        return "\n".join(lines)

    def explain(self) -> str:
        spent = sum(c.calibration_cpu_s for c in self.calibrations)
        budget = (
            "no CPU budget" if self.budget_cpu_s is None else f"a budget of {self.budget_cpu_s:.0f} CPU s"
        )
        if self.technique is None:
            return (
                f"Nothing fits {budget}: every candidate's predicted cost is above what is left after "
                f"{spent:.0f} s of calibration. Raise --budget, train on fewer rows (--shots), or pick a smaller "
                f"backbone."
            )
        chosen = next(c for c in self.calibrations if c.technique == self.technique)
        if self.race is not None and self.race.heats:
            r = self.race
            raced = list(dict.fromkeys(h.technique for h in r.heats))
            text = (
                f"{self.technique} won a race of {', '.join(raced)} on held-out folds of the labelled rows: "
                f"{r.reason}. Calibration took {spent:.0f} CPU s and the race "
                f"{sum(h.cpu_s for h in r.heats):.0f}; the full fit is predicted at {chosen.predicted_cpu_s:.0f}."
            )
            out = [f"{t} ({why})" for t, why in r.dropped.items()]
            unfit = [f"{c.technique} ({c.reason})" for c in self.calibrations if not c.fits]
            if out:
                text += f" Left the race: {'; '.join(out)}."
            if unfit:
                text += f" Did not fit the limits: {'; '.join(unfit)}."
            return text
        skipped = [c.technique for c in self.calibrations if not c.fits]
        text = (
            f"{self.technique} is the first of {', '.join(self.order)} (best expected accuracy first) that fits "
            f"{budget}: predicted {chosen.predicted_cpu_s:.0f} CPU s for {chosen.units} "
            f"{'rows' if self.technique == 'probe' else 'steps'}, from two calibration fits "
            f"({spent:.0f} CPU s of calibration in all)."
        )
        if skipped:
            text += f" Did not fit: {', '.join(skipped)}."
        if self.note:
            text += f" {self.note}"
        return text

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "order": list(self.order)}


def parse_budget(text: str | float | None) -> float | None:
    """CPU seconds from ``"300"``, ``"90s"``, ``"5m"``, ``"1.5h"``.

    >>> parse_budget("5m"), parse_budget("90s"), parse_budget("1.5h")
    (300.0, 90.0, 5400.0)
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*", str(text).lower())
        if not m:
            raise ParameterError(f"budget {text!r} is not a duration; write it like 90s, 5m or 1.5h.")
        seconds = float(m.group(1)) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if not seconds > 0:  # refused at once, before any calibration fit is spent on it
        raise ParameterError(f"budget {text!r}: a budget must be more than 0 seconds.")
    return seconds


def parse_size(text: str | int | None, unit: str = "") -> float | None:
    """``"76k"``, ``"1.5M"``, ``"2G"`` (with an optional trailing ``unit`` such as B) to a number.

    >>> parse_size("1.5M"), parse_size("512MB", "B")
    (1500000.0, 512000000.0)
    """
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    m = re.fullmatch(rf"\s*([0-9]*\.?[0-9]+)\s*([kmg]?)(?:{unit.lower()})?\s*", str(text).lower())
    if not m:
        raise ParameterError(f"{text!r} is not a size; write it like 500k, 2M or 1G{unit}.")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


def preference(modality: str, per_class: float) -> tuple[str, ...]:
    """The order of expected accuracy for ``modality`` at ``per_class`` labelled rows per class.

    >>> preference("text", 32)[:2], preference("text", 65)[:2], preference("image", 32)[:2]
    (('contrastive', 'lp_ft'), ('lp_ft', 'contrastive'), ('lp_ft', 'finetune'))
    """
    return PREFERENCE[(modality, "few" if per_class <= FEW_SHOT_PER_CLASS[modality] else "many")]


def recommend(
    train: Dataset,
    backbone: str | Backbone = "all-MiniLM-L6-v2",
    *,
    budget: str | float | None = None,
    max_params: str | float | None = None,
    max_memory_mb: float | None = None,
    candidates: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
    cache: FeatureCache | None = None,
    seed: int = 0,
    race: bool = True,
) -> Recommendation:
    """The technique that measured best on held-out folds of ``train`` among those whose measured cost fits the
    limits (``race=False``: the first in the order of expected accuracy that fits, without racing).

    Example:
        >>> from warmstart.data import load_packaged, few_shot
        >>> trec = load_packaged("trec").train
        >>> train = trec.subset(few_shot(trec.labels, k=8))
        >>> rec = recommend(train, "paraphrase-MiniLM-L3-v2", budget="2m", candidates=["probe", "bitfit"])
        >>> rec.technique in ("probe", "bitfit")
        True
    """
    budget_s, limit_params = parse_budget(budget), parse_size(max_params)  # bad limits fail before any work
    train.require_labels()
    bb = get_backbone(backbone) if isinstance(backbone, str) else backbone
    per_class = len(train) / max(1, len(train.classes))
    if candidates:
        order = tuple(candidates)
    elif train.multilabel:
        order = ("contrastive",)  # the one technique that trains on label sets
    else:
        order = preference(bb.modality, per_class)
    cache = cache if cache is not None else FeatureCache()
    spent = 0.0
    done: list[Calibration] = []
    contenders: list[Calibration] = []
    # the probe is the cheap floor every race includes, unless the candidates were given or it cannot train
    floor = () if (candidates or train.multilabel or "probe" in order) else ("probe",)
    for name in (*order, *floor):
        trained = [c for c in contenders if c.technique != "probe"]
        if race and name != "probe" and len(trained) >= MAX_CONTENDERS:
            continue
        cal = calibrate(name, bb, train, params or {}, cache, seed)
        spent += cal.calibration_cpu_s
        left = None if budget_s is None else budget_s - spent
        if left is not None and cal.predicted_cpu_s > left:
            cal.reason = f"needs ~{cal.predicted_cpu_s:.0f} s, {max(left, 0):.0f} s left"
        elif limit_params is not None and cal.trainable_params > limit_params:
            cal.reason = f"{cal.trainable_params:,} trainable params > {limit_params:,.0f}"
        elif max_memory_mb is not None and cal.peak_rss_mb > max_memory_mb:
            cal.reason = f"peak {cal.peak_rss_mb:.0f} MB > {max_memory_mb:.0f} MB"
        else:
            cal.fits = True
            contenders.append(cal)
        done.append(cal)
        if cal.fits and not race:
            return Recommendation(name, dict(params or {}), budget_s, done, order)
    if not contenders:
        return Recommendation(None, dict(params or {}), budget_s, done, order)
    if len(contenders) == 1:
        return Recommendation(
            contenders[0].technique,
            dict(params or {}),
            budget_s,
            done,
            order,
            note="It was the only contender.",
        )
    result = run_race(
        train,
        bb,
        contenders,
        budget_left=None if budget_s is None else budget_s - spent,
        params=dict(params or {}),
        metric=choose_metric(dict(Counter(str(v) for v in train.labels))),
        seed=seed,
    )
    if result is None or not result.winner:
        why = (
            "Not raced: a class has a single labelled row, so there is nothing to hold out."
            if result is None
            else "Not raced: no heat fitted the budget."
        )
        return Recommendation(contenders[0].technique, dict(params or {}), budget_s, done, order, note=why)
    return Recommendation(result.winner, dict(params or {}), budget_s, done, order, race=result)


_MIN_SPAN_CPU_S = 0.25  # the least CPU time the two calibration fits must differ by
_MAX_GROWTH = 16  # how many times the longer fit's extra steps may be repeated to reach it


def calibrate(
    name: str, bb: Backbone, train: Dataset, params: dict, cache: FeatureCache, seed: int = 0
) -> Calibration:
    """Two short fits of ``name`` on a sample of ``train``; their CPU times give the cost model."""
    start = time.process_time()
    est = get_technique(name, backbone=bb, seed=seed, progress=False, **params)
    rng = np.random.default_rng(seed)
    encode_s = _encode_rate(bb, train, rng, cache, est)
    if name == "probe":
        return _calibrate_probe(est, bb, train, rng, encode_s, start)
    batch = int(est.batch_size)
    rows = train.subset(_sample_rows(train, min(len(train), 2 * batch), rng))
    if hasattr(est, "planned_steps"):  # contrastive: a step budget, not epochs
        small, large = {"steps": 2}, {"steps": 6}
        units_small, units_large, units_full = 2, 6, est.planned_steps(len(train))
    else:
        # no floor on steps here: the two fits must differ by exactly four epochs (with two, the difference of two
        # short timings was at times within their noise: per-step cost 0 or half the real one)
        small, large = {"epochs": 1, "min_steps": 0}, {"epochs": 5, "min_steps": 0}
        spe = est.steps_per_epoch(len(rows))
        units_small, units_large = spe, 5 * spe
        units_full = est.planned_epochs(len(train)) * est.steps_per_epoch(len(train))
    over = {"use_cache": False}  # calibration samples must not fill the feature cache
    t_small, _, _ = _timed_fit(name, bb, rows, {**params, **small, **over}, seed)
    t_large, peak, trainable = _timed_fit(name, bb, rows, {**params, **large, **over}, seed)
    if t_large - t_small < _MIN_SPAN_CPU_S:
        # on a small model the steps the two fits differ by cost less than a timing's noise (the per-step cost
        # came out anywhere from 0.8 to 2.5 times the real one): lengthen the longer fit until they do not
        grow = min(_MAX_GROWTH, math.ceil(1.5 * _MIN_SPAN_CPU_S / max(t_large - t_small, 0.01)))
        extra = (units_large - units_small) * grow
        key = "steps" if "steps" in large else "epochs"
        large = {**large, key: small[key] + (large[key] - small[key]) * grow}
        units_large = units_small + extra
        t_large, peak, trainable = _timed_fit(name, bb, rows, {**params, **large, **over}, seed)
    per_unit = (t_large - t_small) / (units_large - units_small)
    if (
        per_unit <= 0
    ):  # the longer fit timed no slower: noise swamped the difference, so charge it all to steps
        per_unit = t_large / units_large
    fixed = max(t_small - per_unit * units_small, 0.0)
    predicted = fixed + per_unit * units_full + encode_s * max(len(train) - len(rows), 0)
    return Calibration(
        technique=name,
        units=int(units_full),
        fixed_cpu_s=round(fixed, 3),
        per_unit_cpu_s=round(per_unit, 4),
        per_row_encode_cpu_s=round(encode_s, 5),
        predicted_cpu_s=round(predicted, 1),
        trainable_params=int(trainable),
        peak_rss_mb=round(peak, 1),
        calibration_cpu_s=round(time.process_time() - start, 2),
    )


def _calibrate_probe(est, bb: Backbone, train: Dataset, rng, encode_s: float, start: float) -> Calibration:
    from ..techniques.base import encode_labels

    rows = _sample_rows(train, min(len(train), 256), rng)
    sample = train.subset(rows)
    X = np.random.default_rng(0).normal(
        size=(len(sample), bb.num_features)
    )  # the head's cost, not its quality
    classes = np.array(sorted({str(v) for v in sample.labels}))
    with measure() as cost:
        est.fit_features(X, encode_labels(sample.labels, classes), len(classes))
    head_s = cost.cpu_seconds * max(1.0, len(train) / len(sample))  # logistic regression: ~linear in rows
    return Calibration(
        technique="probe",
        units=len(train),
        fixed_cpu_s=round(head_s, 3),
        per_unit_cpu_s=round(encode_s, 5),
        per_row_encode_cpu_s=round(encode_s, 5),
        predicted_cpu_s=round(head_s + encode_s * len(train), 1),
        trainable_params=int(len(classes) * (bb.num_features + 1)),
        peak_rss_mb=round(cost.peak_rss_mb, 1),
        calibration_cpu_s=round(time.process_time() - start, 2),
    )


def _encode_rate(bb: Backbone, train: Dataset, rng, cache: FeatureCache, est) -> float:
    """CPU seconds per training row to encode (0 when the whole training set is already in the cache)."""
    rt = resolve(getattr(est, "device", "auto"), getattr(est, "precision", "fp32"))
    bb.to(rt.device)
    if cache.enabled and cache.path(cache.key(bb, train, rt.precision)).is_file():
        return 0.0
    sample = train.subset(_sample_rows(train, min(len(train), 64), rng))
    t = time.process_time()
    bb.encode(sample, progress=False, precision=rt.precision)
    return (time.process_time() - t) / len(sample)


def _timed_fit(
    name: str, bb: Backbone, rows: Dataset, params: dict, seed: int, repeats: int = 2
) -> tuple[float, float, int]:
    """CPU seconds of a short fit, the least of ``repeats`` runs: a short timing is easily inflated by other work
    on the machine, never deflated, and the per-step cost is the difference of two such timings."""
    best, peak = float("inf"), 0.0
    for _ in range(repeats):
        est = get_technique(name, backbone=bb, seed=seed, progress=False, **params)
        cost = fit_measured(est, rows)
        best, peak = min(best, cost.cpu_seconds), max(peak, cost.peak_rss_mb)
    return best, peak, est.trainable_parameters()


def _sample_rows(data: Dataset, n: int, rng) -> np.ndarray:
    """``n`` row indices with every class present (so a calibration fit sees the real label set)."""
    labels = np.asarray([str(v) for v in data.labels])
    first = np.array([np.flatnonzero(labels == c)[0] for c in np.unique(labels)])
    rest = rng.permutation(np.setdiff1d(np.arange(len(data)), first))[: max(0, n - len(first))]
    return np.sort(np.concatenate([first, rest]))[: max(n, len(first))]
