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
from .ragged import flatten

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


class PieceTfidf:
    """TF-IDF of token ids (``lexical="pieces"``), counted from the ids themselves: the same numbers as ``Tfidf``
    on the ids written as words (``ids_as_words``: smoothed idf, sublinear term frequency, rows of unit length),
    without writing and reading strings. Rows come as a sparse matrix of counts (``count_ids``), whose columns are
    token ids; the fitted columns are the ids seen in training (``ids``), an id never seen counts nothing.

    >>> t = PieceTfidf.fit(count_ids([[7, 7, 3], [3, 9]]))
    >>> t.ids.tolist(), t.vocabulary
    ([3, 7, 9], ['p3', 'p7', 'p9'])
    >>> X = t.transform(count_ids([[9, 9, 9, 12], [12]]))  # 12 was never seen
    >>> X.shape, round(float(X[0].toarray().sum()), 6), X[1].nnz
    ((2, 3), 1.0, 0)
    """

    def __init__(self, ids: Any, idf: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.idf = np.asarray(idf, dtype=np.float64)
        if self.ids.ndim != 1 or len(self.ids) != len(self.idf):
            raise ValueError(f"{self.ids.shape} ids but {self.idf.shape} idf values")
        if len(self.ids) and (self.ids.min() < 0 or len(np.unique(self.ids)) != len(self.ids)):
            raise ValueError("token ids must be distinct and not negative")
        # column of each token id; -1 for ids not in the vocabulary
        self.column = np.full(int(self.ids.max()) + 1 if len(self.ids) else 0, -1, dtype=np.int64)
        self.column[self.ids] = np.arange(len(self.ids))

    @classmethod
    def from_vocabulary(cls, vocabulary: list[str], idf: np.ndarray) -> PieceTfidf:
        """From the saved word list (``p2003``, ... in the saved columns' order, as ``vocabulary`` gives it)."""
        bad = [w for w in vocabulary if not (isinstance(w, str) and w[:1] == "p" and w[1:].isdigit())]
        if bad:
            raise ValueError(f"a token-id vocabulary holds words like 'p2003'; got {bad[:3]}")
        return cls([int(w[1:]) for w in vocabulary], idf)

    @classmethod
    def fit(cls, counts: sparse.spmatrix) -> PieceTfidf:
        counts = sparse.csr_matrix(counts)
        df = np.bincount(counts.indices[counts.data > 0], minlength=counts.shape[1])
        ids = np.flatnonzero(df)
        if not len(ids):
            raise DataError(
                f"lexical='pieces': the {counts.shape[0]} training texts have no tokens; leave lexical at "
                f"'none' for such data."
            )
        n = counts.shape[0]
        return cls(ids, np.log((1.0 + n) / (1.0 + df[ids])) + 1.0)  # scikit-learn's smoothed idf

    def transform(self, counts: sparse.spmatrix) -> sparse.csr_matrix:
        counts = sparse.csr_matrix(counts)
        counts.sum_duplicates()  # one entry per row and id (none to do for count_flat's), so one per column
        ids = counts.indices
        cols = np.full(len(ids), -1, dtype=np.int64)
        known = ids < len(self.column)
        cols[known] = self.column[ids[known]]
        keep = (cols >= 0) & (counts.data > 0)
        values = (1.0 + np.log(counts.data[keep])) * self.idf[cols[keep]]
        # the same rows' entries, fewer of them: each row's start moves back by the entries dropped before it
        indptr = np.concatenate([[0], np.cumsum(keep)])[counts.indptr]
        sizes = np.diff(indptr)
        norms = np.sqrt(np.bincount(np.repeat(np.arange(len(sizes)), sizes), values**2, minlength=len(sizes)))
        values /= np.repeat(np.where(norms > 0, norms, 1.0), sizes)  # rows of unit length
        return sparse.csr_matrix((values, cols[keep], indptr), shape=(counts.shape[0], len(self.ids)))

    def scores(self, counts: sparse.spmatrix, coef: Any) -> np.ndarray:
        """``transform(counts) @ coef.T`` (``coef``: a torch tensor, a row per class and a column per fitted id)
        without the TF-IDF matrix, in fp32: each row's sum over its ids of (1 + log count) times the id's idf ×
        coef, divided by the row's norm, the square root of its sum of ((1 + log count) × idf)². Both sums read
        a table with a row per token id (``_score_table``) in one ``embedding_bag`` each, over the distinct ids
        a row holds: a quarter of the time of the matrix and its product on BBC news."""
        import torch

        counts = sparse.csr_matrix(counts)
        counts.sum_duplicates()
        table, squares = self._score_table(coef)
        # an id the fit never saw reads the zero row at the end
        ids = torch.from_numpy(np.minimum(counts.indices, len(table) - 1).astype(np.int64))
        offsets = torch.from_numpy(counts.indptr[:-1].astype(np.int64))
        data = counts.data
        tf = np.where(data > 0, 1.0 + np.log(np.where(data > 0, data, 1.0)), 0.0).astype(np.float32)
        bag = torch.nn.functional.embedding_bag
        with torch.inference_mode():
            summed = bag(ids, table, offsets, mode="sum", per_sample_weights=torch.from_numpy(tf))
            norms = bag(ids, squares, offsets, mode="sum", per_sample_weights=torch.from_numpy(tf * tf))
            norms = norms.sqrt()
            return (summed / torch.where(norms > 0, norms, 1.0)).double().numpy()

    def _score_table(self, coef: Any) -> tuple[Any, Any]:
        """Per token id (up to the largest fitted one, then a zero row for every other id): idf × ``coef``'s
        column, and idf², in fp32; made once per ``coef`` (the same tensor, unchanged)."""
        import torch

        from .runtime import tensor_version

        key = (id(coef), coef.data_ptr(), tensor_version(coef), tuple(coef.shape))
        made = getattr(self, "_scored", None)
        if made is None or made[0] != key:
            known = np.flatnonzero(self.column >= 0)
            idf = np.zeros(len(self.column) + 1)
            idf[known] = self.idf[self.column[known]]
            table = np.zeros((len(idf), coef.shape[0]))
            table[known] = coef.detach().cpu().double().numpy().T[self.column[known]] * idf[known, None]
            made = self._scored = (
                key,
                (torch.from_numpy(table).float(), torch.from_numpy(idf * idf).float()[:, None].contiguous()),
            )
        return made[1]

    @property
    def vocabulary(self) -> list[str]:
        return [f"p{i}" for i in self.ids.tolist()]

    def __len__(self) -> int:
        return len(self.ids)


def count_ids(rows: list[list[int]]) -> sparse.csr_matrix:
    """Each row's count of every token id, as a sparse matrix with a column per id (up to the largest present)."""
    return count_flat(*flatten(rows))


def count_flat(flat: np.ndarray, lengths: np.ndarray) -> sparse.csr_matrix:
    """``count_ids`` of rows given as all their ids end to end (``flat``) and each row's length: a matrix in
    canonical form (each row's ids sorted, one entry each).

    Rows of similar length are laid out as a padded grid and each row sorted on its own, which numpy does fast
    for small integers (a 16-bit grid where every id fits); equal neighbours are then one id's count. Rows of very
    unequal length (where padding would more than quadruple the work) are summed by scipy instead."""
    flat = np.asarray(flat)
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(flat) and flat.min() < 0:
        raise ValueError(f"token ids cannot be negative; got {int(flat.min())}")
    width = int(flat.max()) + 1 if len(flat) else 0
    n_rows, longest = len(lengths), int(lengths.max()) if len(lengths) else 0
    if not len(flat) or n_rows * longest > 4 * len(flat) + 4096:
        which = np.repeat(np.arange(n_rows), lengths)
        counts = sparse.csr_matrix((np.ones(len(flat)), (which, flat)), shape=(n_rows, width))
        counts.sum_duplicates()
        return counts
    dtype = np.uint16 if width < np.iinfo(np.uint16).max else np.uint32 if width < 2**32 - 1 else np.uint64
    empty = np.iinfo(dtype).max  # a padding cell: above every id
    grid = np.full((n_rows, longest), empty, dtype=dtype)
    grid[np.arange(longest) < lengths[:, None]] = flat
    grid.sort(axis=1)
    cells = grid.ravel()
    first = np.empty(len(cells), dtype=bool)  # the first cell of each run of equal ids within a row
    first[0] = True
    np.not_equal(cells[1:], cells[:-1], out=first[1:])
    first[::longest] = True
    at = np.flatnonzero(first)
    runs = np.diff(at, append=len(cells))
    real = cells[at] != empty
    at, runs = at[real], runs[real]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(at // longest, minlength=n_rows), out=indptr[1:])
    counts = sparse.csr_matrix(
        (runs.astype(np.float64), cells[at].astype(np.int64), indptr), shape=(n_rows, width)
    )
    counts.has_canonical_format = True
    return counts


def ids_as_words(rows: list[list[int]]) -> list[str]:
    """Token ids written as words (``[[2003, 1996]]`` -> ``["p2003 p1996"]``), so that ``Tfidf`` counts the ids
    (``lexical="pieces"``)."""
    return [" ".join(f"p{i}" for i in row) for row in rows]


def _vectorizer(vocabulary: list[str] | None) -> TfidfVectorizer:
    return TfidfVectorizer(sublinear_tf=True, vocabulary=vocabulary, dtype=np.float64)


class Design:
    """TF-IDF (``Tfidf`` or ``PieceTfidf``) and the embedding's standardisation, fitted on some training rows; ``features`` gives the joint
    features of any rows: TF-IDF of their words, then their standardised embedding times ``weight``."""

    def __init__(self, words: Tfidf | PieceTfidf, mean: np.ndarray, scale: np.ndarray) -> None:
        self.words, self.mean, self.scale = words, mean, scale

    @classmethod
    def fit(cls, texts: Any, X: np.ndarray) -> Design:
        """``texts``: strings (TF-IDF of their words), or a sparse matrix of token-id counts (``count_ids``:
        TF-IDF of the ids)."""
        mean, scale = X.mean(0), X.std(0)
        scale[scale < 1e-12] = 1.0
        words = PieceTfidf.fit(texts) if sparse.issparse(texts) else Tfidf.fit(list(texts))
        return cls(words, mean, scale)

    def features(self, texts: Any, X: np.ndarray, weight: float) -> sparse.csr_matrix:
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale * weight
        rows = texts if sparse.issparse(texts) else list(texts)
        return sparse.hstack([self.words.transform(rows), sparse.csr_matrix(Z)]).tocsr()


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
