"""Transferability scores: how well a backbone's frozen features suit a labelled task, without training it.

Every score takes features ``X`` of shape ``(N, D)`` and integer labels ``y`` in ``[0, C)`` (LEEP takes the
source model's class probabilities instead of features) and returns one float, higher meaning "expected to
transfer better". All arithmetic is float64: LogME's evidence and the H-score's covariance inverse lose several
digits in float32 on features of a few hundred dimensions.

- ``logme``: log marginal evidence per row of Bayesian linear regression from the features to each one-hot
  target, maximised over the prior and noise precisions (You et al., 2021). No hyperparameters.
- ``knn``: leave-one-out accuracy of a k-nearest-neighbour vote under cosine similarity.
- ``hscore``: tr(cov(f)^-1 cov(E[f|y])), the between-class share of the feature variance (Bao et al., 2019),
  with a Ledoit-Wolf shrunk covariance so it is defined when N < D (Ibrahim et al., 2022).
- ``leep``: log expected empirical prediction from the source classifier's outputs (Nguyen et al., 2020).
- ``nleep``: LEEP with a Gaussian mixture on PCA-reduced features standing in for the source classifier
  (Li et al., 2021), so backbones without a classifier get a LEEP-like score too.
- ``ridge_loo``: exact leave-one-out accuracy of a ridge-regression probe on one-hot targets, at the best of a
  grid of penalties, all from one SVD: a cross-validated linear probe at the cost of LogME.
- ``probe_cv``: cross-validated accuracy of a logistic-regression probe (the slowest, and the most direct).
- ``sfda``: self-challenging Fisher discriminant analysis (Shao et al., 2022): a shrunk linear discriminant's
  mean probability of each row's class, after the rows are pulled towards the other classes' means by as much
  as the first discriminant doubted them, so that features whose classes stay apart under that challenge win.
  ``sfda_lw`` shrinks its covariance by Ledoit-Wolf instead of the paper's scale-bound rule.

``knn``, ``ridge_loo`` and ``probe_cv`` estimate a metric of held-out predictions; ``metric="macro_f1"`` makes
them estimate macro-F1 instead of accuracy (``METRIC_SCORES``), which is the yardstick on imbalanced data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import DataError, ParameterError

BETA_MAX = 1e8
METRIC_SCORES = ("knn", "ridge_loo", "probe_cv")  # the scores that estimate accuracy or macro-F1


def prediction_score(pred: np.ndarray, y: np.ndarray, metric: str = "accuracy") -> float:
    """Accuracy, or macro-F1 over the classes present in ``y`` (a class never predicted scores 0 F1).

    >>> prediction_score(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), "macro_f1")
    0.7333333333333334
    """
    if metric == "accuracy":
        return float((pred == y).mean())
    if metric != "macro_f1":
        raise ParameterError(f"metric takes accuracy or macro_f1; got {metric!r}.")
    from sklearn.metrics import f1_score  # as metrics.classification_metrics computes it, on class indices

    return float(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0))


def _check(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise DataError(f"features must be (N, D) with one label per row; got {X.shape} and {len(y)} labels.")
    if not np.isfinite(X).all():
        bad = int(np.flatnonzero(~np.isfinite(X).all(1))[0])
        raise DataError(f"features of row {bad} are not finite; re-extract them (clear the feature cache).")
    if y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
        raise DataError("labels must be class indices 0..C-1 (use warmstart.techniques.base.encode_labels).")
    classes = int(y.max()) + 1 if len(y) else 0
    if len(np.unique(y)) < 2:
        raise DataError("a transferability score needs rows of at least two classes.")
    return X, y.astype(np.int64), classes


def _class_means(X: np.ndarray, y: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class's mean row of ``X`` (zeros for a class without rows) and the rows per class."""
    counts = np.bincount(y, minlength=C).astype(np.float64)
    means = np.zeros((C, X.shape[1]))
    np.add.at(means, y, X)
    return means / np.maximum(counts, 1.0)[:, None], counts


