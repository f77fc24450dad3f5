"""Static-embedding text backbones: one vector per token, looked up and averaged (model2vec's idea).

A static backbone is distilled from a transformer encoder by the ``model2vec`` library: every token of the
encoder's vocabulary goes through the encoder once, the outputs are reduced with PCA and weighted down by token
frequency (SIF). Encoding a text is then a tokenizer call, a table lookup and a mean, with no attention and no
matrix products, so it runs hundreds of times faster than the encoder on a CPU. Distilled from a *fine-tuned*
encoder (``warmstart distill``), the table carries what fine-tuning taught it; the vectors stay trainable, so the
``finetune`` technique trains them further on a teacher's soft labels.

The static backbone is a plain PyTorch module (an embedding table), saved as safetensors with the tokenizer's
``tokenizer.json``; loading it again needs neither model2vec nor the encoder it came from.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BackboneError
from ..ragged import flatten, gather, splice
from ..runtime import tensor_version
from .base import Backbone, BatchSource
from .wordpiece_cache import WordPieceCache

# the largest value fp16 holds: a table with a larger one is read in fp32
FP16_MAX = 65504.0
# the largest count of one id in a row that fp16 holds exactly (a weight in the fp16 lookup): larger, the fp32 tables
FP16_EXACT = 2048.0

MODEL2VEC_INSTALL = (
    "pip install --no-deps model2vec==0.10.0 skeletoken==0.6.1 (or pip install 'warmstart[distill]')"
)


class StaticEmbeddings(nn.Module):
    """``(B, L)`` token ids and mask -> the mean of their rows of ``embedding``, optionally unit length, then
    optionally one hidden layer (``hidden``, set by ``StaticBackbone.add_hidden_layer``): with a linear head on
    top, an MLP classifier, as in model2vec's own classifier. ``branch`` (``StaticBackbone.add_branch``): a
    second such model over the same token ids, its own table and hidden layer, whose features follow these.

    Training (gradients on, or training mode) reads the fp32 tables. Prediction (evaluation mode, gradients
    off) reads a half-precision copy of them, the branch's table beside this one's in one row per token
    (``lookup_table``): a row's vectors are summed in fp32, the sum rounded to fp16, then divided by the count
    in fp32. A lookup is bound by memory, not arithmetic, so half the bytes per token is most of its time, and
    one row per token is one lookup for both tables (the pair's rows per second on BBC news: +16%,
    docs/distill.md). The ONNX graph computes the same (``graph_forward``). Tables whose sums over
    ``max_tokens`` tokens could pass fp16's range are read in fp32 throughout."""

    def __init__(self, vectors: torch.Tensor, normalize: bool = True, max_tokens: int = 512) -> None:
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(vectors.float(), freeze=False)
        self.normalize = normalize
        self.max_tokens = int(max_tokens)  # the most tokens a row has (``StaticBackbone.max_length``)
        self.hidden: nn.Module | None = None
        self.branch: StaticEmbeddings | None = None
        self._lookup: tuple | None = None  # (the tables' state it was made from, the copy): ``lookup_table``

    def tables(self) -> list[torch.Tensor]:
        """This model's table, then its branch's (if any)."""
        return [self.embedding.weight] + ([] if self.branch is None else [self.branch.embedding.weight])

    def lookup_table(self) -> torch.Tensor | None:
        """The tables side by side (``tables``), in fp16, as prediction reads them; None where the sum of
        ``max_tokens`` of their values could pass fp16's range (or one is not finite). Made again where a table
        was replaced or changed in place by an ordinary tensor operation (a load, ``reset_parameters``), and
        after ``train``/``eval`` switches."""
        tables = self.tables()
        state = (
            self.max_tokens,
            *((w.data_ptr(), tensor_version(w), str(w.device), tuple(w.shape)) for w in tables),
        )
        made = getattr(self, "_lookup", None)
        if made is None or made[0] != state:
            with torch.no_grad():
                joined = torch.cat([w.detach() for w in tables], 1) if len(tables) > 1 else tables[0].detach()
                largest = float(joined.abs().max()) if joined.numel() else 0.0
                fits = bool(torch.isfinite(joined).all()) and largest * self.max_tokens < FP16_MAX
                self._lookup = (state, joined.half().contiguous() if fits else None)
        return self._lookup[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_lookup": None}  # made again where it is needed, not copied or pickled

    def train(self, mode: bool = True) -> StaticEmbeddings:
        """Switching to training drops the lookup table, and so does switching back: a fused optimizer's steps
        change the tables in place without moving their version counters, so the training loop's switches (and
        ``StaticBackbone.invalidate_fingerprint`` after it) are what say that they changed. An ``eval()`` in
        evaluation mode (each prediction of a fine-tuned model makes one) keeps it."""
        if bool(mode) != self.training:
            self._lookup = None
        return super().train(mode)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Rows given as one flat tensor of all their ids (``token_ids``) and each row's ``lengths``: one fused
        ``embedding_bag`` (each row a bag), with no padding and no ``(B, L, D)`` tensor; in evaluation mode with
        gradients off, one over the fp16 lookup table for this model and its branch at once."""
        offsets = (torch.cumsum(lengths, 0) - lengths).to(token_ids.dtype)
        return self.forward_counts(token_ids, offsets, None, lengths)

    def forward_counts(
        self,
        token_ids: torch.Tensor,
        offsets: torch.Tensor,
        counts: torch.Tensor | None,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """``forward`` of rows given as bags: row ``i``'s ids start at ``offsets[i]``, each weighted by its
        ``counts`` (None: once). Each row's distinct ids with their counts (``lexical.count_flat``'s matrix) are
        the same rows in fewer reads: ``StaticBackbone.encode_flat``. ``lengths``: each row's number of tokens."""
        table = None if torch.is_grad_enabled() or self.training else self.lookup_table()
        exact = counts is None or not len(counts) or float(counts.max()) <= FP16_EXACT
        if table is not None and exact and (not len(lengths) or int(lengths.max()) <= self.max_tokens):
            weights = None if counts is None else counts.to(table.dtype)
            # fp32 sums, in fp16
            summed = nn.functional.embedding_bag(
                token_ids, table, offsets, mode="sum", per_sample_weights=weights
            )
            return self._features(summed.float() / lengths.clamp(min=1).unsqueeze(1))
        return self._fp32_forward(token_ids, lengths, offsets, counts)

    def _fp32_forward(
        self,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        offsets: torch.Tensor,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``forward_counts`` from the fp32 tables, this model's and its branch's."""
        weight = self.embedding.weight
        weights = None if counts is None else counts.to(weight.dtype)
        summed = nn.functional.embedding_bag(
            token_ids, weight, offsets, mode="sum", per_sample_weights=weights
        )
        out = self.finish(summed / lengths.clamp(min=1).unsqueeze(1).to(weight.dtype))
        if self.branch is None:
            return out
        return torch.cat([out, self.branch._fp32_forward(token_ids, lengths, offsets, counts)], -1)

    def graph_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same features as prediction with plain gather, multiply and sum: what the ONNX graph holds (an
        exported ``embedding_bag`` becomes a slow loop). The graph holds the fp16 lookup table and rounds each
        fp32 sum to fp16 before the mean, as ``forward`` does."""
        table = self.lookup_table()
        if table is None:
            return self._fp32_graph(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).float()
        summed = (table[input_ids].float() * mask).sum(1)
        return self._features(summed.half().float() / mask.sum(1).clamp(min=1.0))

    def _fp32_graph(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``graph_forward`` from the fp32 tables, this model's and its branch's."""
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        out = self.finish((self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        if self.branch is None:
            return out
        return torch.cat([out, self.branch._fp32_graph(input_ids, attention_mask)], -1)

    def _features(self, mean: torch.Tensor) -> torch.Tensor:
        """Features from the mean rows of the lookup table: each model's columns finished by its own model."""
        width = self.embedding.weight.shape[1]
        out = self.finish(mean[:, :width])
        return out if self.branch is None else torch.cat([out, self.branch.finish(mean[:, width:])], -1)

    def finish(self, pooled: torch.Tensor) -> torch.Tensor:
        """Mean vectors to features: unit length where ``normalize``, then the hidden layer where there is one."""
        pooled = nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled
        return self.hidden(pooled) if self.hidden is not None else pooled


class StaticBackbone(Backbone):
    """A static-embedding text encoder: ``tokenizers`` tokenizer (no special tokens) + ``StaticEmbeddings``.

    Example (a tiny random encoder distilled in seconds; a real one comes from ``warmstart distill`` or the
    backbone name ``static:all-MiniLM-L6-v2``):
        >>> from transformers import BertConfig, BertModel
        >>> from warmstart.backbones import get_backbone
        >>> teacher = get_backbone("all-MiniLM-L6-v2")
        >>> teacher.module = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        ...                                       intermediate_size=64, vocab_size=teacher.tokenizer.vocab_size))
        >>> bb = StaticBackbone.distill(teacher, pca_dims=16, progress=False)
        >>> bb.encode(["hello world", ""], progress=False).shape, bb.num_features
        ((2, 16), 16)
    """

    modality = "text"
    feature_kind = "fp16-lookup"  # features read the fp16 lookup table (``StaticEmbeddings``)
    inference_batch_size = (
        1024  # a lookup is cheap, a call is not: large batches when a trained model predicts
    )
    # the table's fine-tuning rate, chosen on TREC (docs/distill.md): 1e-2 .822, 3e-2 .824, 1e-3 .815
    tuning_lr = 1e-2
    # 8 epochs, not the 4 of a transformer (docs/distill.md): on the development collection (TREC, VADER nyt,
    # 20 Newsgroups; two seeds each) +0.4 points on average, +2.2 and +0.4 on the long texts, -0.2 at worst
    tuning_epochs = 8

    def __init__(
        self,
        vectors: torch.Tensor,
        tokenizer: Any,
        *,
        name: str,
        source: str,
        normalize: bool = True,
        max_length: int = 512,
        distilled_from: dict | None = None,
    ) -> None:
        # in evaluation mode, as every backbone starts: prediction reads the fp16 lookup table
        self.module = StaticEmbeddings(vectors, normalize, max_tokens=int(max_length)).eval()
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.name, self.source = name, source
        self.normalize, self.max_length = normalize, int(max_length)
        self.hidden_dim = 0
        self.num_features = int(vectors.shape[1])
        self.branch: dict | None = None  # the second model's shape (``add_branch``), None without one
        self.distilled_from = distilled_from or {}
        self._fingerprint = None

    def add_hidden_layer(self, hidden_dim: int, seed: int = 0) -> StaticBackbone:
        """Put one trainable hidden layer (``hidden_dim`` units, ReLU, seeded random start) after the pooled
        vectors; the features become its output. Returns self."""
        if hidden_dim < 1 or self.hidden_dim or self.branch:
            raise BackboneError(
                f"{self.name}: a hidden layer needs a size of at least 1 (got {hidden_dim}) and a static "
                f"backbone without one (this one has {self.hidden_dim}) and without a branch."
            )
        width = self.module.embedding.weight.shape[1]
        self.module.hidden = _hidden_layer(width, hidden_dim, seed).to(self.module.embedding.weight.device)
        self.hidden_dim = self.num_features = int(hidden_dim)
        self.invalidate_fingerprint()
        return self

    def keep_dims(self, dims: int) -> StaticBackbone:
        """Keep the table's first ``dims`` columns: the leading principal components, where the table was
        distilled with PCA (``distill``'s ``pca_dims``), so the same as distilling it to ``dims``. Before a
        hidden layer or a branch only. Returns self."""
        width = int(self.module.embedding.weight.shape[1])
        if self.hidden_dim or self.branch or not 1 <= int(dims) <= width:
            raise BackboneError(
                f"{self.name}: keep_dims takes 1 to {width} columns (got {dims}), before any hidden layer or "
                f"branch."
            )
        if int(dims) < width:
            kept = self.module.embedding.weight.detach()[:, : int(dims)].clone()
            self.module.embedding = nn.Embedding.from_pretrained(kept, freeze=False)
            self.num_features = int(dims)
            self.invalidate_fingerprint()
        return self

    def add_branch(self, other: StaticBackbone) -> StaticBackbone:
        """Put a copy of ``other`` (a static backbone with the same tokenizer and length, e.g. this one's table
        fine-tuned, with its hidden layer) beside this one: the features become this backbone's followed by
        ``other``'s, from one tokenization and one pass over the ids. A linear head on them is the sum of a
        head on each (how ``distill`` joins a probe and a fine-tuned student into one model). Returns self."""
        if not isinstance(other, StaticBackbone) or self.branch or other.branch:
            raise BackboneError(
                f"{self.name}: a branch is another static backbone, and neither may have one already."
            )
        mine, theirs = self.preprocess_config(), other.preprocess_config()
        for key in ("tokenizer", "max_length"):
            if mine[key] != theirs[key]:
                raise BackboneError(
                    f"{self.name} and {other.name} read texts differently ({key}: {mine[key]} against "
                    f"{theirs[key]}); a branch must read the same token ids."
                )
        self.module.branch = copy.deepcopy(other.module).to(self.module.embedding.weight.device)
        self.branch = {
            "width": int(other.module.embedding.weight.shape[1]),
            "normalize": bool(other.normalize),
            "hidden_dim": int(other.hidden_dim),
        }
        self.num_features += int(other.num_features)
        self.invalidate_fingerprint()
        return self

    def set_max_length(self, max_length: int | None) -> StaticBackbone:
        """Read at most ``max_length`` tokens of each text (None: leave it as it is). Returns self."""
        if max_length is not None:
            if int(max_length) < 1:
                raise BackboneError(f"{self.name}: max_length must be at least 1 token (got {max_length}).")
            self.max_length = self.module.max_tokens = int(max_length)
            self.invalidate_fingerprint()
        return self

    def invalidate_fingerprint(self) -> None:
        """After the weights changed in place: the fingerprint, and the fp16 lookup table, are made again."""
        super().invalidate_fingerprint()
        self.module._lookup = None

    # -- making one ---------------------------------------------------------------------------------------------
    @classmethod
    def distill(
        cls,
        teacher: Backbone,
        *,
        pca_dims: int | None = 256,
        sif_coefficient: float | None = 1e-4,
        name: str | None = None,
        progress: bool = True,
    ) -> StaticBackbone:
        """Distil ``teacher`` (a transformers text backbone, pretrained or fine-tuned) with model2vec: one
        forward pass per vocabulary token, PCA to ``pca_dims`` (None: keep the encoder's width), SIF weights
        (``sif_coefficient``; None: none). The teacher is not changed."""
        try:
            from model2vec.distill import distill_from_model
        except ImportError as e:
            raise BackboneError(
                f"a static-embedding backbone is distilled by the model2vec library, which is not installed "
                f"({e}). Install it with: {MODEL2VEC_INSTALL}"
            ) from e
        from transformers import PreTrainedModel

        module, tokenizer = getattr(teacher, "module", None), getattr(teacher, "tokenizer", None)
        if not isinstance(module, PreTrainedModel) or not hasattr(tokenizer, "backend_tokenizer"):
            raise BackboneError(
                f"{teacher.name!r}: a static student is distilled from a transformers text encoder with a fast "
                f"tokenizer; this backbone is a {type(module).__name__}. Use a transformer student instead "
                f"(--student all-MiniLM-L6-v2:num_layers=2, for example)."
            )
        if pca_dims is not None and pca_dims > teacher.num_features:
            raise BackboneError(
                f"pca_dims={pca_dims} is more than the {teacher.num_features} features of {teacher.name!r}; use "
                f"at most {teacher.num_features}, or pca_dims=None to keep them all."
            )
        # a copy (model2vec resizes the embeddings in place) on the teacher's device: one pass per vocabulary token
        # is minutes on a CPU for a base-size encoder
        device = teacher.device
        model = copy.deepcopy(module).float().to(device).eval()
        if hasattr(model, "st_dense"):
            del model.st_dense  # a sentence-transformers Dense layer is not part of the token states
        model.config._name_or_path = (
            ""  # model2vec would otherwise look the name up on the hub for a language
        )
        import os

        was = os.environ.get("TQDM_DISABLE")
        if not progress:
            os.environ["TQDM_DISABLE"] = "1"
        try:
            with torch.inference_mode(False):
                static = distill_from_model(
                    model,
                    tokenizer,
                    device=str(device),
                    pca_dims=pca_dims,
                    sif_coefficient=sif_coefficient,
                    quantize_to="float32",
                    pooling=_pooling_for(teacher),
                )
        finally:
            if was is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = was
        vectors = torch.from_numpy(np.asarray(static.embedding, dtype=np.float32).copy())
        label = name or f"static:{teacher.name}"
        return cls(
            vectors,
            static.tokenizer,
            name=label,
            source=label,
            max_length=int(getattr(teacher, "max_length", 512) or 512),
            distilled_from={
                **teacher.reference(),
                "pca_dims": pca_dims,
                "sif_coefficient": sif_coefficient,
                "model2vec": _version("model2vec"),
            },
        )

    # -- the backbone contract ----------------------------------------------------------------------------------
    def preprocess_config(self) -> dict:
        if not hasattr(self, "_tok_hash"):
            state = json.loads(self.tokenizer.to_str())
            spec = json.dumps(
                {k: v for k, v in state.items() if k not in ("truncation", "padding")}, sort_keys=True
            )
            self._tok_hash = hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()
        return {
            "kind": "static-text",
            "max_length": self.max_length,
            "normalize": self.normalize,
            "tokenizer": self._tok_hash,
            **({"hidden_dim": self.hidden_dim} if self.hidden_dim else {}),
            **({"branch": self.branch} if self.branch else {}),
        }

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids without special tokens, cut to ``max_length``.

        The tokenizer is most of a static model's time, so long texts are not tokenized whole only to keep their
        first ``max_length`` tokens: where no token can span a space (``_prefix_safe``), each text is tokenized
        a piece at a time, cut at a space, until it has ``max_length`` tokens or ends: the same ids as the whole
        text's first ``max_length`` (a test checks), from a fraction of the characters."""
        if not texts:
            return []
        limit = self.max_length
        if not self._prefix_safe():
            enc = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
            return [e.ids[:limit] for e in enc]
        ids: list[list[int]] = [[] for _ in texts]
        self._extend_by_pieces(ids, [str(t) for t in texts])
        return [x[:limit] for x in ids]

    def _extend_by_pieces(self, ids: list[list[int]], rest: list[str]) -> None:
        """Extend each ``ids[i]`` by the tokens of ``rest[i]``, a piece cut at a space at a time, until it holds
        ``max_length`` tokens or the text ends (``tokenize``; ``_prefix_safe`` tokenizers only)."""
        cache = self._word_cache()
        limit = self.max_length
        piece = PIECE_CHARS_PER_TOKEN * limit
        todo = [i for i in range(len(rest)) if len(ids[i]) < limit and rest[i]]
        while todo:
            heads = []
            for i in todo:
                head, rest[i] = _split_at_space(rest[i], piece)
                heads.append(head)
            if cache is not None:
                for i, got in zip(todo, cache.ids(heads, limit), strict=True):
                    ids[i].extend(got)
            else:
                enc = self.tokenizer.encode_batch_fast(heads, add_special_tokens=False)
                for i, e in zip(todo, enc, strict=True):
                    ids[i].extend(e.ids)
            todo = [i for i in todo if len(ids[i]) < limit and rest[i]]

    def tokenize_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``tokenize``'s ids, all texts' end to end in one array, and each text's length (what ``encode_flat``
        reads): with the word cache, straight from its arrays (``WordPieceCache.flat_ids``, in as many threads as
        torch uses) for every text whose first piece holds ``max_length`` tokens or all of it; long texts then go
        on a piece at a time from there, as in ``tokenize``."""
        texts = [str(t) for t in texts]
        cache = self._word_cache() if self._prefix_safe() else None
        if cache is None:
            return flatten(self.tokenize(texts))
        limit = self.max_length
        heads, rests = [], []
        for text in texts:
            head, rest = _split_at_space(text, PIECE_CHARS_PER_TOKEN * limit)
            heads.append(head)
            rests.append(rest)
        flat, lengths = cache.flat_ids(heads, limit, threads=torch.get_num_threads())
        more = [int(i) for i in np.flatnonzero(lengths < limit) if rests[i]]
        if not more:
            return flat, lengths
        starts = np.cumsum(lengths) - lengths
        ids = [flat[starts[i] : starts[i] + lengths[i]].tolist() for i in more]  # long texts go on from there
        self._extend_by_pieces(ids, [rests[i] for i in more])
        return splice(flat, lengths, {i: got[:limit] for i, got in zip(more, ids, strict=True)})

    def _word_cache(self) -> WordPieceCache | None:
        """A BERT-style tokenizer's ids a word at a time from a cache (``wordpiece_cache``: the same ids, a
        fraction of the time once the words repeat); None for other tokenizers."""
        if not hasattr(self, "_words"):
            state = json.loads(self.tokenizer.to_str())
            self._words = WordPieceCache(self.tokenizer) if WordPieceCache.supports(state) else None
        return self._words

    def _prefix_safe(self) -> bool:
        """Whether tokenizing a text in pieces cut at ASCII spaces gives the whole text's tokens: the
        pre-tokenizer splits at whitespace (so no token spans one) and the normalizer acts on each character
        alone. Other tokenizers (byte-level BPE, Metaspace, anything unknown) tokenize whole texts."""
        if not hasattr(self, "_prefix_ok"):
            state = json.loads(self.tokenizer.to_str())
            pre, norm = state.get("pre_tokenizer") or {}, state.get("normalizer")
            local = {"BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"}
            norms = (norm.get("normalizers") or []) if norm and norm.get("type") == "Sequence" else [norm]
            self._prefix_ok = pre.get("type") in (
                "BertPreTokenizer",
                "Whitespace",
                "WhitespaceSplit",
            ) and all(n is None or n.get("type") in local for n in norms)
        return self._prefix_ok

    def collate(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """The rows' ids end to end in one flat tensor (``token_ids``) and each row's length: the mean needs no
        padding, so none is made (padding, and masking it away again, took a quarter of a trained static
        model's prediction time on Reuters R8). The exported graph's padded form: ``graph_args``."""
        flat, lengths = flatten(ids)
        return {"token_ids": torch.from_numpy(flat), "lengths": torch.from_numpy(lengths)}

    def forward_features(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.module(token_ids, lengths)

    def batch_source(self, data: Any) -> StaticBatchSource:
        """Texts tokenized once, into one flat array (``tokenize_flat``). Training batches are shuffled without
        grouping by length: the mean skips padding, so grouping saves nothing and only makes batches less random
        (students trained on plain shuffles: +0.21 points over ten development data set and seed pairs, +0.45
        on 20 Newsgroups; docs/distill.md)."""
        texts = data.inputs if hasattr(data, "inputs") else data
        if hasattr(texts, "select"):  # read from their file (``data.stream``): tokenized a chunk at a time
            from ..data.stream import taken_chunks

            parts = [self.tokenize_flat(chunk) for chunk in taken_chunks(texts)]
            flat = np.concatenate([f for f, _ in parts]) if parts else np.zeros(0, np.int64)
            lengths = np.concatenate([n for _, n in parts]) if parts else np.zeros(0, np.int64)
            return StaticBatchSource(self, (flat, lengths))
        return StaticBatchSource(self, [str(t) for t in texts])

    def encode(
        self, inputs: Any, *, batch_size: int | None = None, progress: bool = True, precision: str = "fp32"
    ) -> np.ndarray:
        """Features of ``inputs`` in fp32, from the fp16 lookup table (``StaticEmbeddings``) whatever
        ``precision`` says (accepted for the common signature): one ``embedding_bag`` over batches of 4,096
        rows."""
        texts = [str(t) for t in (inputs.inputs if hasattr(inputs, "inputs") else inputs)]
        step = batch_size or 4096
        parts = [
            self.encode_flat(*self.tokenize_flat(texts[s : s + step])) for s in range(0, len(texts), step)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_features), dtype=np.float32)

    def encode_flat(self, flat: np.ndarray, lengths: np.ndarray, counts: Any = None) -> np.ndarray:
        """Features, in fp32, of rows already tokenized and flattened (``ragged.flatten``): for a caller that needs the
        ids too (a probe with ``lexical="pieces"`` counts them, and passes ``counts``: ``lexical.count_flat`` of
        the same rows) and should not tokenize twice.

        Each row's distinct ids are read once, weighted by their counts: the same sums as reading every token
        (``forward``) in another order, so equal up to their rounding to fp16, in fewer reads of the table (a BBC
        news article holds each of its ids twice on average)."""
        if counts is None:
            from ..lexical import count_flat

            counts = count_flat(flat, lengths)
        device = self.module.embedding.weight.device

        def tensor(values: np.ndarray, dtype: Any = np.int64) -> torch.Tensor:
            return torch.from_numpy(np.asarray(values, dtype=dtype)).to(device)

        with torch.inference_mode():
            pooled = self.module.forward_counts(
                tensor(counts.indices),
                tensor(counts.indptr[:-1]),
                tensor(counts.data, np.float32),
                tensor(lengths),
            )
            return pooled.float().cpu().numpy()

    def layer_groups(self) -> list[list[str]]:
        groups = [["embedding.weight"]]
        if self.hidden_dim:
            groups.append([n for n, _ in self.module.named_parameters() if n.startswith("hidden.")])
        if self.branch:
            groups.append([n for n, _ in self.module.named_parameters() if n.startswith("branch.")])
        return groups

    def reset_parameters(self, seed: int) -> None:
        """Random vectors of the same scale as the distilled ones (the from-scratch control)."""
        g = torch.Generator().manual_seed(seed)
        tables = [self.module.embedding.weight]
        if self.module.branch is not None:
            tables.append(self.module.branch.embedding.weight)
        with torch.no_grad():
            for w in tables:
                w.copy_(torch.randn(w.shape, generator=g) * float(w.std()))
        self.has_source_classifier = False
        self.invalidate_fingerprint()

    # -- the exported graph (export.py) -------------------------------------------------------------------------
    def export_example(self) -> tuple[tuple[torch.Tensor, ...], list[str], dict]:
        ids = torch.ones((2, 8), dtype=torch.long)
        mask = torch.ones((2, 8), dtype=torch.long)
        mask[1, 5:] = 0
        names = ["input_ids", "attention_mask"]
        return (ids, mask), names, {n: {0: "batch", 1: "tokens"} for n in names}

    def graph_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.module.graph_forward(input_ids, attention_mask)

    def graph_args(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """A collated batch as the graph's inputs: ids padded to the longest row with 0, and the mask (an empty
        text keeps one masked position)."""
        lengths = batch["lengths"]
        longest = max(1, int(lengths.max()) if len(lengths) else 1)
        mask = torch.arange(longest, device=lengths.device) < lengths[:, None]
        input_ids = torch.zeros(mask.shape, dtype=torch.long, device=lengths.device)
        input_ids[mask] = batch["token_ids"].long()
        return (input_ids, mask.long())

    def export_preprocessing(self, folder: Path) -> dict:
        (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(folder / "tokenizer" / "tokenizer.json"))
        return {
            "modality": "text",
            "inputs": ["input_ids", "attention_mask"],
            "tokenizer": "tokenizer/tokenizer.json",
            "max_length": self.max_length,
            "pad_id": 0,
            "truncation": "right, to max_length tokens; the tokenizer adds no special tokens",
        }

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(tensors, str(folder / "model.safetensors"))
        self.tokenizer.save(str(folder / "tokenizer.json"))
        meta = {
            "kind": "static-text",
            "name": self.name,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "distilled_from": self.distilled_from,
            "hidden_dim": self.hidden_dim,
            **({"branch": self.branch} if self.branch else {}),
        }
        (folder / "warmstart_backbone.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load_saved(cls, folder: Path, meta: dict, **kwargs: Any) -> StaticBackbone:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        if kwargs:
            raise BackboneError(
                f"{folder}: a static-embedding backbone takes no options; got {sorted(kwargs)}."
            )
        for need in ("model.safetensors", "tokenizer.json"):
            if not (folder / need).is_file():
                raise BackboneError(
                    f"{folder}: a static-embedding backbone folder needs {need}, which is missing."
                )
        tensors = load_file(str(folder / "model.safetensors"))
        bb = cls(
            tensors["embedding.weight"],
            Tokenizer.from_file(str(folder / "tokenizer.json")),
            name=meta.get("name", str(folder)),
            source=str(folder),
            normalize=bool(meta.get("normalize", True)),
            max_length=int(meta.get("max_length", 512)),
            distilled_from=meta.get("distilled_from"),
        )
        if meta.get("hidden_dim"):  # the layer's shape; its saved weights below
            bb.add_hidden_layer(int(meta["hidden_dim"]))
        if meta.get("branch"):  # the second model's shape, from the first's
            b = meta["branch"]
            if "branch.embedding.weight" not in tensors:
                raise BackboneError(
                    f"{folder}: warmstart_backbone.json describes a branch, but model.safetensors holds no "
                    f"branch.embedding.weight; the folder is damaged: save the model again."
                )
            other = cls(
                tensors["branch.embedding.weight"],
                bb.tokenizer,
                name=f"{bb.name} (branch)",
                source=str(folder),
                normalize=bool(b.get("normalize", True)),
                max_length=bb.max_length,
            )
            if b.get("hidden_dim"):
                other.add_hidden_layer(int(b["hidden_dim"]))
            bb.add_branch(other)
        if meta.get("hidden_dim") or meta.get("branch"):
            bb.module.load_state_dict(tensors)
            bb.invalidate_fingerprint()
        return bb


class StaticBatchSource(BatchSource):
    """A static backbone's rows: all their ids in one array, tokenized once (``tokenize_flat``); a batch is the
    chosen rows' ids gathered end to end, with their lengths (``StaticBackbone.collate``'s form), without a
    Python list per row."""

    pool_by_length = False

    def __init__(self, backbone: StaticBackbone, texts: list[str] | tuple[np.ndarray, np.ndarray]) -> None:
        """``texts``, or what ``tokenize_flat`` made of them (ids end to end, each text's length)."""
        self.backbone = backbone
        if isinstance(texts, tuple):
            self.flat, self.lengths = texts
        else:
            self.flat, self.lengths = backbone.tokenize_flat(texts) if texts else (np.zeros(0, np.int64),) * 2
        self.starts = np.cumsum(self.lengths) - self.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        token_ids = gather(self.flat, self.starts[indices], lengths)
        return {"token_ids": torch.from_numpy(token_ids), "lengths": torch.from_numpy(lengths)}


# characters per piece for each token still wanted: English averages 4 to 5 characters a token, so most texts take
# one piece, and a second where the first fell short
PIECE_CHARS_PER_TOKEN = 6
_CUTS = (" ", "\n", "\t")


def _split_at_space(text: str, size: int) -> tuple[str, str]:
    """``text`` cut at its last ASCII space, newline or tab within ``size`` characters (at the first one after,
    where there is none before): the head, and the rest, which starts with that space. A text of ``size``
    characters or fewer, or with no such character after the start, is all head."""
    if len(text) <= size:
        return text, ""
    cut = max(text.rfind(c, 1, size + 1) for c in _CUTS)
    if cut <= 0:
        after = [k for k in (text.find(c, size) for c in _CUTS) if k > 0]
        if not after:
            return text, ""
        cut = min(after)
    return text[:cut], text[cut:]


def _hidden_layer(width: int, hidden_dim: int, seed: int) -> nn.Module:
    """One hidden layer, ``width`` to ``hidden_dim`` units and ReLU, from a seeded random start (nn.Linear's own
    initial range)."""
    layer = nn.Linear(width, hidden_dim)
    g = torch.Generator().manual_seed(seed)
    bound = 1 / width**0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=g)
        layer.bias.uniform_(-bound, bound, generator=g)
    return nn.Sequential(layer, nn.ReLU())


