"""Finding a model's side files (sentence-transformers modules, image processor settings) in a local folder or
on the Hugging Face hub (through huggingface_hub's cache, so offline runs see what was downloaded before)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def model_file(src: str, filename: str) -> Path | None:
    """``src/filename`` for a folder; for a hub id the cached or downloaded file; None where there is none."""
    folder = Path(src).expanduser()
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(src, filename))
    except Exception:  # not on the hub, no such file, offline without a cached copy
        return None


def model_json(src: str, filename: str) -> Any | None:
    path = model_file(src, filename)
    return json.loads(path.read_text()) if path is not None else None


def strip_prefix(spec: str) -> str:
    """``hf:org/name`` names a hub id (or folder) explicitly; the prefix is not part of it."""
    return spec[3:] if spec.startswith("hf:") else spec
