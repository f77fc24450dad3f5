"""Predictions as a table: what ``warmstart predict`` writes (CSV or JSON) for a fitted model and its inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError


def prediction_table(
    model: Any, data: Any, *, tta: bool = False, label_sep: str = "|"
) -> tuple[Any, str | None]:
    """One row per input: its row (data row number or image path), the prediction (label sets joined by
    ``label_sep``), the top probability and one ``p_CLASS`` column per class; and, when ``data`` has labels the
    model knows, a line saying how many it got right."""
    import pandas as pd

    from .data.labels import label_set

    proba = model.predict_proba(data, tta=tta)
    pred = model.labels_from_proba(proba)
    shown = [label_sep.join(p) if isinstance(p, tuple) else p for p in pred]
    df = pd.DataFrame({"row": data.rows, "prediction": shown, "confidence": proba.max(1).round(6)})
    for j, c in enumerate(model.classes_):
        df[f"p_{c}"] = proba[:, j].round(6)
    note = None
    if data.labels is not None and set(data.classes) <= set(model.classes_):
        acc = float(np.mean([label_set(p) == label_set(t) for p, t in zip(pred, data.labels, strict=True)]))
        kind = "exact-match accuracy" if data.multilabel else "accuracy"
        note = f"{kind} against the file's labels: {acc:.4f} ({len(df)} rows)"
    return df, note


def check_output(out: Path, artifact: Path, inputs: Path) -> None:
    """Predictions never overwrite their own input, anything inside the artifact, or a folder."""
    target = out.resolve()
    if target == inputs.resolve() or inputs.resolve() in target.parents:
        raise DataError(
            f"--output {out}: that is the input being predicted on; write the predictions elsewhere."
        )
    if artifact.resolve() == target or artifact.resolve() in target.parents:
        raise DataError(
            f"--output {out}: inside the artifact {artifact}, which must stay as saved; write elsewhere."
        )
    if out.is_dir():
        raise DataError(f"--output {out}: is a folder; give a file name ending in .csv or .json.")
    from .artifact import check_writable

    check_writable(out)
