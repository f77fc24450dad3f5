"""Which rows to label next: unlabelled rows ranked by what labelling them is expected to buy.

``suggest_rows`` works on two arrays the caller already has: the model's predicted probabilities of the unlabelled
rows and their backbone features (from the feature cache, so a second call costs no extraction). Strategies
(``auto``, the default of ``suggest_table`` and ``warmstart suggest``: ``coverage``, for text and images, as
measured in docs/studies.md):

- ``mixed``: the most uncertain rows (smallest margin between the two most probable classes), ten
  times as many as asked for, clustered into as many groups as rows are asked for by a k-means weighted by
  uncertainty, and the row nearest each cluster's centre (Zhdanov 2019, "Diverse mini-batch active learning"):
  uncertain rows, unlike each other, and typical of a region rather than outliers;
- ``margin`` / ``entropy``: the most uncertain rows only;
- ``kcenter``: diversity only (k-center greedy over every row, away from the labelled rows);
- ``typical``: representativeness only, for the first labels (Hacohen et al. 2022, "Active learning on a budget"):
  every row, labelled and not, clustered into as many groups as there are labelled rows plus rows asked for, and
  from each of the least covered clusters (fewest labelled rows, then the largest) its most typical row, the one
  with the densest neighbourhood; clusters and neighbourhoods are measured in the features' first 50 principal
  components, whitened;
- ``coverage``: representativeness and spread, for the first hundreds of labels (MaxHerding, Bae et al. 2024):
  greedily, the rows that with the labelled ones best cover the pool under a Gaussian kernel in the same whitened
  components, so a region's first pick is its densest row and later picks fill what is least covered;
- ``random``: the baseline every strategy is measured against (``benchmarks/active_learning.py``).

Every strategy first drops exact duplicates (the same text or image file twice) and rows that are already
labelled. How the default was chosen and what it bought is in docs/studies.md ("Which rows to label next").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError

STRATEGIES = ("mixed", "margin", "entropy", "kcenter", "typical", "coverage", "random")
# the strategies that place their picks against the labelled rows' features
PLACED_AGAINST_LABELLED = ("kcenter", "typical", "coverage")
# auto: the strategy that saved the most labels on the development collection of each modality. Images (mnist-5k):
# the linear probe's uncertainty picked worse rows than random sampling up to 18 labels per class, and worse than
# typical rows even after 6 or 10 per class; covering the pool saved 44% of random's labels to typical's 32% at
# 64 px, and at 224 px typical 35% to 25%, a tie over both sizes (34.5% and 33.5%). Text (TREC and VADER amazon,
# all-MiniLM-L6-v2, fp32, 3 seeds): coverage saved 43% and 51%, mixed 27% and 5%.
AUTO_STRATEGY = {"text": "coverage", "image": "coverage"}
POOL_FACTOR = 10  # mixed: candidates = this many times the rows asked for, the most uncertain first
TYPICAL_NEIGHBOURS = 20  # typical: density = 1 / mean distance to this many nearest rows of the same cluster
MAX_CLUSTERS = 500  # typical: at most this many clusters (so a large labelled set does not make k-means slow)
# typical clusters in the features' first principal components, each scaled to unit variance (whitened): on the
# image development set (mnist-5k, EfficientNet-Lite0) the raw features' few dominant directions made clusters that
# saved 8% of random sampling's labels, 30, 50 and 100 whitened components 30-32% (5 seeds); components with
# under WHITEN_FLOOR of the first one's variance are left out (numerical noise, which whitening would blow up)
WHITEN_DIMS = 50
WHITEN_FLOOR = 1e-6
WHITEN_SAMPLE = 20_000  # rows the covariance is estimated from
# coverage: the kernel's squared width as a fraction of the median squared distance between rows (0.2 to 2 saved
# about the same on mnist-5k), and the most rows the coverage is measured over (a seeded sample of larger pools)
COVERAGE_WIDTH = 0.5
COVERAGE_REFERENCE = 5000
COVERAGE_BLOCK = 256  # coverage: rows whose gain is re-measured together
COVERAGE_BLOCKS = 4  # coverage: at most this many blocks re-measured per pick (on mnist-5k and Fashion-MNIST
# features one block always sufficed: the same picks as exact greedy)


def uncertainty(proba: np.ndarray, kind: str = "margin") -> np.ndarray:
    """Per row, higher = less sure: ``margin`` is 1 minus the gap between the two most probable classes,
    ``entropy`` the entropy of the prediction divided by its maximum (both in [0, 1]).

    Example:
        >>> uncertainty(np.array([[0.9, 0.1], [0.55, 0.45]])).round(2).tolist()
        [0.2, 0.9]
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ParameterError("uncertainty needs class probabilities of two classes or more per row.")
    if kind == "margin":
        top = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top[:, 1] - top[:, 0])
    if kind == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
        return h / math.log(p.shape[1])
    raise ParameterError(f"uncertainty kind must be margin or entropy; got {kind!r}.")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def first_of_each(keys: Sequence[Any], skip: set | None = None) -> np.ndarray:
    """Indices of the first row of each distinct key, leaving out keys in ``skip`` (rows already labelled)."""
    seen = set(skip or ())
    keep = []
    for i, k in enumerate(keys):
        if k in seen:
            continue
        seen.add(k)
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def suggest_rows(
    proba: np.ndarray,
    features: np.ndarray,
    n: int,
    *,
    strategy: str = "mixed",
    labeled_features: np.ndarray | None = None,
    keys: Sequence[Any] | None = None,
    labeled_keys: Sequence[Any] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Row indices (into ``proba``/``features``) of the ``n`` rows to label first, best first.

    ``keys`` identify rows for deduplication (texts, image paths); rows whose key is in ``labeled_keys`` are never
    suggested. ``labeled_features`` (the rows labelled so far) make ``kcenter`` prefer rows unlike them,
    ``typical`` prefer clusters without them and ``coverage`` count what they already cover.

    Example:
        >>> proba = np.array([[0.5, 0.5], [0.51, 0.49], [0.9, 0.1], [0.5, 0.5]])
        >>> feats = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, 1.0]])
        >>> suggest_rows(proba, feats, 2, strategy="margin", keys=["a", "b", "c", "a"]).tolist()
        [0, 1]
        >>> suggest_rows(proba, feats, 2, keys=["a", "b", "c", "a"]).tolist()   # row 1 is a near-copy of row 0
        [0, 2]
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}.")
    proba, features = np.asarray(proba), np.asarray(features)
    if len(proba) != len(features):
        raise ParameterError(f"{len(proba)} rows of probabilities but {len(features)} rows of features.")
    if n < 1:
        raise ParameterError(f"the number of rows to suggest must be at least 1; got {n}.")
    rows = first_of_each(keys if keys is not None else range(len(proba)), set(labeled_keys or ()))
    n = min(n, len(rows))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == "random":
        return np.random.default_rng(seed).choice(rows, n, replace=False)
    if strategy in ("margin", "entropy"):
        u = uncertainty(proba[rows], strategy)
        return rows[np.argsort(-u, kind="stable")[:n]]
    if strategy == "kcenter":
        return rows[_kcenter(features[rows], n, labeled_features)]
    if strategy == "typical":
        return rows[_typical(features[rows], n, labeled_features, seed)]
    if strategy == "coverage":
        return rows[_coverage(features[rows], n, labeled_features, seed)]
    u = uncertainty(proba[rows], "margin")
    order = np.argsort(-u, kind="stable")[: max(n, POOL_FACTOR * n)]
    return rows[order[_cluster_centres(features[rows[order]], u[order], n, seed)]]


