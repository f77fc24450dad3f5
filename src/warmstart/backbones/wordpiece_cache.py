"""Token ids of a BERT-style WordPiece tokenizer, a word at a time from a cache.

A static model's whole cost is the tokenizer (the lookup and mean after it take a few microseconds), and a
BERT-style tokenizer cuts a text into words first and then each word into pieces on its own. So a word's ids
never depend on the words around it, and texts repeat words: after the first few hundred texts almost every word
has been seen. ``WordPieceCache`` keeps each word's ids and tokenizes a text as a split into words plus one
dictionary lookup per word; only words it has not seen go to the ``tokenizers`` library, in one
batch. The ids are exactly the library's (a test compares them on real and random texts), and a text the split
cannot reproduce exactly goes to the library whole:

- the tokenizer must be ``BertNormalizer`` (``clean_text`` on) + ``BertPreTokenizer`` + ``WordPiece``
  (``WordPieceCache.supports``); anything else is not served by this module;
- a text of printable ASCII (plus tab, newline, carriage return) is lowercased where the normaliser lowercases
  and cut at whitespace (``str.split``, in C: several times faster than a regular expression that also cuts
  off punctuation). Each piece, a word with any punctuation attached (``said,`` or ``don't``), is a key of its
  own, whose ids are the library's for that piece alone: the pre-tokenizer splits a piece's punctuation
  without looking past the whitespace around it, so they are the text's ids there;
- any other text goes through a character table (``str.translate``): each character maps to what the library's
  normaliser makes of it, with spaces around it where the library's pre-tokenizer splits there (punctuation,
  asked of the library one character at a time, in context), and the result is cut at spaces. The table is
  filled the first time a character is met. A character whose normal form holds anything else Python counts as
  whitespace sends its text whole to the library;
- a text holding an added token's content (``[UNK]``, ``[MASK]``, ...; compared ignoring case) goes whole to the
  library, which would match it as one token. Where every added token starts with a character without case
  (BERT's all start with ``[``), only texts holding one of those characters are searched for them.

Tokenizing a character alone must give what it gives in a text: true of ``BertNormalizer`` (it cleans, pads CJK
characters, strips accents and lowercases character by character), and checked by the tests on fuzzed text.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np

from ..ragged import flatten, gather, splice, split

_ASCII_UNSAFE = re.compile(r"[^\x20-\x7e\t\n\r]")

# words kept at most; past it the cache starts again (a bound on memory for endless streams of new words)
MAX_WORDS = 500_000


class WordPieceCache:
    """``ids(texts, limit)``: each text's token ids without special tokens, cut to ``limit``; the same as
    ``tokenizer.encode_batch_fast(texts, add_special_tokens=False)`` cut to ``limit``. ``flat_ids``: the same
    ids end to end in one array, with each text's length.

    The words are kept as numbers: each known word has a code, and its ids are a slice of one array (``_pool``,
    from ``_start[code]``, ``_len[code]`` long). A batch of texts is then one lookup of its words' codes (C-level
    ``map`` over a dictionary) and array arithmetic, with no Python work per word or per id."""

    def __init__(self, tokenizer: Any) -> None:
        state = json.loads(tokenizer.to_str())
        if not self.supports(state):
            raise ValueError("WordPieceCache serves BertNormalizer + BertPreTokenizer + WordPiece tokenizers")
        self.tokenizer = tokenizer
        self.lowercase = bool(state["normalizer"].get("lowercase", True))
        added = [t["content"] for t in state.get("added_tokens") or [] if t.get("content")]
        self.added = re.compile("|".join(map(re.escape, added)), re.IGNORECASE) if added else None
        firsts = {t[0] for t in added}
        # texts without one of these characters hold no added token (None: search every text)
        self.added_firsts = firsts if all(_caseless(c) for c in firsts) else None
        self.chars = _CharTable(tokenizer)
        self._reset()

    def _reset(self) -> None:
        self.code: dict[str, int] = {}
        self._pool = np.zeros(1024, dtype=np.int64)  # every known word's ids end to end (grown by doubling)
        self._pool_used = 0
        self._start = np.zeros(256, dtype=np.int64)  # where each code's ids start in _pool
        self._len = np.zeros(256, dtype=np.int64)  # how many ids each code has

    def _learn(self, words: list[str]) -> None:
        """Ask the library for the ids of ``words`` (new ones, distinct) and give each a code."""
        encoded = [e.ids for e in self.tokenizer.encode_batch_fast(words, add_special_tokens=False)]
        n_old, n_new = len(self.code), len(words)
        ids, lens = flatten(encoded)
        self._pool = _room(self._pool, self._pool_used + len(ids))
        self._start, self._len = _room(self._start, n_old + n_new), _room(self._len, n_old + n_new)
        self._pool[self._pool_used : self._pool_used + len(ids)] = ids
        self._start[n_old : n_old + n_new] = self._pool_used + np.cumsum(lens) - lens
        self._len[n_old : n_old + n_new] = lens
        self._pool_used += len(ids)
        self.code.update(zip(words, range(n_old, n_old + n_new), strict=True))

    @staticmethod
    def supports(state: dict) -> bool:
        """Whether a tokenizer (its ``to_str()`` state) is one this cache reproduces exactly."""
        norm, pre, model = (
            state.get("normalizer") or {},
            state.get("pre_tokenizer") or {},
            state.get("model") or {},
        )
        return (
            norm.get("type") == "BertNormalizer"
            and norm.get("clean_text", True)
            and pre.get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"
        )

    def split(self, text: str) -> list[str] | None:
        """The normalised pieces of ``text`` (words, or in ASCII text words with their punctuation attached),
        each tokenized alone as in the text; or None where only the library tokenizes it exactly."""
        firsts = self.added_firsts
        if self.added is not None and (firsts is None or any(c in text for c in firsts)):
            if self.added.search(text):
                return None
        if _ASCII_UNSAFE.search(text) is None:
            return (text.lower() if self.lowercase else text).split()
        text = text.translate(self.chars)
        return None if UNSAFE in text else text.split()

    def ids(self, texts: list[str], limit: int) -> list[list[int]]:
        """Token ids of each text, cut to ``limit`` (``flat_ids`` as one list per text)."""
        return split(*self.flat_ids(texts, limit))

    def flat_ids(self, texts: list[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        """All texts' token ids end to end, each text's cut to ``limit``, and each text's length: the codes of
        the words of texts the split serves (a text's first ``limit`` words: each is a token or more), the words
        not seen yet learned from the library in one batch, the ids gathered from the pool by array arithmetic;
        texts only the library tokenizes exactly go to it whole."""
        if len(self.code) > MAX_WORDS:
            self._reset()
        n = len(texts)
        found: list[Any] = [()] * n
        whole: list[int] = []  # texts only the library tokenizes exactly
        for i, text in enumerate(texts):
            pieces = self.split(text)
            if pieces is None:
                whole.append(i)
            else:
                found[i] = pieces[:limit] if len(pieces) > limit else pieces
        counts = np.fromiter(map(len, found), dtype=np.int64, count=n)
        words = list(itertools.chain.from_iterable(found))
        try:  # once the words are known (nearly always after the first batches): one lookup each
            codes = np.fromiter(map(self.code.__getitem__, words), dtype=np.int64, count=len(words))
        except KeyError:
            known = self.code
            self._learn([w for w in dict.fromkeys(words) if w not in known])
            codes = np.fromiter(map(known.__getitem__, words), dtype=np.int64, count=len(words))
        flat, lengths = self._gather(codes, counts, limit)
        if whole:  # rare: the library's ids spliced in
            enc = self.tokenizer.encode_batch_fast([texts[i] for i in whole], add_special_tokens=False)
            flat, lengths = splice(flat, lengths, {i: e.ids[:limit] for i, e in zip(whole, enc, strict=True)})
        return flat, lengths

    def _gather(self, codes: np.ndarray, counts: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids of words ``codes`` (``counts[i]`` of them for row ``i``, in order), each row cut to ``limit``."""
        n = len(counts)
        sizes, starts = self._len[codes], self._start[codes]
        row = np.repeat(np.arange(n), counts)
        before = np.cumsum(sizes) - sizes  # ids before each word, over all rows
        first = np.cumsum(counts) - counts  # each row's first word
        base = np.zeros(n, dtype=np.int64)
        has = counts > 0
        base[has] = before[first[has]]
        take = np.clip(limit - (before - base[row]), 0, sizes)  # a row's last word may be cut short
        lengths = np.bincount(row, weights=take, minlength=n).astype(np.int64)
        return gather(self._pool, starts, take), lengths


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """``array``, or a copy at least twice as long, so that ``size`` entries fit."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


UNSAFE = "\x00"  # what the character table maps a character to when only the library splits its text exactly


def _caseless(c: str) -> bool:
    """Whether no other character matches ``c`` when case is ignored: true of characters without case."""
    return c.lower() == c == c.upper() == c.casefold() and not c.isalpha()


class _CharTable(dict):
    """``str.translate``'s table: a character's code -> its normal form, padded with spaces where the
    pre-tokenizer splits around it ("" where the normaliser drops it, " " for whitespace); ``UNSAFE`` where the
    normal form holds a character that Python's ``str.split`` would cut at but the library keeps. Filled by
    asking the library the first time a character is met."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.normalizer, self.pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer

    def __missing__(self, code: int) -> str:
        normal = self.normalizer.normalize_str(chr(code))
        if normal:
            pieces = [p for p, _ in self.pre_tokenizer.pre_tokenize_str(f"a{normal}a")]
            if pieces == [f"a{normal}a"]:  # part of the word around it
                mapped = UNSAFE if any(c.isspace() for c in normal) else normal
            elif pieces[0] == "a" and pieces[-1] == "a":  # a word of its own, or a gap between words
                mapped = " " + " ".join(pieces[1:-1]) + " "
            else:  # part of it joins the word before or after: not one kind of character
                mapped = UNSAFE
        else:
            mapped = ""
        self[code] = mapped
        return mapped
