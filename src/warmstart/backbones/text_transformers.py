"""Text encoders from transformers: any AutoModel encoder with mean/CLS pooling, length-sorted dynamic batches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BackboneError
from .base import Backbone, BatchSource
from .encode_tuning import CopyCache, EncodeSettings, choose, inference_copy, num_threads
from .hf_common import drop_untrained_pooler, hf_reset_parameters, quiet_transformers, truncate_layers
from .hub import model_file, model_json, prepare_hub_id, strip_prefix

POOLINGS = ("mean", "cls", "max", "weighted-mean", "last-token", "mean-sqrt-len")
_ST_POOLING_NAMES = {
    "weightedmean": "weighted-mean",
    "lasttoken": "last-token",
    "mean_sqrt_len_tokens": "mean-sqrt-len",
}
_ST_POOLING_KEYS = {  # sentence-transformers' Pooling config flags -> our names
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_weightedmean_tokens": "weighted-mean",
    "pooling_mode_lasttoken": "last-token",
    "pooling_mode_mean_sqrt_len_tokens": "mean-sqrt-len",
}


def _sentence_transformers_settings(src: str) -> dict:
    """Pooling, Dense layers, normalisation and max length of a sentence-transformers model (a folder or a hub
    id), from ``modules.json``, each Pooling/Dense module's config and ``sentence_bert_config.json``."""
    out: dict[str, Any] = {}
    mods = model_json(src, "modules.json")
    if mods:
        out["normalize"] = any(m.get("type", "").endswith("Normalize") for m in mods)
        out["dense"] = []
        for m in mods:
            kind = m.get("type", "")
            if kind.endswith("Pooling"):
                cfg = model_json(src, f"{m['path']}/config.json") or {}
                if "pooling_mode" in cfg:  # sentence-transformers >= 6: {"pooling_mode": "cls"} (or a list)
                    given = (
                        cfg["pooling_mode"]
                        if isinstance(cfg["pooling_mode"], list)
                        else [cfg["pooling_mode"]]
                    )
                    modes = [_ST_POOLING_NAMES.get(str(g), str(g)) for g in given]
                    unknown = [g for g in modes if g not in POOLINGS]
                    if unknown:
                        raise BackboneError(
                            f"{src}: {m['path']}/config.json: unknown pooling mode {unknown[0]!r}."
                        )
                else:  # older versions: one flag per mode
                    modes = [name for key, name in _ST_POOLING_KEYS.items() if cfg.get(key)]
                if len(modes) > 1:
                    raise BackboneError(
                        f"{src}: {m['path']}/config.json combines pooling modes {modes}; warmstart takes one."
                    )
                out["pooling"] = modes[0] if modes else "mean"
            elif kind.endswith("Dense"):
                out["dense"].append(_read_dense(src, m["path"]))
            elif not kind.endswith(("Transformer", "Normalize")):
                raise BackboneError(
                    f"{src}: modules.json has a {kind!r} module, which warmstart does not run; it takes "
                    f"Transformer, Pooling, Dense and Normalize."
                )
    own = model_json(src, "warmstart_backbone.json")
    if own:
        out.update({k: own[k] for k in ("pooling", "normalize", "max_length") if k in own})
        return out
    sbert = model_json(src, "sentence_bert_config.json")
    if sbert and sbert.get("max_seq_length"):
        out["max_length"] = sbert["max_seq_length"]
    elif mods:  # sentence-transformers >= 6 keeps max_seq_length as the tokenizer's model_max_length
        limit = (model_json(src, "tokenizer_config.json") or {}).get("model_max_length")
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            out["max_length"] = limit
    return out


_ACTIVATIONS = {
    "Tanh": torch.nn.Tanh,
    "Identity": torch.nn.Identity,
    "ReLU": torch.nn.ReLU,
    "GELU": torch.nn.GELU,
}


def _dense_layer(cfg: dict) -> torch.nn.Sequential:
    act = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if act not in _ACTIVATIONS:
        raise BackboneError(f"a Dense module's activation {act!r} is not one of {sorted(_ACTIVATIONS)}.")
    linear = torch.nn.Linear(
        int(cfg["in_features"]), int(cfg["out_features"]), bias=bool(cfg.get("bias", True))
    )
    return torch.nn.Sequential(linear, _ACTIVATIONS[act]())