def _cluster_centres(feats: np.ndarray, weight: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows of ``feats``, one per cluster of a k-means weighted by ``weight`` (the rows' uncertainty): the
    row nearest each centre, most uncertain clusters first (Zhdanov 2019, "Diverse mini-batch active learning")."""
    from sklearn.cluster import KMeans

    x = _unit(feats)
    if n >= len(x):
        return np.argsort(-weight, kind="stable")
    km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(x, sample_weight=np.maximum(weight, 1e-6))
    picks = []
    for c in range(n):
        members = np.flatnonzero(km.labels_ == c)
        if len(members):
            d = np.linalg.norm(x[members] - km.cluster_centers_[c], axis=1)
            picks.append(int(members[np.argmin(d)]))
    chosen = set(picks)
    rest = [i for i in np.argsort(-weight, kind="stable") if i not in chosen]
    picks += rest[: n - len(picks)]  # an empty cluster: the next most uncertain rows
    return np.asarray(sorted(picks, key=lambda i: -weight[i]), dtype=np.int64)


def _typical(feats: np.ndarray, n: int, labeled: np.ndarray | None, seed: int) -> np.ndarray:
    """``n`` rows of ``feats``, in their whitened principal components (``whitened``): k-means over them and the
    ``labeled`` rows into (labelled + n) clusters (at most
    ``MAX_CLUSTERS``); then, ``n`` times, the cluster with the fewest labelled or taken rows (ties: the largest)
    gives its most typical untaken row, the one nearest its ``TYPICAL_NEIGHBOURS`` neighbours in the cluster
    (TypiClust, Hacohen et al. 2022). Clusters of fewer than 5 rows go last: they are outliers more than
    regions."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n >= len(feats):
        return np.arange(len(feats), dtype=np.int64)
    x, lab = whitened(feats, labeled, seed)
    x, lab = _unit(x), _unit(lab)
    both = np.concatenate([x, lab])
    k = min(len(lab) + n, MAX_CLUSTERS, len(x))
    kmeans = MiniBatchKMeans if len(both) > 20_000 else KMeans
    assign = kmeans(n_clusters=k, n_init=1, random_state=seed).fit(both).labels_
    mine, covered = assign[: len(x)], np.bincount(assign[len(x) :], minlength=k)
    size = np.bincount(assign, minlength=k)
    order = np.argsort(mine, kind="stable")  # the rows of each cluster, found once
    members_of = np.split(order, np.cumsum(np.bincount(mine, minlength=k))[:-1])
    left = np.array([len(m) for m in members_of])  # untaken rows per cluster
    out: list[int] = []
    score: dict[int, np.ndarray] = {}  # typicality of each cluster's rows, -inf once taken
    while len(out) < n:
        key = np.lexsort((np.arange(k), -size, covered, size < 5))  # the last key sorts first
        c = int(next(c for c in key if left[c] > 0))
        members = members_of[c]
        if c not in score:
            score[c] = _density(x[members], np.random.default_rng(seed + c))
        j = int(np.argmax(score[c]))
        out.append(int(members[j]))
        score[c][j] = -np.inf
        left[c] -= 1
        covered[c] += 1
    return np.asarray(out, dtype=np.int64)


def _coverage(feats: np.ndarray, n: int, labeled: np.ndarray | None, seed: int) -> np.ndarray:
    """``n`` rows of ``feats`` that, with the ``labeled`` rows, cover the unlabelled rows best: greedily, the row
    that most raises sum over rows x of max over picked or labelled rows s of k(x, s), a Gaussian kernel in the
    whitened principal components (``whitened``, rows scaled to unit length) whose squared width is
    ``COVERAGE_WIDTH`` times the median squared distance between rows (MaxHerding: Bae, Noh and Sutherland 2024,
    "Generalized coverage for more robust low-budget active learning"). The sum runs over at most
    ``COVERAGE_REFERENCE`` rows (a seeded sample). The objective is submodular, so a row's gain only shrinks as
    rows are picked: each step re-measures the ``COVERAGE_BLOCK`` largest stale gains until the best of them stays
    on top (lazy greedy), which picks what plain greedy would without re-measuring every row at every step; after
    ``COVERAGE_BLOCKS`` blocks it takes the best re-measured row (where many rows gain alike, as in featureless
    noise, exact greedy would re-measure nearly every row for every pick)."""
    import heapq

    x, lab = whitened(feats, labeled, seed)
    x, lab = _unit(x), _unit(lab)
    rng = np.random.default_rng(seed)
    if len(x) > COVERAGE_REFERENCE:
        ref = x[np.sort(rng.choice(len(x), COVERAGE_REFERENCE, replace=False))]
    else:
        ref = x
    sample = ref[rng.choice(len(ref), min(500, len(ref)), replace=False)]
    # unit rows: |a - b|^2 = 2 - 2 a.b, so the kernel is exp((a.b - 1) * scale), one product and one exp
    scale = 2.0 / (2.0 * COVERAGE_WIDTH * max(float(np.median(2.0 - 2.0 * sample @ sample.T)), 1e-12))

    def kernel(rows: np.ndarray) -> np.ndarray:  # reference rows x ``rows``, float32
        k = ref @ rows.T
        k -= 1.0
        k *= scale
        np.minimum(k, 0.0, out=k)  # a.b may round above 1
        return np.exp(k, out=k)

    def gains(rows: np.ndarray) -> np.ndarray:  # what each of ``rows`` would add to the coverage
        k = kernel(rows)
        k -= covered[:, None]
        np.maximum(k, 0.0, out=k)
        return k.sum(axis=0)

    covered = np.zeros(len(ref), dtype=np.float32)
    for start in range(0, len(lab), 4096):
        covered = np.maximum(covered, kernel(lab[start : start + 4096]).max(axis=1))
    stale = np.concatenate([gains(x[s : s + 4096]) for s in range(0, len(x), 4096)])
    heap = [(-float(g), i) for i, g in enumerate(stale)]  # the largest gain first; ties: the lower row
    heapq.heapify(heap)
    out: list[int] = []
    while len(out) < n and heap:
        # re-measure the rows with the largest stale gains, a block at a time, until the best re-measured gain is
        # at least every stale one (exact greedy) or COVERAGE_BLOCKS blocks were re-measured (then the best of
        # those rows: on data where many rows gain alike, exact greedy would re-measure nearly every row per pick)
        rows_, fresh_ = [], []
        for _ in range(COVERAGE_BLOCKS):
            rows = np.array([heapq.heappop(heap)[1] for _ in range(min(COVERAGE_BLOCK, len(heap)))])
            rows_.append(rows)
            fresh_.append(gains(x[rows]))
            if not heap or fresh_[-1].max() >= -heap[0][0]:
                break
        rows, fresh = np.concatenate(rows_), np.concatenate(fresh_)
        best = int(np.argmax(fresh))
        for j, i in enumerate(rows):
            if j != best:
                heapq.heappush(heap, (-float(fresh[j]), int(i)))
        out.append(int(rows[best]))
        covered = np.maximum(covered, kernel(x[rows[best] : rows[best] + 1])[:, 0])
    return np.asarray(out, dtype=np.int64)


def whitened(
    feats: np.ndarray, labeled: np.ndarray | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``feats`` and ``labeled`` (or none) in the first ``WHITEN_DIMS`` principal components of both together, each
    divided by its standard deviation; components with under ``WHITEN_FLOOR`` of the first one's variance are
    left out. The covariance comes from at most ``WHITEN_SAMPLE`` rows (a seeded sample).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 3)) * [10.0, 1.0, 1e-6]   # the third direction is numerical noise
        >>> w, _ = whitened(x)
        >>> w.shape, np.round(w.std(axis=0), 2).tolist()
        ((500, 2), [1.0, 1.0])
    """
    x = np.asarray(feats, dtype=np.float64)
    lab = (
        np.zeros((0, x.shape[1])) if labeled is None or not len(labeled) else np.asarray(labeled, np.float64)
    )
    both = np.concatenate([x, lab])
    mean = both.mean(axis=0)
    sample = both
    if len(both) > WHITEN_SAMPLE:
        sample = both[np.random.default_rng(seed).choice(len(both), WHITEN_SAMPLE, replace=False)]
    centred = sample - mean
    var, vec = np.linalg.eigh(centred.T @ centred / max(len(sample), 1))
    var, vec = var[::-1], vec[:, ::-1]  # largest first
    keep = max(1, min(WHITEN_DIMS, int((var >= WHITEN_FLOOR * max(var[0], 1e-300)).sum())))
    proj = vec[:, :keep] / np.sqrt(np.maximum(var[:keep], 1e-300))
    return ((x - mean) @ proj).astype(np.float32), ((lab - mean) @ proj).astype(np.float32)


def _density(x: np.ndarray, rng: np.random.Generator, reference: int = 2000) -> np.ndarray:
    """Per row of ``x`` (unit vectors), 1 / the mean cosine distance to its ``TYPICAL_NEIGHBOURS`` nearest other
    rows, among at most ``reference`` rows of ``x`` (a sample of a larger cluster), in chunks of 4,096 rows."""
    m = min(TYPICAL_NEIGHBOURS, len(x) - 1)
    if m < 1:
        return np.ones(len(x))
    ref = np.arange(len(x)) if len(x) <= reference else np.sort(rng.choice(len(x), reference, replace=False))
    out = np.empty(len(x))
    for start in range(0, len(x), 4096):
        rows = np.arange(start, min(start + 4096, len(x)))
        d = 1.0 - x[rows] @ x[ref].T
        d[rows[:, None] == ref[None, :]] = np.inf  # not the row itself
        nearest = np.partition(d, m - 1, axis=1)[:, :m]
        out[rows] = 1.0 / np.maximum(nearest.mean(axis=1), 1e-9)
    return out


def _kcenter(feats: np.ndarray, n: int, labeled: np.ndarray | None) -> np.ndarray:
    """k-center greedy: repeatedly take the row farthest (cosine distance) from the nearest row labelled or taken
    so far."""
    x = _unit(feats)
    dist = np.full(len(x), 2.0, dtype=np.float32)  # the largest cosine distance
    if labeled is not None and len(labeled):
        lab = _unit(labeled)
        for start in range(0, len(lab), 4096):  # bounded memory for many labelled rows
            dist = np.minimum(dist, (1.0 - x @ lab[start : start + 4096].T).min(axis=1))
    taken = np.zeros(len(x), dtype=bool)
    out = []
    for _ in range(n):
        i = int(np.argmax(np.where(taken, -np.inf, np.maximum(dist, 0.0))))
        out.append(i)
        taken[i] = True
        dist = np.minimum(dist, 1.0 - x @ x[i])
    return np.asarray(out, dtype=np.int64)


def row_features(model: Any, data: Any) -> np.ndarray:
    """Backbone features of ``data`` for diversity: the model's own (a probe's, from the feature cache), else its
    backbone's through the feature cache."""
    if hasattr(model, "features"):
        return np.asarray(model.features(data), dtype=np.float32)
    from ..features import FeatureCache
    from ..runtime import resolve

    rt = resolve(getattr(model, "device", "auto"), getattr(model, "precision", "auto"))
    bb = model.backbone_.to(rt.device)
    return np.asarray(FeatureCache().get(bb, data, precision=rt.precision, progress=False), dtype=np.float32)


