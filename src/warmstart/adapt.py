"""Domain-adaptive pretraining: a backbone tuned on unlabelled rows of the user's domain, before any technique.

``warmstart adapt --backbone NAME --unlabeled ROWS --output DIR`` writes an ordinary backbone folder, which every
command then takes as ``--backbone DIR``: fit, study, rank, recommend and the feature cache see a backbone
with its own weights and so its own fingerprint, and reuse it like any other. Text encoders are tuned by
unsupervised SimCSE (each row against itself under two dropout masks, the other rows of the batch as
negatives; ``Contrastive.tune_unsupervised``); image backbones with BatchNorm get their normalisation
statistics re-estimated on the rows (AdaBN, Li et al. 2016), which needs no training at all.

``adapt.json`` in the folder records the base backbone, the rows and every setting; rerunning the same command
finds it and does nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_json, staged_folder
from .data import Dataset
from .errors import ParameterError


def adapt_backbone(
    backbone: str | Any,
    unlabeled: Dataset,
    output: str | Path,
    *,
    epochs: int = 1,
    lr: float = 3e-5,
    batch_size: int = 32,
    temperature: float = 0.05,
    max_rows: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Adapt ``backbone`` (a name, folder or ``Backbone``) to the domain of ``unlabeled`` (at most ``max_rows`` of them, sampled with ``seed``)
    and save it to ``output``; returns what ``adapt.json`` records.

    Example:
        >>> import tempfile
        >>> from warmstart.backbones import get_backbone
        >>> from warmstart.data import Dataset
        >>> rows = Dataset(["the bass line was too loud", "great riff", "the drummer was late"] * 4, None, "text")
        >>> out = tempfile.mkdtemp() + "/adapted"
        >>> rec = adapt_backbone("paraphrase-MiniLM-L3-v2", rows, out, batch_size=8, progress=False)
        >>> rec["method"], rec["rows"], rec["steps"]
        ('simcse', 12, 3)
        >>> get_backbone(out).fingerprint() != get_backbone("paraphrase-MiniLM-L3-v2").fingerprint()
        True
    """
    from .backbones import Backbone, get_backbone

    base = backbone if isinstance(backbone, Backbone) else get_backbone(backbone)
    out = Path(output)
    rows = unlabeled if len(unlabeled) <= max_rows else _sample(unlabeled, max_rows, seed)
    recipe = {
        "base": base.fingerprint(),
        "rows_fingerprint": rows.fingerprint(),
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "temperature": temperature,
        "max_rows": max_rows,
        "seed": seed,
        "precision": precision,
    }
    done = out / "adapt.json"
    if done.is_file() and json.loads(done.read_text()).get("recipe") == recipe and not overwrite:
        return {**json.loads(done.read_text()), "reused": True}
    if out.exists() and any(out.iterdir()) and not done.is_file() and not overwrite:
        raise ParameterError(
            f"{out}: exists and is not an adapted backbone; choose another --output or --overwrite."
        )
    if rows.modality != base.modality:
        raise ParameterError(
            f"{rows.source}: {rows.modality} rows cannot adapt the {base.modality} backbone {backbone!r}."
        )
    start = time.perf_counter()
    if base.modality == "text":
        from .techniques.contrastive import Contrastive

        est = Contrastive(
            base,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            device=device,
            precision=precision,
            progress=progress,
            min_steps=1,
            max_steps=1_000_000,
        )
        adapted, method, steps = est.tune_unsupervised(rows, temperature=temperature), "simcse", est.steps_
    else:
        adapted, method, steps = _adabn(base, rows, batch_size, device, precision, progress), "adabn", 0
    record = {
        "method": method,
        "base": base.reference(),
        "rows": len(rows),
        "unlabeled_rows": len(unlabeled),
        "unlabeled_source": unlabeled.source,
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 2),
        "recipe": recipe,
    }
    _save(adapted, out, record)
    return record


def _sample(data: Dataset, n: int, seed: int) -> Dataset:
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))


def _adabn(base: Any, rows: Dataset, batch_size: int, device: str, precision: str, progress: bool) -> Any:
    """A copy of ``base`` whose BatchNorm statistics are averages over ``rows``; refused without BatchNorm."""
    from .runtime import resolve
    from .techniques.domain import adabn_copy

    return adabn_copy(base, rows, batch_size * 4, resolve(device, precision), progress=progress)


def _save(adapted: Any, out: Path, record: dict) -> None:
    """The backbone folder and ``adapt.json``, written beside ``out`` and renamed into place."""
    import torch

    adapted.to(torch.device("cpu"))
    with staged_folder(out) as tmp:
        adapted.save(tmp)
        atomic_write_json(tmp / "adapt.json", record)