def _read_dense(src: str, path: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """A sentence-transformers Dense module's config and weights (``linear.weight``, ``linear.bias``)."""
    cfg = model_json(src, f"{path}/config.json")
    if cfg is None:
        raise BackboneError(f"{src}: the Dense module {path!r} has no config.json.")
    weights = model_file(src, f"{path}/model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        weights = model_file(src, f"{path}/pytorch_model.bin")
        if weights is None:
            raise BackboneError(
                f"{src}: the Dense module {path!r} has no model.safetensors or pytorch_model.bin."
            )
        state = torch.load(weights, map_location="cpu", weights_only=True)
    return cfg, state


def attach_dense(model: torch.nn.Module, dense: list[tuple[dict, dict[str, torch.Tensor]]]) -> None:
    """Sentence-transformers Dense layers as ``model.st_dense``, so they train, move and fingerprint with it."""
    if not dense:
        return
    layers = []
    for cfg, state in dense:
        layer = _dense_layer(cfg)
        layer[0].load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()}, strict=True)
        layers.append(layer)
    model.add_module("st_dense", torch.nn.Sequential(*layers))


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
        if pooling not in POOLINGS:
            raise BackboneError(
                f"The 'pooling' parameter must be one of {', '.join(POOLINGS)}. Got {pooling!r} instead."
            )
        self.module = model.eval()
        self.tokenizer = tokenizer
        self.name, self.source = name, source
        self.pooling, self.normalize = pooling, normalize
        limit = getattr(model.config, "max_position_embeddings", max_length) or max_length
        self.max_length = int(min(max_length, limit))
        dense = getattr(model, "st_dense", None)
        self.num_features = int(dense[-1][0].out_features if dense is not None else model.config.hidden_size)
        self._fingerprint = None
        self._inference_copy = CopyCache()
        self.last_encode_settings: EncodeSettings | None = None

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
            >>> from warmstart.backbones import minilm_l6_folder  # all-MiniLM-L6-v2, a transformers folder
            >>> bb = TransformerTextBackbone.from_pretrained(minilm_l6_folder())
            >>> bb.encode(["hello world"], progress=False).shape
            (1, 384)
        """
        from transformers import AutoModel, AutoTokenizer

        src = strip_prefix(str(name_or_path))
        prepare_hub_id(src)
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
        drop_untrained_pooler(model, info, src)
        if num_layers is not None:
            truncate_layers(model, num_layers, src)
        settings = _sentence_transformers_settings(src)
        attach_dense(model, settings.get("dense", []))
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
        out = {
            "kind": "text",
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "tokenizer": self._tok_hash,
        }
        dense = getattr(self.module, "st_dense", None)
        if dense is not None:  # (absent otherwise, so older fingerprints stay as they were)
            out["dense"] = [[d[0].in_features, d[0].out_features, type(d[1]).__name__] for d in dense]
        return out

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
        encoder (``inference_module``: a bf16 copy, or an fp32 one laid out for speed)."""
        module = self.module if module is None else module
        hidden = module(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool_tokens(hidden.float(), attention_mask, self.pooling)
        dense = getattr(module, "st_dense", None)
        if dense is not None:
            pooled = dense(pooled.to(hidden.dtype)).float()
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled

    # -- the exported graph (export.py): token ids and attention mask in, features out ---------------------------
    def export_example(self) -> tuple[tuple[torch.Tensor, ...], list[str], dict]:
        """Example graph inputs (two rows, one padded), their names and dynamic axes, for ``torch.onnx.export``."""
        ids = torch.full((2, 8), int(self.tokenizer.pad_token_id or 0), dtype=torch.long)
        ids[:, 0] = int(self.tokenizer.cls_token_id or 0)
        mask = torch.ones((2, 8), dtype=torch.long)
        mask[1, 5:] = 0
        names = ["input_ids", "attention_mask"]
        return (ids, mask), names, {n: {0: "batch", 1: "tokens"} for n in names}

    def graph_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Features from the exported graph's inputs."""
        return self.forward_features(input_ids=input_ids, attention_mask=attention_mask)

    def graph_args(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """A collated batch (``batch_source``) as the exported graph's inputs."""
        return (batch["input_ids"], batch["attention_mask"])

    def export_preprocessing(self, folder: Path) -> dict:
        """Write the tokenizer beside an exported graph; return the preprocessing record (preprocess.json)."""
        from ..errors import ExportError

        self.tokenizer.save_pretrained(folder / "tokenizer")
        if not (folder / "tokenizer" / "tokenizer.json").is_file():
            raise ExportError(
                f"the backbone {self.name!r} has no fast tokenizer (tokenizer.json), which the export needs."
            )
        return {
            "modality": "text",
            "inputs": ["input_ids", "attention_mask"],
            "tokenizer": "tokenizer/tokenizer.json",
            "max_length": int(self.max_length),
            "pad_id": int(self.tokenizer.pad_token_id or 0),
            "truncation": "right, to max_length tokens including the special tokens",
        }

    def batch_source(self, data: Any) -> TextBatchSource:
        texts = data.inputs if hasattr(data, "inputs") else data
        if hasattr(texts, "select"):  # read from their file (``data.stream``): tokenized a chunk at a time
            return TextBatchSource.streamed(self, texts)
        return TextBatchSource(self, [str(t) for t in texts])

    def reset_parameters(self, seed: int) -> None:
        """The model's own initialisation (BERT: normal(0, 0.02) weights) rather than PyTorch's layer defaults."""
        if not hf_reset_parameters(self.module, seed):
            return super().reset_parameters(seed)
        self.has_source_classifier = False
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
        # weak references do not pickle; the copy is remade on first use
        state["_inference_copy"] = CopyCache()
        return state

    def _on_moved(self) -> None:
        self._inference_copy.clear()

    def inference_module(
        self, dtype: torch.dtype = torch.bfloat16, settings: EncodeSettings | None = None
    ) -> torch.nn.Module:
        """The encoder as ``encode`` runs it in ``dtype`` with ``settings`` (its attention implementation and
        linear layout): in fp32 with the model's own attention and standard layers, the model itself; else a
        frozen copy (bf16, fp16, or fp32 laid out as measured fastest on this CPU), made once and again
        whenever a weight changes or the settings differ.

        Casting the weights once instead of per matmul (as autocast does) and keeping the activations in bf16
        between layers makes bf16 extraction about 1.25x faster than autocast on long text; which attention
        and linear layout are fastest depends on the CPU, so ``encode`` passes the ones measured on this one
        (encode_tuning.py, docs/backbones.md). Without ``settings``: plain matmul attention on a CPU, SDPA on
        a GPU, whose fused kernels are the fast path there. Changes are seen through the tensors themselves:
        an in-place update (an optimizer step, ``load_state_dict``) bumps a tensor's version, and a replaced
        tensor (an adapter wrapped around a layer) is a different object.
        """
        if settings is None:
            settings = EncodeSettings(attention="eager" if self.device.type == "cpu" else "sdpa")
        if (
            dtype == torch.float32
            and settings.linear == "standard"
            and settings.attention in (self._own_attention(), "model")
        ):
            return self.module
        how = (dtype, settings.attention, settings.linear)
        return self._inference_copy.get(
            self.module, how, lambda: inference_copy(self.module, dtype, settings.attention, settings.linear)
        )

    def _own_attention(self) -> str:
        return str(getattr(self.module.config, "_attn_implementation", None) or "eager")

    def encode_settings(self, precision: str, lengths: np.ndarray) -> EncodeSettings:
        """How ``encode`` runs texts of these token ``lengths`` at ``precision`` here: on a CPU, measured per CPU
        at every precision (encode_tuning.py; until measured, in fp32 the model as loaded and in bf16/fp16 plain
        matmul attention, both at 2,048 padded tokens per batch); on a GPU, SDPA and 65,536 tokens."""
        from ..runtime import resolve

        rt = resolve(self.device, precision)
        if rt.device.type != "cpu":
            attention = "sdpa" if rt.amp_dtype is not None else self._own_attention()
            return EncodeSettings(attention=attention, max_batch_tokens=65536)
        default = EncodeSettings(attention=self._own_attention()) if rt.amp_dtype is None else None
        return choose(self, rt.precision, rt.amp_dtype or torch.float32, lengths, default)

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
        padded tokens (default: on a CPU, measured for this CPU, see ``encode_settings``, else 2,048; 65,536 on a
        GPU, which needs large batches to be busy).
        What it used is kept in ``last_encode_settings``."""
        from tqdm.auto import tqdm

        from ..runtime import resolve, to_numpy

        texts = [
            str(t) for t in (inputs.inputs if hasattr(inputs, "inputs") else inputs)
        ]  # a Dataset, or texts
        out = np.empty((len(texts), self.num_features), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        self.module.eval()
        rt = resolve(self.device, precision)
        settings = self.encode_settings(rt.precision, lengths)
        if max_batch_tokens is not None:
            settings = replace(
                settings, max_batch_tokens=int(max_batch_tokens), source=f"{settings.source}+argument"
            )
        self.last_encode_settings = settings
        module = self.inference_module(rt.amp_dtype or torch.float32, settings)
        bar = tqdm(
            total=len(texts),
            desc=f"encoding with {self.name}",
            unit="text",
            disable=not progress or len(texts) < 256,
            leave=False,
        )
        with torch.inference_mode(), num_threads(settings.threads):
            for idx in self.batches(lengths, batch_size or 256, settings.max_batch_tokens):
                batch = rt.to_device(self.collate([ids[i] for i in idx]))
                out[idx] = to_numpy(self.forward_features(**batch, module=module))
                bar.update(len(idx))
        bar.close()
        return out

    def save(self, folder: str | Path) -> None:
        """A transformers folder plus ``warmstart_backbone.json``; Dense layers as a sentence-transformers
        ``N_Dense`` module listed in ``modules.json``, so the folder loads the same way here and there."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        dense = getattr(self.module, "st_dense", None)
        if (
            dense is not None
        ):  # saved as sentence-transformers Dense modules, not inside the transformers weights
            del self.module.st_dense
        try:
            self.module.save_pretrained(folder, safe_serialization=True)
        finally:
            if dense is not None:
                self.module.add_module("st_dense", dense)
        self.tokenizer.save_pretrained(folder)
        mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
        flags = {key: name == self.pooling for key, name in _ST_POOLING_KEYS.items()}
        pool_cfg = {"word_embedding_dimension": int(self.module.config.hidden_size), **flags}
        mods.append(
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
        )
        for d in dense or []:
            path = f"{len(mods)}_Dense"
            (folder / path).mkdir(exist_ok=True)
            act = type(d[1]).__name__
            cfg = {
                "in_features": d[0].in_features,
                "out_features": d[0].out_features,
                "bias": d[0].bias is not None,
                "activation_function": f"torch.nn.modules.{'linear' if act == 'Identity' else 'activation'}.{act}",
            }
            (folder / path / "config.json").write_text(json.dumps(cfg, indent=2))
            state = {f"linear.{k}": v.detach().cpu().contiguous() for k, v in d[0].state_dict().items()}
            save_file(state, str(folder / path / "model.safetensors"))
            mods.append(
                {
                    "idx": len(mods),
                    "name": str(len(mods)),
                    "path": path,
                    "type": "sentence_transformers.models.Dense",
                }
            )
        if self.normalize:
            (folder / f"{len(mods)}_Normalize").mkdir(exist_ok=True)
            mods.append(
                {
                    "idx": len(mods),
                    "name": str(len(mods)),
                    "path": f"{len(mods)}_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                }
            )
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool_cfg, indent=2))
        (folder / "modules.json").write_text(json.dumps(mods, indent=2))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": self.max_length}))
        meta = {
            "kind": "transformers-text",
            "name": self.name,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
        }
        (folder / "warmstart_backbone.json").write_text(json.dumps(meta, indent=2))


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per row from ``(B, L, D)`` token states and the ``(B, L)`` attention mask, as
    sentence-transformers pools (rows are right-padded)."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(m == 0, -1e9).max(1).values
    if pooling == "last-token":
        last = (mask.sum(1) - 1).clamp(min=0)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    if pooling == "weighted-mean":  # position-weighted: token i (from 1) counts i times
        m = m * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
    total, count = (hidden * m).sum(1), m.sum(1).clamp(min=1e-9)
    return total / count.sqrt() if pooling == "mean-sqrt-len" else total / count


class _FlatIds:
    """Rows of token ids stored end to end in one array (``flat``); row ``i`` is a view of it."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        self.flat, self.lengths = flat, lengths
        self.starts = np.cumsum(lengths) - lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.starts[i])
        return self.flat[start : start + int(self.lengths[i])]


class TextBatchSource(BatchSource):
    """Texts tokenized once; batches are padded to their own longest row."""

    def __init__(self, backbone: TransformerTextBackbone, texts: list[str]) -> None:
        self.backbone = backbone
        self.ids = backbone.tokenize(texts) if texts else []
        self.lengths = np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    @classmethod
    def streamed(cls, backbone: TransformerTextBackbone, texts: Any) -> TextBatchSource:
        """Texts read from their file (``data.stream``), tokenized a chunk at a time and kept as one int32 array
        of every row's ids end to end (a row is a view of it), so neither the texts nor a Python list per row
        are ever all in memory."""
        from ..data.stream import taken_chunks

        flat, lengths = [], []
        for chunk in taken_chunks(texts):
            ids = backbone.tokenize(chunk)
            lengths.append(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))
            flat.append(
                np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths[-1].sum()))
            )
        source = cls(backbone, [])
        source.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        source.ids = _FlatIds(np.concatenate(flat) if flat else np.zeros(0, np.int32), source.lengths)
        return source

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return self.backbone.collate([self.ids[i] for i in indices])