def row_keys(data: Any) -> list:
    """What identifies a row of ``data`` for deduplication: its text, or its image's path."""
    return list(data.inputs) if data.modality == "text" else [str(r) for r in data.rows]


def resolve_strategy(strategy: str, modality: str) -> str:
    """``strategy``, with ``auto`` replaced by the measured choice for ``modality`` (``AUTO_STRATEGY``).

    >>> resolve_strategy("auto", "image"), resolve_strategy("auto", "text"), resolve_strategy("margin", "image")
    ('coverage', 'coverage', 'margin')
    """
    if strategy == "auto":
        return AUTO_STRATEGY.get(modality, "coverage")
    if strategy not in STRATEGIES:
        raise ParameterError(f"strategy must be auto or one of {', '.join(STRATEGIES)}; got {strategy!r}.")
    return strategy


def suggest_table(
    model: Any, data: Any, n: int, *, strategy: str = "auto", labeled: Any = None, seed: int = 0
) -> Any:
    """The ``n`` rows of ``data`` (a ``Dataset`` of unlabelled rows) to label first, as a table in that order:
    ``rank``, ``row`` (0-based, in ``data``), the input, the model's ``predicted`` label, its ``confidence`` and
    ``uncertainty`` (1 - margin), and an empty ``label`` column to fill in. ``labeled`` (a ``Dataset``, e.g. the
    model's training rows) is never suggested again; ``kcenter``, ``typical`` and ``coverage`` also place their
    picks against it."""
    import pandas as pd

    strategy = resolve_strategy(strategy, data.modality)
    proba = np.asarray(model.predict_proba(data))
    keys = row_keys(data)
    lab_feats = lab_keys = None
    if labeled is not None and len(labeled):
        lab_keys = row_keys(labeled)
        if strategy in PLACED_AGAINST_LABELLED:
            lab_feats = row_features(model, labeled)
    picked = suggest_rows(
        proba,
        row_features(model, data),
        n,
        strategy=strategy,
        labeled_features=lab_feats,
        keys=keys,
        labeled_keys=lab_keys,
        seed=seed,
    )
    top = proba[picked]
    column = "text" if data.modality == "text" else "path"
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(picked) + 1),
            "row": picked,
            column: [keys[i] for i in picked],
            "predicted": np.asarray(model.classes_)[top.argmax(axis=1)],
            "confidence": top.max(axis=1).round(4),
            "uncertainty": uncertainty(top).round(4),
            "label": "",
        }
    )
