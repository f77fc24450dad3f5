"""Choosing before spending: transferability scores and ranking of backbones from cached features."""

from .rank import ALL_SCORES, DEFAULT_SCORES, Candidate, Ranking, rank_backbones, score_features
from .scores import (
    FEATURE_SCORES,
    SCORE_HELP,
    hscore,
    knn_loo,
    leep,
    logme,
    logme_evidence,
    nleep,
    probe_cv,
    ridge_loo,
)

__all__ = [
    "ALL_SCORES",
    "DEFAULT_SCORES",
    "Candidate",
    "Ranking",
    "rank_backbones",
    "score_features",
    "FEATURE_SCORES",
    "SCORE_HELP",
    "hscore",
    "knn_loo",
    "leep",
    "logme",
    "logme_evidence",
    "nleep",
    "probe_cv",
    "ridge_loo",
]
