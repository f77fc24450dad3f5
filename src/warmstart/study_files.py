"""A study folder's saved cells, read by the study (to resume and summarise) and by the report (to rebuild it from
the files alone); its own module so that neither imports the other."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import DataError


def load_cells(folder: str | os.PathLike) -> list[dict]:
    """Every finished cell of the study in ``folder`` (``cells/*.json``), in file-name order."""
    cells = []
    for p in sorted((Path(folder) / "cells").glob("*.json")):
        try:
            cells.append(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{p}: not valid JSON ({e}); delete it and rerun the study to recompute it."
            ) from e
    return cells