def logme(X: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-5) -> float:
    """LogME: mean over classes of the maximised log evidence per row (nats); higher is better.

    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> good = y[:, None] + 0.1 * rng.normal(size=(200, 8))
    >>> logme(good, y) > logme(rng.normal(size=(200, 8)), y)
    True
    """
    X, y, C = _check(X, y)
    evidence, _, _ = logme_evidence(X, np.eye(C)[y], max_iter, tol)
    return float((evidence / len(X)).mean())


def logme_evidence(
    X: np.ndarray, Y: np.ndarray, max_iter: int = 100, tol: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target column of ``Y`` (N, C): the log evidence ``log p(y | X, alpha, beta)`` of Bayesian linear
    regression at the prior precision ``alpha`` and noise precision ``beta`` that maximise it (MacKay's
    fixed-point updates), returned as ``(evidence, alpha, beta)``.

    One SVD of ``X`` serves every column and every iteration: in the basis of the left singular vectors the
    posterior mean's norm, the residual and the log-determinant are sums over singular values, so an iteration
    costs O(min(N, D) * C).
    """
    N, D = X.shape
    C = Y.shape[1]
    U, s, _ = np.linalg.svd(X, full_matrices=False)
    sigma = (s**2)[:, None]  # (k, 1) eigenvalues of X^T X
    k = len(s)
    proj2 = (U.T @ Y) ** 2  # (k, C) squared targets in the singular basis
    outside = np.maximum((Y**2).sum(0) - proj2.sum(0), 0.0)  # the part of y no weights can fit

    def terms(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, ...]:
        denom = alpha + beta * sigma  # (k, C)
        m2 = (beta**2 * sigma * proj2 / denom**2).sum(0)  # |posterior mean|^2
        res2 = (alpha**2 * proj2 / denom**2).sum(0) + outside  # |X m - y|^2
        return denom, m2, res2

    alpha, beta = np.ones(C), np.ones(C)
    for _ in range(max_iter):
        denom, m2, res2 = terms(alpha, beta)
        gamma = (beta * sigma / denom).sum(0)  # effective number of parameters
        new_alpha = gamma / np.maximum(m2, 1e-300)
        # with N <= D the targets can be fitted exactly and the evidence rises towards a finite limit as the
        # noise precision grows without bound: stop it at a noise variance of 1e-8 (of a 0/1 target)
        new_beta = np.minimum((N - gamma) / np.maximum(res2, 1e-300), BETA_MAX)
        done = np.all(np.abs(new_alpha - alpha) <= tol * alpha) and np.all(
            np.abs(new_beta - beta) <= tol * beta
        )
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom, m2, res2 = terms(alpha, beta)
    log_det = np.log(denom).sum(0) + (D - k) * np.log(alpha)  # log |alpha I + beta X^T X|
    evidence = (
        D / 2 * np.log(alpha)
        + N / 2 * np.log(beta)
        - N / 2 * math.log(2 * math.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - log_det / 2
    )
    return evidence, alpha, beta


def knn_loo(X: np.ndarray, y: np.ndarray, k: int = 5, chunk: int = 1024, metric: str = "accuracy") -> float:
    """Leave-one-out accuracy (or macro-F1) of a ``k``-nearest-neighbour majority vote under cosine
    similarity; a tie between classes goes to the one whose tied neighbours are more similar in total. Works in
    row chunks, so memory stays O(chunk * N)."""
    X, y, C = _check(X, y)
    if k < 1:
        raise ParameterError(f"k must be at least 1; got {k}.")
    N = len(X)
    k = min(k, N - 1)
    Z = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    pred = np.empty(N, dtype=np.int64)
    for start in range(0, N, chunk):
        rows = np.arange(start, min(start + chunk, N))
        S = Z[rows] @ Z.T
        S[np.arange(len(rows)), rows] = -np.inf  # leave the row itself out
        nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
        sims = np.take_along_axis(S, nn, 1)
        votes = np.zeros((len(rows), C))
        labels = y[nn]
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), labels.ravel()), 1.0 + sims.ravel() / (k + 1))
        pred[rows] = votes.argmax(1)
    return prediction_score(pred, y, metric)


def hscore(X: np.ndarray, y: np.ndarray, shrinkage: bool = True) -> float:
    """H-score ``tr(cov(f)^-1 cov(E[f|y]))``: without shrinkage at most ``C - 1``, reached when the class means
    explain all the feature variance. With ``shrinkage`` the feature covariance is the Ledoit-Wolf estimate,
    which keeps the inverse stable when N is small against D (the bound then no longer holds exactly)."""
    X, y, C = _check(X, y)
    F = X - X.mean(0)
    N, D = F.shape
    cov = F.T @ F / N
    if shrinkage:
        from sklearn.covariance import ledoit_wolf_shrinkage

        rho = float(ledoit_wolf_shrinkage(F, assume_centered=True))
        cov = (1 - rho) * cov + rho * np.trace(cov) / D * np.eye(D)
    means, counts = _class_means(F, y, C)
    between = (means * (counts / N)[:, None]).T @ means  # sum_c p_c mu_c mu_c^T
    solved = np.linalg.solve(cov, between) if shrinkage else np.linalg.pinv(cov) @ between
    return float(np.trace(solved))


def leep(source_proba: np.ndarray, y: np.ndarray) -> float:
    """LEEP from the source classifier's class probabilities ``(N, Z)`` on the target rows: the mean log
    probability of each row's label under "predict a source class, then map it to target labels by their
    empirical co-occurrence". It is at most 0; higher is better.

        >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> round(leep(theta, np.array([0, 0, 1])), 4)
        -0.2449
    """
    P, y, C = _check(source_proba, y)
    if (P < -1e-9).any() or not np.allclose(P.sum(1), 1.0, atol=1e-4):
        raise DataError(
            "LEEP needs the source model's probabilities: rows of non-negative numbers summing to 1."
        )
    N = len(P)
    joint = np.zeros((C, P.shape[1]))
    np.add.at(joint, y, P)
    joint /= N
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = (P * cond[y]).sum(1)
    return float(np.log(np.maximum(eep, 1e-300)).mean())


def nleep(
    X: np.ndarray, y: np.ndarray, components_per_class: int = 3, variance: float = 0.8, seed: int = 0
) -> float:
    """N-LEEP: LEEP with a diagonal Gaussian mixture (``components_per_class`` times the number of classes
    components, fitted on the PCA projection keeping ``variance`` of the variance) as the source classifier."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    X, y, C = _check(X, y)
    Z = PCA(n_components=variance, svd_solver="full", random_state=seed).fit_transform(X - X.mean(0))
    n_comp = max(2, min(components_per_class * C, len(X) // 2))
    gmm = GaussianMixture(n_comp, covariance_type="diag", reg_covar=1e-4, max_iter=200, random_state=seed)
    return leep(gmm.fit(Z).predict_proba(Z), y)


def probe_cv(
    X: np.ndarray, y: np.ndarray, folds: int = 3, C: float = 0.1, seed: int = 0, metric: str = "accuracy"
) -> float:
    """Stratified ``folds``-fold cross-validated accuracy (or macro-F1, of the pooled out-of-fold predictions)
    of logistic regression on standardised features (fewer folds when the rarest class has fewer rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    X, y, _ = _check(X, y)
    folds = int(min(folds, np.bincount(y)[np.bincount(y) > 0].min()))
    if folds < 2:
        raise DataError("probe_cv needs at least 2 rows of every class.")
    from ..runtime import one_blas_thread

    pred = np.empty(len(y), dtype=np.int64)
    with one_blas_thread():
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8
            clf = LogisticRegression(C=C, max_iter=1000).fit((X[tr] - mu) / sd, y[tr])
            pred[te] = clf.predict((X[te] - mu) / sd)
    return prediction_score(pred, y, metric)


RIDGE_PENALTIES = tuple(float(v) for v in np.logspace(-4, 2, 13))


def ridge_loo(
    X: np.ndarray, y: np.ndarray, penalties: tuple[float, ...] = RIDGE_PENALTIES, metric: str = "accuracy"
) -> float:
    """Leave-one-out accuracy (or macro-F1) of a ridge classifier (least squares to one-hot targets, with an unpenalised
    intercept, on standardised features), the best over ``penalties``; each penalty is relative to the mean
    eigenvalue of ``X^T X``, so the grid means the same for any feature scale and dimension.

    Exact, not approximated: for a penalised least-squares fit ``Y_hat = H Y`` the prediction for row i of the
    model fitted without row i is ``(Y_hat_i - h_ii Y_i) / (1 - h_ii)``, and with centred features
    ``H = 11^T/N + U diag(s^2 / (s^2 + lambda)) U^T`` from the SVD ``X = U S V^T``, taken from the eigenvectors
    of the smaller Gram matrix (``_left_singular``). One penalty costs O(N * min(N, D) * C). (The
    standardisation uses every row, as the feature cache does.)

    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> ridge_loo(np.eye(3)[y] + 0.3 * rng.normal(size=(300, 3)), y) > 0.9
    True
    """
    X, y, C = _check(X, y)
    N = len(X)
    if N < 3:
        raise DataError("ridge_loo needs at least 3 rows.")
    sd = X.std(0)
    Z = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
    U, s2, scale = _left_singular(Z)
    Y = np.eye(C)[y]
    mean_y = Y.mean(0)
    proj = U.T @ (Y - mean_y)  # (k, C)
    U2 = U**2
    best = 0.0
    for rel in penalties:
        shrink = s2 / (s2 + rel * scale)
        fitted = U @ (shrink[:, None] * proj) + mean_y
        h = np.minimum(U2 @ shrink + 1.0 / N, 1.0 - 1e-9)
        loo = (fitted - h[:, None] * Y) / (1.0 - h)[:, None]
        best = max(best, prediction_score(loo.argmax(1), y, metric))
    return best


def _left_singular(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``U`` and the squared singular values ``s^2`` of ``Z = U S V^T``, and the mean of all ``min(N, D)`` of
    them; from the eigendecomposition of the smaller of ``Z Z^T`` and ``Z^T Z`` (3 to 5 times faster than
    the SVD on one thread at a few hundred rows and a thousand dimensions). With more rows than dimensions
    ``U = Z V / s``, leaving out directions whose ``s^2`` is below 1e-12 of the largest: a ridge penalty of at
    least 1e-4 of the mean ``s^2`` gives them a weight below 1e-8 of the largest."""
    N, D = Z.shape
    s2, W = np.linalg.eigh(Z @ Z.T if N <= D else Z.T @ Z)  # W: U itself, or V
    s2 = np.maximum(s2, 0.0)
    scale = (float(s2.mean()) if len(s2) else 0.0) or 1.0
    if N <= D:
        return W, s2, scale
    keep = s2 > 1e-12 * (s2.max() if len(s2) else 0.0)
    return Z @ W[:, keep] / np.sqrt(s2[keep]), s2[keep], scale


def _sfda_proba(
    X: np.ndarray, y: np.ndarray, C: int, shrinkage: float | str
) -> tuple[np.ndarray, float, np.ndarray]:
    """Class probabilities of every row under a linear discriminant whose pooled within-class covariance is
    shrunk towards its mean variance, and the shrinkage used. ``shrinkage``: a number in [0, 1], ``"paper"``
    (``exp(-5 * largest eigenvalue)`` of that covariance, at least 1e-10, as SFDA sets it: features spread
    widely within their classes keep their covariance) or ``"ledoit_wolf"`` (the Ledoit-Wolf estimate from the
    residuals, which grows as the rows get fewer against the dimensions); and the class means."""
    N, D = X.shape
    means, counts = _class_means(X, y, C)
    R = X - means[y]
    within = R.T @ R / N  # sum_c p_c cov_c, each biased
    if shrinkage == "paper":
        v = np.ones(D) / math.sqrt(D)
        for _ in range(20):  # power iteration: the largest eigenvalue, which is all the rule needs
            w = within @ v
            v = w / max(float(np.linalg.norm(w)), 1e-300)
        shrinkage = max(math.exp(-5.0 * float(v @ within @ v)), 1e-10)
    elif shrinkage == "ledoit_wolf":
        from sklearn.covariance import ledoit_wolf_shrinkage

        shrinkage = float(ledoit_wolf_shrinkage(R, assume_centered=True))
    elif isinstance(shrinkage, str) or not 0.0 <= shrinkage <= 1.0:
        raise ParameterError(f"shrinkage takes a number in [0, 1], paper or ledoit_wolf; got {shrinkage!r}.")
    shrunk = (1.0 - shrinkage) * within
    shrunk.flat[:: D + 1] += shrinkage * float(np.trace(within)) / D + 1e-12
    coef = np.linalg.solve(shrunk, means.T).T  # (C, D): means @ shrunk^-1
    logits = X @ coef.T - 0.5 * (means * coef).sum(1) + np.log(counts / N)
    logits -= logits.max(1, keepdims=True)
    P = np.exp(logits)
    return P / P.sum(1, keepdims=True), float(shrinkage), means


def sfda(X: np.ndarray, y: np.ndarray, shrinkage: float | str = "paper") -> float:
    """SFDA (Shao et al., ECCV 2022): fit a shrunk linear discriminant (``_sfda_proba``), soften its
    probabilities by a second softmax, move each row towards the mean of the other classes' means by one minus
    its softened probability of its own class ("ConfMix": the rows the discriminant doubts are challenged
    most), fit again with the same shrinkage, and return the mean probability of each row's class (0 to 1;
    higher is better). In-sample, like LogME: no rows are held out.

    The paper's shrinkage (``"paper"``) depends on the features' scale and ignores how few the rows are: with
    fewer rows than dimensions and features of unit variance it is about 0, the discriminant separates the
    rows it was fitted on whatever they are, and every backbone scores 1. ``sfda_lw`` (``"ledoit_wolf"``)
    shrinks as much as the rows warrant.

    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 20)
    >>> apart, mixed = np.eye(3)[y] + 0.2 * rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
    >>> sfda(apart, y) > sfda(mixed, y)
    True
    """
    X, y, _ = _check(X, y)
    y = np.unique(y, return_inverse=True)[1].reshape(-1)  # the classes present, numbered 0..C-1
    C = int(y.max()) + 1
    P, used, means = _sfda_proba(X, y, C, shrinkage)
    soft = np.exp(P)
    soft /= soft.sum(1, keepdims=True)
    others = (means.sum(0) - means) / (C - 1)  # row c: the mean of the other classes' means
    own = soft[np.arange(len(y)), y][:, None]
    P = _sfda_proba(own * X + (1.0 - own) * others[y], y, C, used)[0]
    return float(P[np.arange(len(y)), y].mean())


def sfda_lw(X: np.ndarray, y: np.ndarray) -> float:
    """``sfda`` with the Ledoit-Wolf shrinkage in place of the paper's rule."""
    return sfda(X, y, shrinkage="ledoit_wolf")


FEATURE_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "logme": logme,
    "knn": knn_loo,
    "hscore": hscore,
    "nleep": nleep,
    "ridge_loo": ridge_loo,
    "probe_cv": probe_cv,
    "sfda": sfda,
    "sfda_lw": sfda_lw,
}
SCORE_HELP = {
    "logme": "log evidence per row of a linear model on the features (nats); predicts how well a linear head "
    "and light fine-tuning will do",
    "knn": "leave-one-out 5-NN accuracy (cosine); predicts how well classes already cluster",
    "hscore": "between-class share of the feature variance (up to C-1); predicts linear separability",
    "leep": "mean log-likelihood of the labels through the source classifier; needs a backbone with one",
    "nleep": "LEEP through a Gaussian mixture on the features; LEEP for any backbone",
    "ridge_loo": "exact leave-one-out accuracy of a ridge probe at its best penalty; a cross-validated probe "
    "at the cost of one eigendecomposition",
    "probe_cv": "3-fold cross-validated logistic-regression accuracy; the direct estimate, and the slowest",
    "sfda": "a shrunk linear discriminant's mean probability of the true class after the doubtful rows are "
    "pulled towards the other classes (self-challenging Fisher discriminant analysis)",
    "sfda_lw": "sfda with Ledoit-Wolf shrinkage, which holds up with fewer rows than feature dimensions",
}
