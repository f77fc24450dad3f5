"""Shared fixtures: tiny in-code models and synthetic data, so the suite runs in minutes on 2 cores."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

CLASS_WORDS = {
    "sports": ["ball", "goal", "team", "match", "coach", "score", "league", "player"],
    "tech": ["code", "chip", "laptop", "server", "software", "network", "robot", "pixel"],
    "food": ["bread", "soup", "cheese", "apple", "pasta", "spice", "dinner", "sugar"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "was", "today", "very", "new", "big", "we", "they", "it"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own feature cache and conversion cache."""
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path_factory.mktemp("wshome")))


def make_sentences(n_per_class: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in CLASS_WORDS.items():
        for _ in range(n_per_class):
            n = int(rng.integers(2, 7))
            toks = list(rng.choice(FILLER, n)) + list(rng.choice(words, int(rng.integers(3, 6))))
            rng.shuffle(toks)
            texts.append(" ".join(toks))
            labels.append(label)
    return texts, labels


def save_tiny_tokenizer(folder: Path) -> int:
    """The tiny WordPiece tokenizer over this file's words, saved into ``folder``; returns its vocabulary size."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + FILLER
        + sorted({w for ws in CLASS_WORDS.values() for w in ws})
        + list("abcdefghijklmnopqrstuvwxyz")
    )
    folder.mkdir(parents=True, exist_ok=True)
    wp = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=wp,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tok.save_pretrained(folder)
    return len(vocab)


def _build_tiny_bert(folder: Path, seed: int = 0, dropout: float = 0.1) -> Path:
    from transformers import BertConfig, BertModel

    vocab_size = save_tiny_tokenizer(folder)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with its own WordPiece vocab, saved as an ordinary transformers folder."""
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_dir_b(tmp_path_factory) -> Path:
    """Same architecture as tiny_bert_dir, different random weights."""
    return _build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-b"), seed=1)


@pytest.fixture
def text_data():
    from warmstart.data import Dataset

    texts, labels = make_sentences(40, seed=0)
    return Dataset(texts, labels, "text", "synthetic")


@pytest.fixture
def text_test():
    from warmstart.data import Dataset

    texts, labels = make_sentences(10, seed=1)
    return Dataset(texts, labels, "text", "synthetic-test")


def make_images(n_per_class: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three visually distinct classes: bright left half, bright right half, horizontal stripes."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for label in ("left", "right", "stripes"):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.int32)
            if label == "left":
                img[:, : size // 2] += 180
            elif label == "right":
                img[:, size // 2 :] += 180
            else:
                img[::4] += 180
            imgs.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(imgs), labels


@pytest.fixture
def tiny_image_backbone():
    """EfficientNet-Lite cut after 3 blocks, random weights, 32 px input: the real code path, tiny cost."""
    from warmstart.backbones import EfficientNetLite, EfficientNetLiteBackbone

    torch.manual_seed(0)
    model = EfficientNetLite(num_blocks=3, head_channels=64)
    return EfficientNetLiteBackbone(model, name="tiny-lite", source="tiny-lite", image_size=32)


@contextlib.contextmanager
def python_sigint():
    """Python's own SIGINT handler for the block, as in a terminal. A process started in the background of a
    non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt (nor does the
    training loop take over SIGINT), so tests of Ctrl-C set the handler themselves."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_at_step(n: int, times: int = 1):
    """Ctrl-C as the user gives it: a real SIGINT (``times`` of them) delivered inside the training loop's ``n``-th
    optimizer step, after the weights moved and before the step is counted. The loop acts on it at that step's
    boundary (a second one stops it at once)."""
    from warmstart.techniques import train as loop

    real, calls = loop._Loop._optimizer_step, []

    def step(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)

    with python_sigint(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop._Loop, "_optimizer_step", step)
        yield
