"""Independent CPU-bound fits (one per cross-validation fold) on the cores this process may use.

Choosing C and the word weight of a probe with words (``lexical="tfidf"``), and C of the TF-IDF baseline, fits
one logistic regression path per fold; scikit-learn's L-BFGS runs on one core, so on a 2-core machine the folds
of 1,280 documents ran one after another with a core idle. ``fold_map`` runs them in worker processes instead.

How many workers: ``WARMSTART_FIT_WORKERS`` if set (1: in this process, one after another); else torch's thread
count when torch is loaded (so ``torch.set_num_threads(1)``, as the benchmarks' ``--threads 1`` does, keeps a
run on one core), else the cores this process may run on; never more than the folds. Small jobs stay in this
process, since starting the workers costs a second or two: ``work`` is the training texts' total characters
(the fits' cost grows with them), and under ``MIN_WORK`` (200,000: 160 documents of 20 Newsgroups, whose fits
take seconds each) the folds run here.

Example:
    >>> fold_map(abs, [-1, 2, -3], work=1_000)  # little work: in this process
    [1, 2, 3]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import ParameterError

WORKERS_ENV = "WARMSTART_FIT_WORKERS"
MIN_WORK = 200_000


def one_blas_thread() -> Any:
    """numpy's and scipy's BLAS on one thread inside the block, for logistic regression's many small solves.

    scikit-learn's L-BFGS spends its time in scipy's small vector updates, where a second BLAS thread only adds
    synchronisation: on 2 cores, TF-IDF + LR on 20 Newsgroups (16 per class, C by 5-fold CV) took 35 CPU s with
    two BLAS threads and 11 with one, with the same accuracy (a shared CPU; docs/techniques.md). torch's own
    threads (encoding, training) are not touched."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def fit_workers() -> int:
    """The most worker processes ``fold_map`` may use (see the module docstring)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ParameterError(f"{WORKERS_ENV}={value!r}: give a whole number of workers, 1 or more.")
        return int(value)
    if "torch" in sys.modules:
        return max(1, sys.modules["torch"].get_num_threads())
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fold_map(fn: Callable[[Any], Any], jobs: Sequence[Any], work: int) -> list[Any]:
    """``[fn(job) for job in jobs]``, in worker processes when ``work >= MIN_WORK`` and there is more than one
    worker; ``fn`` must be a module-level function of a module without torch (workers import it by name)."""
    workers = min(len(jobs), fit_workers())
    if workers < 2 or work < MIN_WORK:
        return [fn(job) for job in jobs]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers, backend="loky")(delayed(fn)(job) for job in jobs)


_THREAD_POOLS: dict[int, ThreadPoolExecutor] = {}


def thread_map(fn: Callable[[Any], Any], jobs: Sequence[Any], threads: int) -> list[Any]:
    """``[fn(job) for job in jobs]`` in up to ``threads`` threads of a pool kept per size: for work that leaves
    the interpreter's lock while it runs (numpy's array operations, scipy's sparse routines), where threads
    start in microseconds and share memory, unlike ``fold_map``'s processes."""
    threads = min(threads, len(jobs))
    if threads < 2:
        return [fn(job) for job in jobs]
    if threads not in _THREAD_POOLS:
        _THREAD_POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="warmstart")
    return list(_THREAD_POOLS[threads].map(fn, jobs))


def even_runs(ends: Any, threads: int, least: int) -> list[tuple[int, int]]:
    """Items ``[a, b)`` cut into up to ``threads`` runs of about equal size for ``thread_map`` (``ends``: the
    running total of the items' sizes, ``numpy.cumsum``), each run at least ``least`` in size: one run for a
    small batch.

    >>> even_runs([1, 2, 3], 2, 100), even_runs([100, 200, 300, 400], 2, 100)
    ([(0, 3)], [(0, 2), (2, 4)])
    """
    import numpy as np

    ends = np.asarray(ends)
    total = int(ends[-1]) if len(ends) else 0
    k = int(min(threads, len(ends), total // least))
    if k <= 1:
        return [(0, len(ends))]
    cuts = np.searchsorted(ends, total * np.arange(1, k) / k, side="left").tolist()
    bounds = [0, *[c + 1 for c in cuts], len(ends)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def text_work(texts: Any) -> int:
    """``fold_map``'s ``work`` for fits on ``texts``: their total characters."""
    return sum(len(str(t)) for t in texts)
