"""Choosing a technique by evidence on the user's rows: a race on cross-validated folds within the budget.

The contenders are the techniques whose measured cost fits the limits (``recommend`` calibrates them, best
expected accuracy first) and always the probe, the cheap floor. The labelled rows are cut into stratified folds;
in round ``r`` every contender still in the race trains on the other folds' rows and is scored on fold ``r``'s
(accuracy, or macro-F1 when the largest class has more than 3x the rows of the smallest). After each round the
field is halved, keeping the best mean score so far, but never below two, until one is left or the folds run out
(successive halving, cheapest contenders first in each round).

A heat is run only if, after it, the budget still holds the full fit of the most expensive contender still in
the field; until it does, the most expensive contender leaves the race, with that reason. The best contender has
the best mean score over the rounds the last field ran together; ties go to the cheaper technique.

The race overrules the order of expected accuracy (measured on other data sets) only on clear evidence: the best
contender replaces the order's first choice if, on the held-out rows both were scored on, a one-sided sign test
over the rows only one of them got right gives p < ``SWITCH_P``; with few labelled rows a fold holds a handful of
rows, and a difference of one or two is noise.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from typing import Any

import numpy as np

from ..data import Dataset
from ..techniques import get_technique
from .scores import prediction_score

RACE_FOLDS = 3
SWITCH_P = 0.1  # how clear the evidence must be for the race to overrule the order of expected accuracy


@dataclasses.dataclass
class Heat:
    """One contender trained on the rows outside fold ``fold`` and scored on that fold."""

    technique: str
    fold: int
    score: float
    cpu_s: float


@dataclasses.dataclass
class RaceResult:
    winner: str
    heats: list[Heat]
    metric: str
    folds: int
    reason: str
    dropped: dict[str, str]  # technique -> why it left the race before the end

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RaceResult:
        return cls(**{**d, "heats": [Heat(**h) for h in d["heats"]]})

    def mean_scores(self, rounds: set[int] | None = None) -> dict[str, float]:
        """Each contender's mean score over ``rounds`` (default: every round it ran)."""
        return mean_scores(self.heats, rounds)


def mean_scores(heats: list[Heat], rounds: set[int] | None = None) -> dict[str, float]:
    """Each technique's mean score over the heats of ``rounds`` (default: every round it ran)."""
    by: dict[str, list[float]] = {}
    for h in heats:
        if rounds is None or h.fold in rounds:
            by.setdefault(h.technique, []).append(h.score)
    return {t: float(np.mean(s)) for t, s in by.items()}