def _pooling_for(teacher: Backbone) -> str:
    """model2vec's pooling for one token's states: the teacher's own where model2vec has it (mean or CLS)."""
    return "first" if getattr(teacher, "pooling", "mean") == "cls" else "mean"


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def static_backbone(
    teacher: Backbone, teacher_spec: str, pca_dims: int | str | None = 256, progress: bool = True
) -> StaticBackbone:
    """``static:NAME``: the static backbone distilled from ``teacher`` (the backbone ``NAME``), made once and kept
    under the warmstart home by the teacher's fingerprint and the settings."""
    import os
    import shutil

    from .._io import warmstart_home

    dims = (
        None if pca_dims is None or str(pca_dims).lower() == "none" else int(pca_dims)
    )  # "none": from a name
    key = hashlib.blake2b(f"{teacher.fingerprint()}|{dims}|1e-4".encode(), digest_size=10).hexdigest()
    folder = warmstart_home() / "static" / key
    name = f"static:{teacher_spec}" + (f":pca_dims={pca_dims}" if dims != 256 else "")
    meta_path = folder / "warmstart_backbone.json"
    if meta_path.is_file():
        bb = StaticBackbone.load_saved(folder, json.loads(meta_path.read_text()))
    else:
        bb = StaticBackbone.distill(teacher, pca_dims=dims, name=name, progress=progress)
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        bb.save(tmp)
        try:
            tmp.rename(folder)  # atomic: a half-written folder is never found
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    bb.name = bb.source = name
    return bb
