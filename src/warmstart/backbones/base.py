"""The backbone contract: turn a batch of raw inputs into an (N, D) feature matrix, and say how to find it again."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class Backbone(ABC):
    """A pretrained (or random) feature extractor.

    Subclasses set ``name``, ``modality`` ("text" or "image"), ``module`` (the trainable ``nn.Module``),
    ``num_features`` and ``source`` (how to load it again: a registry name, local path or hub id).
    """

    name: str
    modality: str
    module: nn.Module
    num_features: int
    source: str

    @abstractmethod
    def encode(
        self, inputs: Any, *, batch_size: int | None = None, progress: bool = True, bf16: bool = False
    ) -> np.ndarray:
        """Features for every input as a float32 ``(N, num_features)`` array, in input order."""

    @abstractmethod
    def preprocess_config(self) -> dict:
        """Everything about preprocessing that changes the features (sizes, normalisation, tokenizer, pooling)."""

    @abstractmethod
    def save(self, folder: str | Path) -> None:
        """Write weights (safetensors) and what is needed to rebuild this backbone into ``folder``."""

    @property
    def config(self) -> dict:
        return {
            "name": self.name,
            "modality": self.modality,
            "source": self.source,
            "num_features": self.num_features,
            "preprocess": self.preprocess_config(),
        }

    def fingerprint(self) -> str:
        """Hash of the weights, architecture and preprocessing. Changes whenever the features could."""
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps(self.preprocess_config(), sort_keys=True).encode())
        h.update(type(self.module).__name__.encode())
        for key, tensor in sorted(self.module.state_dict().items()):
            h.update(key.encode())
            t = tensor.detach().contiguous().cpu()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        self._fingerprint = h.hexdigest()
        return self._fingerprint

    def reference(self) -> dict:
        """What an artifact records so that this backbone can be found and checked again."""
        return {
            "name": self.name,
            "source": self.source,
            "modality": self.modality,
            "fingerprint": self.fingerprint(),
        }

    def invalidate_fingerprint(self) -> None:
        """Call after changing the weights in place (fine-tuning) so the cache key follows."""
        self._fingerprint = None


def autocast(bf16: bool):
    """bf16 autocast on CPU when asked, otherwise a no-op context."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
