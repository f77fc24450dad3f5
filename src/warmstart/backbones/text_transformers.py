"""Text encoders from transformers: any AutoModel encoder with mean/CLS pooling, length-sorted dynamic batches."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackboneError
from .base import Backbone, BatchSource


def _sentence_transformers_settings(folder: Path) -> dict:
    """Read pooling, normalisation and max length from a sentence-transformers folder, if it is one."""
    out: dict[str, Any] = {}
    modules = folder / "modules.json"
    if modules.is_file():
        mods = json.loads(modules.read_text())
        out["normalize"] = any(m.get("type", "").endswith("Normalize") for m in mods)
        for m in mods:
            if m.get("type", "").endswith("Pooling"):
                cfg = json.loads((folder / m["path"] / "config.json").read_text())
                out["pooling"] = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    own = folder / "warmstart_backbone.json"
    if own.is_file():
        meta = json.loads(own.read_text())
        out.update({k: meta[k] for k in ("pooling", "normalize", "max_length") if k in meta})
        return out
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        out["max_length"] = json.loads(sbert.read_text()).get("max_seq_length")
    return out


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars; warmstart reports what matters itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _drop_untrained_pooler(model: torch.nn.Module, info: dict, src: str) -> None:
    """Encoders saved without a pooler get a random one from AutoModel; we never use it, so remove it
    (random weights would also change the fingerprint on every load). Other missing weights are an error."""
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing and all(k.startswith("pooler.") for k in missing) and hasattr(model, "pooler"):
        model.pooler = None
    elif missing:
        raise BackboneError(
            f"{src}: the checkpoint lacks weights for {missing[:5]} ({len(missing)} in all); "
            f"they would be random. Check the folder holds the full model."
        )


def _truncate_layers(model: torch.nn.Module, num_layers: int, src: str) -> None:
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise BackboneError(f"{src}: cannot cut layers of {type(model).__name__} (no encoder.layer list).")
    if not 0 <= num_layers <= len(layers):
        raise BackboneError(
            f"The 'num_layers' parameter must be an int in [0, {len(layers)}] for {src}. Got {num_layers!r}."
        )
    model.encoder.layer = torch.nn.ModuleList(list(layers)[:num_layers])
    model.config.num_hidden_layers = num_layers


class TransformerTextBackbone(Backbone):
    """A transformers encoder (BERT-like) producing one vector per text.

    Texts are tokenized once, sorted by length, and batched so a batch holds at most ``max_batch_tokens``
    tokens (and ``batch_size`` rows): short texts go in large batches and no batch pads to a long outlier.
    """

    modality = "text"
    bf16_kind = "weights"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        name: str,
        source: str,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 256,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise BackboneError(f"The 'pooling' parameter must be 'mean' or 'cls'. Got {pooling!r} instead.")
        self.module = model.eval()
        self.tokenizer = tokenizer
        self.name, self.source = name, source
        self.pooling, self.normalize = pooling, normalize
        limit = getattr(model.config, "max_position_embeddings", max_length) or max_length
        self.max_length = int(min(max_length, limit))
        self.num_features = int(model.config.hidden_size)
        self._fingerprint = None
        self._bf16_copy: tuple[list, torch.nn.Module] | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        name: str | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        tokenizer_path: str | os.PathLike | None = None,
        num_layers: int | None = None,
    ) -> TransformerTextBackbone:
        """Load from a local folder or a hub id. Sentence-transformers settings are honoured when present.
        ``num_layers`` keeps only the first layers of the encoder (0: the embeddings alone).

        Example:
            >>> bb = TransformerTextBackbone.from_pretrained("/path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
            >>> bb.encode(["hello world"]).shape  # doctest: +SKIP
            (1, 384)
        """
        from transformers import AutoModel, AutoTokenizer

        src = str(name_or_path)
        try:
            with quiet_transformers():
                model, info = AutoModel.from_pretrained(src, output_loading_info=True)
                tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path or src))
        except OSError as e:
            where = "local folder" if Path(src).exists() else "hub id"
            raise BackboneError(
                f"could not load the transformers {where} {src!r}: {e}. For a hub id without network access, "
                f"download the model elsewhere and pass its local folder."
            ) from e
        _drop_untrained_pooler(model, info, src)
        if num_layers is not None:
            _truncate_layers(model, num_layers, src)
        settings = _sentence_transformers_settings(Path(src)) if Path(src).is_dir() else {}
        return cls(
            model,
            tokenizer,
            name=name or src,
            source=src,
            pooling=pooling or settings.get("pooling", "mean"),
            normalize=settings.get("normalize", False) if normalize is None else normalize,
            max_length=max_length or settings.get("max_length") or 256,
        )

    def preprocess_config(self) -> dict:
        if not hasattr(self, "_tok_hash"):
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if (
                backend is not None
            ):  # truncation/padding in the serialised state change with use: leave them out
                state = json.loads(backend.to_str())
                spec = json.dumps(
                    {k: v for k, v in state.items() if k not in ("truncation", "padding")}, sort_keys=True
                )
            else:
                spec = json.dumps(self.tokenizer.get_vocab(), sort_keys=True)
            self._tok_hash = hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()
        return {
            "kind": "text",
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "tokenizer": self._tok_hash,
        }

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return enc["input_ids"]

    def collate(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad a list of token-id lists to the longest one in the batch."""
        longest = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.as_tensor(x)
            mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, module: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Differentiable pooled features for a padded batch (used by fine-tuning); ``module`` replaces the
        encoder (the bf16 copy)."""
        module = self.module if module is None else module
        hidden = module(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled

    def batch_source(self, data: Any) -> TextBatchSource:
        texts = data.inputs if hasattr(data, "inputs") else data
        return TextBatchSource(self, [str(t) for t in texts])

    def reset_parameters(self, seed: int) -> None:
        """BERT-style initialisation (normal(0, 0.02) weights) rather than PyTorch's layer defaults."""
        torch.manual_seed(seed)
        init = getattr(self.module, "_init_weights", None)
        if init is None:
            return super().reset_parameters(seed)
        # transformers (>= 4.5x) marks loaded tensors as initialised and its init functions then skip them, which
        # would leave the pretrained weights in place: clear the marks first
        for t in [*self.module.parameters(), *self.module.buffers()]:
            if getattr(t, "_is_hf_initialized", False):
                t._is_hf_initialized = False
        self.has_source_classifier = False
        self.module.apply(init)
        self.invalidate_fingerprint()

    def batches(self, lengths: np.ndarray, batch_size: int, max_batch_tokens: int) -> list[np.ndarray]:
        """Index batches over length-sorted rows (longest first), capped in rows and padded tokens."""
        order = np.argsort(-lengths, kind="stable")
        out, start = [], 0
        while start < len(order):
            longest = max(int(lengths[order[start]]), 1)
            rows = max(1, min(batch_size, max_batch_tokens // longest))
            out.append(order[start : start + rows])
            start += rows
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_bf16_copy"] = None  # weak references do not pickle; the copy is remade on first use
        return state

    def _on_moved(self) -> None:
        self._bf16_copy = None

    def bf16_module(self, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
        """A bf16 (or fp16) copy of the encoder for ``encode``, made once and again whenever a weight changes.

        Casting the weights once instead of per matmul (as autocast does), keeping the activations in bf16
        between layers and, on the CPU, computing attention with plain matmuls makes bf16 extraction about
        1.25x faster than autocast on long text (docs/backbones.md). Changes are seen through the tensors
        themselves: an in-place update (an optimizer step, ``load_state_dict``) bumps a tensor's version, and a
        replaced tensor (an adapter wrapped around a layer) is a different object.
        """
        tensors = [*self.module.parameters(), *self.module.buffers()]
        cached = self._bf16_copy
        if cached is not None:
            refs, module = cached
            if (
                len(refs) == len(tensors)
                and next(iter(module.parameters())).dtype == dtype
                and next(iter(module.parameters())).device == self.device
                and all(r() is t and v == t._version for (r, v), t in zip(refs, tensors, strict=True))
            ):
                return module
        module = copy.deepcopy(self.module).to(dtype).eval().requires_grad_(False)
        # in bf16 the plain matmul-softmax-matmul attention is about 1.3x faster on CPU than SDPA's fused kernel at
        # head size 32 (10% of the whole encode on long text); on a GPU SDPA's fused kernels are the fast path.
        # The fp32 module keeps its own setting.
        if self.device.type == "cpu" and hasattr(module, "set_attn_implementation"):
            try:
                module.set_attn_implementation("eager")
            except (ValueError, ImportError):  # a model without the eager path keeps what it had
                pass
        self._bf16_copy = ([(weakref.ref(t), t._version) for t in tensors], module)
        return module

    def encode(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        progress: bool = True,
        precision: str = "fp32",
        max_batch_tokens: int | None = None,
    ) -> np.ndarray:
        """Features of ``inputs``; a batch holds at most ``batch_size`` rows (256) and ``max_batch_tokens``
        padded tokens: 2,048 on a CPU, where larger batches ran slower (docs/backbones.md), 65,536 on a GPU,
        which needs large batches to be busy."""
        from tqdm.auto import tqdm

        from ..runtime import resolve, to_numpy

        texts = [str(t) for t in inputs]
        out = np.empty((len(texts), self.num_features), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        self.module.eval()
        rt = resolve(self.device, precision)
        module = self.module if rt.amp_dtype is None else self.bf16_module(rt.amp_dtype)
        bar = tqdm(
            total=len(texts),
            desc=f"encoding with {self.name}",
            unit="text",
            disable=not progress or len(texts) < 256,
            leave=False,
        )
        with torch.inference_mode():
            if max_batch_tokens is None:
                max_batch_tokens = 2048 if rt.device.type == "cpu" else 65536
            for idx in self.batches(lengths, batch_size or 256, max_batch_tokens):
                batch = rt.to_device(self.collate([ids[i] for i in idx]))
                out[idx] = to_numpy(self.forward_features(**batch, module=module))
                bar.update(len(idx))
        bar.close()
        return out

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.module.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        (folder / "warmstart_backbone.json").write_text(
            json.dumps(
                {
                    "kind": "transformers-text",
                    "name": self.name,
                    "pooling": self.pooling,
                    "normalize": self.normalize,
                    "max_length": self.max_length,
                },
                indent=2,
            )
        )


class TextBatchSource(BatchSource):
    """Texts tokenized once; batches are padded to their own longest row."""

    def __init__(self, backbone: TransformerTextBackbone, texts: list[str]) -> None:
        self.backbone = backbone
        self.ids = backbone.tokenize(texts) if texts else []
        self.lengths = np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return self.backbone.collate([self.ids[i] for i in indices])
