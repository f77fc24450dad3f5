"""Finding a model's side files (sentence-transformers modules, image processor settings) in a local folder or
on the Hugging Face hub (through huggingface_hub's cache, so offline runs see what was downloaded before)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# endpoint -> why it cannot be reached (None: it can); probed once per process
_UNREACHABLE: dict[str, str | None] = {}


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """None when the hub's endpoint accepts a connection within ``timeout`` seconds, else the reason. One quick
    probe per process, instead of the libraries' retries (about 100 s for an id on a machine without network)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    if endpoint not in _UNREACHABLE:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _UNREACHABLE[endpoint] = None
        except OSError as e:
            _UNREACHABLE[endpoint] = f"{url.hostname} cannot be reached ({e.strerror or e})"
    return _UNREACHABLE[endpoint]


def prepare_hub_id(src: str) -> None:
    """Before loading ``src``: nothing for a folder or a reachable hub. Without the hub, a model already in the
    local hub cache is used from there (offline mode, so no request is retried); one that is not is refused at
    once, saying what to do."""
    if Path(src).expanduser().exists():
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from ..errors import BackboneError

    try:
        validate_repo_id(src)
    except HFValidationError as e:
        raise BackboneError(
            f"{src!r}: no such folder, and not a hub id ({e}). Check the path, or name a hub model as org/name."
        ) from e
    why = hub_unreachable()
    if why is None:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(src, "config.json"), str):
        raise BackboneError(
            f"hub id {src!r}: not a local folder, and not in the local hub cache ({constants.HF_HUB_CACHE}) while the "
            f"hub cannot be used ({why}). Download the model on a machine with network access and pass its "
            f"folder, or copy that machine's hub cache here."
        )
    constants.HF_HUB_OFFLINE = True  # the cached copy, with no request retried
    os.environ["HF_HUB_OFFLINE"] = "1"  # and the same in worker processes


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
