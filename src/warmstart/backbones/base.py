"""The backbone contract: turn a batch of raw inputs into an (N, D) feature matrix, and say how to find it again."""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
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
        self, inputs: Any, *, batch_size: int | None = None, progress: bool = True, precision: str = "fp32"
    ) -> np.ndarray:
        """Features for every input (a ``Dataset`` of this backbone's modality, or its inputs) as a float32
        ``(N, num_features)`` array, in input order, computed on the module's device (``to``) in ``precision``
        (``fp32``, ``bf16``, ``fp16`` or ``auto``)."""

    @property
    def device(self) -> torch.device:
        """Where the module's weights are (the CPU for a module without any)."""
        p = next(iter(self.module.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Backbone:
        """Move the module to ``device`` (a ``torch.device`` or a name ``runtime.resolve_device`` takes)."""
        from ..runtime import resolve_device

        dev = device if isinstance(device, torch.device) else resolve_device(device)
        if dev != self.device:
            self.module.to(dev)
            self._on_moved()
        return self

    def _on_moved(self) -> None:
        """Drop anything derived from the weights on their old device (default: nothing)."""
        return None

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

    # -- training hooks (used by the techniques that change backbone weights) -------------------------------
    unused_parameters: tuple[str, ...] = ()  # name prefixes in ``module`` that forward_features never touches
    # how ``encode`` computes in bf16 or fp16: "autocast" (fp32 weights, low-precision matmuls) or "weights" (a
    # low-precision copy of the whole module); part of the feature-cache key, since the two give slightly
    # different features
    bf16_kind: str = "autocast"
    # how this kind of backbone computes its features where that is not what ``precision`` says (a static
    # backbone reads an fp16 copy of its table whatever the precision): part of the feature cache's key, so
    # that features computed another way are not read back
    feature_kind: str = ""

    def low_precision_kind(self, precision: str, n_rows: int) -> str:
        """How ``encode`` computes ``n_rows`` rows at ``precision`` (bf16/fp16): ``bf16_kind`` unless the backbone
        chooses per machine (image backbones do)."""
        return self.bf16_kind

    # the learning rate full fine-tuning starts from (lr="auto") where this kind of backbone needs another than
    # its modality's default (a static embedding table trains at a far higher rate than a transformer)
    tuning_lr: float | None = None
    # the epochs full fine-tuning trains (epochs="auto") where this kind of backbone needs another count than its
    # modality's default
    tuning_epochs: int | None = None
    # rows per batch when a trained model predicts (``TunedTechnique.predict_proba``)
    inference_batch_size: int = 64

    def batch_source(self, data: Any) -> BatchSource:
        """Model-ready batches of ``data`` for training and tuned inference (see ``BatchSource``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be fine-tuned (no batch_source).")

    def training_source(self, data: Any, progress: bool = True) -> BatchSource:
        """The batches a training run reads every epoch (default: ``batch_source``; images override it to decode
        each image once)."""
        return self.batch_source(data)

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:
        """Differentiable ``(B, num_features)`` features of one collated batch."""
        raise NotImplementedError(f"{type(self).__name__} cannot be fine-tuned (no forward_features).")

    def layer_groups(self) -> list[list[str]]:
        """Parameter names of ``module`` grouped input to output: group 0 is the embeddings or stem, then one
        group per repeated block, then whatever follows the blocks. Freezing and layer-wise LR decay use it."""
        return split_into_layer_groups(self.module, self.unused_parameters)

    @property
    def family(self) -> str:
        """The transformers ``model_type``, or the module's class name for plain PyTorch models."""
        from .families import family_of

        return family_of(self.module)

    def adapter_targets(self, kind: str) -> tuple[list[str], list[str]] | None:
        """Default adapter target suffixes for ``kind`` ("lora" or "ia3") and, for IA3, the feed-forward subset;
        None where this family has no defaults (``backbones/families.py``)."""
        from .families import ADAPTER_TARGETS

        spec = ADAPTER_TARGETS.get(self.family)
        if spec is None:
            return None
        return (list(spec[0]), []) if kind == "lora" else (list(spec[1]), list(spec[2]))

    def source_proba(self, features: np.ndarray) -> np.ndarray | None:
        """The pretrained source classifier's class probabilities for ``encode``'s features, or None when this
        backbone has no trained classifier (LEEP needs one)."""
        return None

    def reset_parameters(self, seed: int) -> None:
        """Re-initialise every weight at random (the from-scratch baseline), reproducibly from ``seed``; BatchNorm
        running statistics go back to mean 0 and variance 1 (``reset_parameters`` of the layer)."""
        self.has_source_classifier = False
        torch.manual_seed(seed)
        for m in self.module.modules():
            if m is not self.module and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        self.invalidate_fingerprint()

    def invalidate_fingerprint(self) -> None:
        """Call after changing the weights in place (fine-tuning) so the cache key follows."""
        self._fingerprint = None


class BatchSource:
    """Rows of a dataset turned into model inputs on demand.

    ``lengths`` (token counts for text, ``None`` for images) lets the loop group rows of similar length so that
    batches pad little (where ``pool_by_length``); ``collate(indices)`` returns the keyword tensors of
    ``Backbone.forward_features``.
    """

    lengths: np.ndarray | None = None
    # whether training batches group rows of similar length: worth it where padding costs compute (attention);
    # where it costs nothing, grouping only makes the batches less random (static backbones)
    pool_by_length: bool = True
    # whether collating does real work per row (decoding and resizing images), so that worker processes pay
    decodes: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def split_into_layer_groups(module: nn.Module, unused: tuple[str, ...] = ()) -> list[list[str]]:
    """Group parameter names around the module's main stack of blocks (its largest ``nn.ModuleList``)."""
    stacks = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    names = [n for n, _ in module.named_parameters() if not n.startswith(unused)]
    if not stacks:
        return [names]
    stack, blocks = max(stacks, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
    prefix = f"{stack}." if stack else ""
    before, after = [], []
    per_block: list[list[str]] = [[] for _ in blocks]
    for n in names:
        if n.startswith(prefix) and n[len(prefix) :].split(".", 1)[0].isdigit():
            per_block[int(n[len(prefix) :].split(".", 1)[0])].append(n)
        elif any(per_block):
            after.append(n)
        else:
            before.append(n)
    return [g for g in [before, *per_block, after] if g]


class _Collate:
    """Batch ``i`` of a fixed list, collated: a map-style dataset for ``DataLoader(batch_size=None)``."""

    def __init__(self, source: BatchSource, batches: list[np.ndarray]) -> None:
        self.source, self.batches = source, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.source.collate(self.batches[i])


def collated_batches(
    source: BatchSource, batches: list[np.ndarray], device: torch.device, num_workers: int | str = "auto"
) -> Any:
    """The collated ``batches`` of ``source`` in order: in this process, or in ``num_workers`` worker processes
    of a ``DataLoader`` (pinned memory on CUDA) that collate ahead while the model computes. ``"auto"`` uses up
    to 4 workers where collating is real work (``source.decodes``: images) and a GPU waits for it, else none (on
    a CPU the workers would take cores from the model). The batches are the same either way."""
    if num_workers == "auto":
        busy_gpu = device.type == "cuda" and source.decodes
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if busy_gpu else 0
    if not num_workers or not batches:
        return (source.collate(idx) for idx in batches)
    from torch.utils.data import DataLoader

    return DataLoader(
        _Collate(source, batches),
        batch_size=None,
        num_workers=int(num_workers),
        pin_memory=device.type == "cuda",
        # its own generator: a DataLoader otherwise draws its workers' seed from torch's global generator,
        # which would shift every later random draw of training (augmentation, dropout) and break resuming
        generator=torch.Generator().manual_seed(0),
    )
