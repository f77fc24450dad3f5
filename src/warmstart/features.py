"""FeatureCache: embeddings computed once per (backbone weights, data, preprocessing, precision), kept on disk.

An entry is one ``.npy`` file named by the hash of everything that could change the features, so a changed
dataset or backbone can never reuse a stale entry. Entries are written to a temporary file and renamed into
place: a crash mid-write leaves no entry (only a stray ``.tmp`` that is ignored). Reads are memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ._io import atomic_open, atomic_write_json, warmstart_home
from .backbones.base import Backbone
from .data import Dataset

FORMAT_VERSION = 1


class FeatureCache:
    """On-disk cache of backbone features.

    Example:
        >>> import tempfile
        >>> from warmstart.backbones import get_backbone
        >>> from warmstart.data import Dataset
        >>> cache = FeatureCache(tempfile.mkdtemp())
        >>> backbone, data = get_backbone("paraphrase-MiniLM-L3-v2"), Dataset(["hi", "hello"], None, "text")
        >>> X = cache.get(backbone, data, progress=False)  # computes and stores
        >>> Y = cache.get(backbone, data, progress=False)  # read from disk
        >>> X.shape, bool((X == Y).all()), cache.misses, cache.hits
        ((2, 384), True, 1, 1)
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else warmstart_home() / "features"
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def key(self, backbone: Backbone, data: Dataset, precision: str = "fp32") -> str:
        """Named by the weights, the data, the preprocessing and how the features were computed: precision (and
        in bf16/fp16 whether by autocast or by a low-precision copy) and, off the CPU, the device type, since
        a GPU's kernels give slightly different features; and the backbone's ``feature_kind`` where it has one."""
        from .runtime import resolve_precision

        precision = resolve_precision(precision, backbone.device)
        how = precision
        kind = backbone.low_precision_kind(precision, len(data)) if precision != "fp32" else "autocast"
        if kind != "autocast":
            how = f"{precision}-{kind}"
        if getattr(backbone, "feature_kind", ""):
            how = f"{how}+{backbone.feature_kind}"
        if backbone.device.type != "cpu":
            how = f"{how}@{backbone.device.type}"
        h = hashlib.blake2b(digest_size=20)
        parts = [
            f"v{FORMAT_VERSION}",
            backbone.fingerprint(),
            data.fingerprint(),
            json.dumps(backbone.preprocess_config(), sort_keys=True),
            how,
        ]
        h.update("\x1f".join(parts).encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(
        self,
        backbone: Backbone,
        data: Dataset,
        *,
        precision: str = "fp32",
        batch_size: int | None = None,
        progress: bool = True,
        store: bool = True,
    ) -> np.ndarray:
        """Features for ``data`` from ``backbone``: from disk when present, else computed and stored (with
        ``store=False``: computed and not written, for inputs that are not worth keeping, such as each request
        a server answers).

        A ``data`` whose rows are rows of other data sets says so in a ``feature_parts`` attribute, a list of
        ``(dataset, row indices)`` in row order (self-training's labelled plus pseudo-labelled rows): its
        features are those of the parts, each from its own entry, so rows already encoded are not encoded
        again."""
        if data.modality != backbone.modality:
            from .errors import DataError

            raise DataError(
                f"{data.source}: {data.modality} data cannot go through the {backbone.modality} "
                f"backbone {backbone.name!r}; pick {'an' if data.modality == 'image' else 'a'} {data.modality} backbone "
                f"(`warmstart backbones`)."
            )
        opts = dict(precision=precision, batch_size=batch_size, progress=progress)
        parts = getattr(data, "feature_parts", None)
        if parts:
            feats = np.concatenate(
                [
                    np.asarray(self.get(backbone, d, **opts))[np.asarray(i)]
                    if self.enabled
                    else _encode(backbone, d.subset(np.asarray(i)), opts)
                    for d, i in parts
                ]
            )
            if len(feats) != len(data):
                raise ValueError(f"{data.source}: feature_parts hold {len(feats)} rows for {len(data)}.")
            return feats
        if not self.enabled:
            self.misses += 1
            return _encode(backbone, data, opts)
        key = self.key(backbone, data, precision)
        path = self.path(key)
        feats = self._load(path, len(data), backbone.num_features)
        if feats is not None:
            self.hits += 1
            return feats
        self.misses += 1
        start = time.perf_counter()
        feats = _encode(backbone, data, opts)
        seconds = time.perf_counter() - start
        if not store:
            return feats
        return self._store(
            path,
            feats,
            {
                "backbone": backbone.reference(),
                "data": data.source,
                "rows": len(data),
                "precision": precision,
                "device": str(backbone.device),
                "seconds": round(seconds, 3),
                "created": time.time(),
            },
        )

    def _load(self, path: Path, rows: int, dim: int) -> np.ndarray | None:
        """The entry at ``path`` if it is whole: the right shape and the checksum recorded beside it (an entry
        overwritten with other numbers of the same shape is recomputed, not used)."""
        if not path.is_file():
            return None
        try:
            arr = np.load(path, mmap_mode="r")
            meta = json.loads(path.with_suffix(".json").read_text())
            if arr.shape != (rows, dim) or arr.dtype != np.float32:
                reason = f"{arr.dtype} {arr.shape}, expected float32 {(rows, dim)}"
            elif meta.get("checksum") != _checksum(arr):
                reason = "its contents do not match the checksum recorded when it was written"
            else:
                return arr
        except (ValueError, OSError, EOFError) as e:
            reason = str(e)
        warnings.warn(f"{path}: unreadable feature-cache entry ({reason}); recomputing it.", stacklevel=3)
        path.unlink(missing_ok=True)
        return None

    def _store(self, path: Path, feats: np.ndarray, meta: dict) -> np.ndarray:
        """Write ``feats`` as float32 and return that array, so a first call and a cached one agree."""
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        atomic_write_json(path.with_suffix(".json"), {**meta, "checksum": _checksum(feats)})
        with atomic_open(path) as f:
            np.save(f, feats)
        return feats

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        n = 0
        for p in self.root.glob("*/*.npy"):
            p.unlink()
            p.with_suffix(".json").unlink(missing_ok=True)
            n += 1
        return n


def _encode(backbone: Backbone, data: Dataset, opts: dict) -> np.ndarray:
    """``backbone.encode(data)``; rows read from their files (``data.stream``) a chunk at a time, so that they are
    never all in memory at once (only their features)."""
    from .data.stream import CHUNK, chunks, streamed

    if not streamed(data) or len(data) <= CHUNK:
        return backbone.encode(data, **opts)
    out = np.empty((len(data), backbone.num_features), dtype=np.float32)
    for start, chunk in chunks(data):
        out[start : start + len(chunk)] = backbone.encode(chunk, **opts)
    return out


def _checksum(arr: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).hexdigest()