def race_folds(train: Dataset, folds: int = RACE_FOLDS, seed: int = 0) -> list[np.ndarray] | None:
    """Stratified held-out folds of ``train`` (row indices), as many as the smallest class allows up to
    ``folds``; None when some class has a single row (nothing to hold out)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray([str(v) for v in train.labels])
    smallest = min(Counter(labels).values())
    k = min(folds, smallest)
    if k < 2:
        return None
    split = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    return [np.sort(test) for _, test in split]


def _keep_or_switch(
    best: str, favourite: str, right: dict[tuple[str, int], np.ndarray], k: int, reason: str
) -> tuple[str, str]:
    """The race's winner and the reason, completed: the order's first choice (``favourite``) stands unless the
    evidence against it is clear, a one-sided sign test on the held-out rows both were scored on (rows only one
    of them got right) at ``SWITCH_P``. ``right``: (technique, round) -> which held-out rows it got right."""
    shared = [r for r in range(k) if (best, r) in right and (favourite, r) in right]
    if best == favourite or not shared:
        return best, reason
    from scipy.stats import binom

    b = np.concatenate([right[(best, r)] for r in shared])
    f = np.concatenate([right[(favourite, r)] for r in shared])
    wins, losses = int((b & ~f).sum()), int((f & ~b).sum())
    p = float(binom.sf(wins - 1, wins + losses, 0.5)) if wins + losses else 1.0
    against = f"{best} got {wins} of the {len(b)} held-out rows right that {favourite} got wrong, and {losses} the other way"
    if p < SWITCH_P:
        return best, reason + (
            f"; {against} (sign test p = {p:.2g} < {SWITCH_P}), so it replaces {favourite}, the first in the order"
        )
    return favourite, reason + (
        f"; but {against} (sign test p = {p:.2g}, not below {SWITCH_P}): too little evidence against "
        f"{favourite}, the first in the order, which stays"
    )


def run_race(
    train: Dataset,
    backbone: Any,
    contenders: list[Any],
    *,
    budget_left: float | None,
    params: dict,
    metric: str,
    seed: int = 0,
    folds: int = RACE_FOLDS,
) -> RaceResult | None:
    """Race ``contenders`` (calibrations: ``technique``, ``fixed_cpu_s``, ``predicted_cpu_s``) on held-out folds
    of ``train``; None when the rows cannot be cut into folds. ``budget_left`` (CPU s, None: no limit) must also
    hold the winner's full fit afterwards."""
    held_out = race_folds(train, folds, seed)
    if held_out is None:
        return None
    k = len(held_out)
    cost = {c.technique: c for c in contenders}
    field = sorted(cost, key=lambda t: cost[t].predicted_cpu_s)
    heats: list[Heat] = []
    dropped: dict[str, str] = {}
    spent = 0.0
    all_rows = np.arange(len(train))
    completed: list[int] = []  # rounds every member of the field at that time ran
    right: dict[tuple[str, int], np.ndarray] = {}  # (technique, round) -> which held-out rows it got right
    for r in range(k):
        train_rows = np.setdiff1d(all_rows, held_out[r])
        held = train.subset(held_out[r])
        share = len(train_rows) / len(train)
        ran = []
        for t in list(field):
            if t not in field:
                continue
            c = cost[t]
            heat_cost = c.fixed_cpu_s + (c.predicted_cpu_s - c.fixed_cpu_s) * share
            # the heat, then the full fit of whichever contender wins, must fit: drop the dearest until they do
            while budget_left is not None and t in field:
                dearest = max(field, key=lambda o: cost[o].predicted_cpu_s)
                if spent + heat_cost + cost[dearest].predicted_cpu_s <= budget_left:
                    break
                field.remove(dearest)
                dropped[dearest] = (
                    f"round {r + 1}: its full fit (~{cost[dearest].predicted_cpu_s:.0f} s) after "
                    f"{'its' if dearest == t else 'the next'} heat no longer fit the "
                    f"{max(budget_left - spent, 0):.0f} s left"
                )
            if t not in field:
                continue
            start = time.process_time()
            est = get_technique(t, backbone=backbone, seed=seed, progress=False, use_cache=False, **params)
            est.fit(train.subset(train_rows))
            pred = np.asarray([str(p) for p in est.predict(held.inputs)])
            truth = np.asarray([str(v) for v in held.labels])
            right[(t, r)] = pred == truth
            cpu = time.process_time() - start
            spent += cpu
            heats.append(Heat(t, r, round(prediction_score(pred, truth, metric), 4), round(cpu, 2)))
            ran.append(t)
        if not ran:
            break
        if field and set(field) <= set(ran):
            completed.append(r)
        if not field:
            break
        means = mean_scores(heats, set(completed) or None)
        keep = max(2, math.ceil(len(field) / 2))
        ordered = sorted(field, key=lambda t: (-means.get(t, -1.0), cost[t].predicted_cpu_s))
        for t in ordered[keep:]:
            dropped[t] = f"out after round {r + 1}: mean {metric} {means.get(t, float('nan')):.3f}"
        field = ordered[:keep]
        if len(field) == 1:
            break
    if not heats:
        return RaceResult("", heats, metric, k, "no heat fitted the budget", dropped)
    rounds = set(completed) or {h.fold for h in heats}
    means = mean_scores(heats, rounds)
    final = [t for t in field if t in means] or list(means)
    best = min(final, key=lambda t: (-means[t], cost[t].predicted_cpu_s))
    others = ", ".join(f"{t} {means[t]:.3f}" for t in sorted(final, key=lambda t: -means[t]) if t != best)
    reason = (
        f"{best} had the best mean held-out {metric}, {means[best]:.3f}, over "
        f"{len(rounds)} of {k} folds" + (f" (then: {others})" if others else "")
    )
    winner, reason = _keep_or_switch(best, contenders[0].technique, right, k, reason)
    return RaceResult(winner, heats, metric, k, reason, dropped)
