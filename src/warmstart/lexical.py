"""Word features beside a text backbone's: TF-IDF fitted on the training texts, stored without pickles.

A pretrained sentence encoder compresses a text into a few hundred numbers and reads at most ``max_length``
tokens of it; the words themselves, and the rest of a long text, are lost. On topic data (20 Newsgroups) and
question types (TREC) a probe on the embeddings plus TF-IDF of the words scored above both alone
(docs/techniques.md). This module holds the word half: the vocabulary and inverse document frequencies of
scikit-learn's ``TfidfVectorizer`` (lower-cased words of two or more characters, sublinear term frequency,
rows scaled to unit length), kept as a word list and an array so an artifact can save them as JSON and a tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .errors import DataError
from .parallel import one_blas_thread

# the weight of the standardised embedding against the unit-length TF-IDF row, chosen with C by cross-validation
# on the training rows: a standardised 384-feature embedding has length ~20, a TF-IDF row 1
WEIGHT_GRID = (0.03, 0.05, 0.1, 0.2)
# TF-IDF rows are unit length: they need far weaker regularisation than embeddings (the TF-IDF baseline's grid too)
C_GRID = (1.0, 10.0, 100.0)


class Tfidf:
    """TF-IDF of words with a fixed vocabulary. Example:

    >>> t = Tfidf.fit(["the cat sat", "the dog ran", "a cat ran"])
    >>> t.vocabulary
    ['cat', 'dog', 'ran', 'sat', 'the']
    >>> X = t.transform(["cat cat dog", "unknown words only"])
    >>> X.shape, round(float(np.sqrt(X[0].multiply(X[0]).sum())), 6), X[1].nnz
    ((2, 5), 1.0, 0)
    >>> Tfidf(t.vocabulary, t.idf).transform(["cat cat dog"]).toarray().round(6).tolist() == X[:1].toarray().round(6).tolist()
    True
    """

    def __init__(self, vocabulary: list[str], idf: np.ndarray) -> None:
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        if len(self.vocabulary) != len(self.idf):
            raise ValueError(f"{len(self.vocabulary)} words but {len(self.idf)} idf values")
        self._vec = _vectorizer(self.vocabulary)
        self._vec.fit(["x"])  # builds the analyzer around the fixed vocabulary; idf_ is set next
        self._vec.idf_ = self.idf

    @classmethod
    def fit(cls, texts: list[str]) -> Tfidf:
        try:
            vec = _vectorizer(None).fit(texts)
        except ValueError as e:  # scikit-learn: "empty vocabulary"
            raise DataError(
                f"lexical='tfidf': the {len(texts)} training texts hold no word of two or more letters or digits "
                f"({e}); leave lexical at 'none' for such data."
            ) from e
        words = vec.get_feature_names_out().tolist()
        return cls(words, vec.idf_)

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return self._vec.transform(texts).tocsr()

    def __len__(self) -> int:
        return len(self.vocabulary)


def ids_as_words(rows: list[list[int]]) -> list[str]:
    """Token ids written as words (``[[2003, 1996]]`` -> ``["p2003 p1996"]``), so that ``Tfidf`` counts the ids
    (``lexical="pieces"``)."""
    return [" ".join(f"p{i}" for i in row) for row in rows]


def _vectorizer(vocabulary: list[str] | None) -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, vocabulary=vocabulary, dtype=np.float64)


class Design:
    """TF-IDF and the embedding's standardisation, fitted on some training rows; ``features`` gives the joint
    features of any rows: TF-IDF of their words, then their standardised embedding times ``weight``."""

    def __init__(self, words: Tfidf, mean: np.ndarray, scale: np.ndarray) -> None:
        self.words, self.mean, self.scale = words, mean, scale

    @classmethod
    def fit(cls, texts: Any, X: np.ndarray) -> Design:
        mean, scale = X.mean(0), X.std(0)
        scale[scale < 1e-12] = 1.0
        return cls(Tfidf.fit(list(texts)), mean, scale)

    def features(self, texts: Any, X: np.ndarray, weight: float) -> sparse.csr_matrix:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale * weight
        return sparse.hstack([self.words.transform(list(texts)), sparse.csr_matrix(Z)]).tocsr()


def _c_path(
    train_f: Any, y_train: np.ndarray, held_f: Any, y_held: np.ndarray, cs: Any, max_iter: int
) -> list:
    """Held-out accuracy at each C in ascending order, each fit warm-started from the previous (smaller) C's
    solution: the same optimum, about half the iterations."""
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    accs = []
    for c in sorted(cs):
        clf.set_params(C=c).fit(train_f, y_train)
        accs.append(float((clf.predict(held_f) == y_held).mean()))
    return accs


def score_fold(job: tuple) -> tuple[Design, dict[str, float]]:
    """One fold of the probe-with-words grid: the fold's ``Design`` (TF-IDF and standardisation fitted on its
    training rows) and the held-out accuracy at every ``"weight,C"``. ``job``: ``(texts, X, y, train_rows,
    held_rows, weights, Cs, max_iter)``; a module-level function of a module without torch, so that
    ``parallel.fold_map`` can run the folds in worker processes that start quickly."""
    texts, X, y, tr, te, weights, cs, max_iter = job
    d = Design.fit(texts[tr], X[tr])
    accs: dict[str, float] = {}
    with one_blas_thread():
        for w in weights:
            train_f, held_f = d.features(texts[tr], X[tr], w), d.features(texts[te], X[te], w)
            for c, acc in zip(sorted(cs), _c_path(train_f, y[tr], held_f, y[te], cs, max_iter), strict=True):
                accs[f"{w},{c}"] = acc
    return d, accs


def fold_logits(job: tuple) -> Any:
    """The held-out rows' decision values of one fold fitted at one weight and C, or None when the fold's
    training rows miss a class. ``job``: ``(design, texts, X, y, train_rows, held_rows, weight, C, max_iter)``."""
    d, texts, X, y, tr, te, w, c, max_iter = job
    with one_blas_thread():
        clf = LogisticRegression(C=c, max_iter=max_iter).fit(d.features(texts[tr], X[tr], w), y[tr])
        if len(clf.classes_) != len(np.unique(y)):
            return None
        return clf.decision_function(d.features(texts[te], X[te], w))


def tfidf_fold(job: tuple) -> list[float]:
    """One fold of the TF-IDF + logistic regression baseline's choice of C: the held-out accuracy at each C in
    ascending order, each fitted from zero as scikit-learn's ``GridSearchCV`` does (a warm-started path stops
    at a different point at C=100 within L-BFGS's tolerance and can choose another C). ``job``: ``(texts, y,
    train_rows, held_rows, Cs, max_iter)``."""
    texts, y, tr, te, cs, max_iter = job
    words = Tfidf.fit(list(texts[tr]))
    train_f, held_f = words.transform(list(texts[tr])), words.transform(list(texts[te]))
    with one_blas_thread():
        return [
            float(
                (
                    LogisticRegression(C=c, max_iter=max_iter).fit(train_f, y[tr]).predict(held_f) == y[te]
                ).mean()
            )
            for c in sorted(cs)
        ]
