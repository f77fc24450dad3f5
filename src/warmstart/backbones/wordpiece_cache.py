"""Token ids of a BERT-style WordPiece tokenizer, a word at a time from a cache.

A static model's whole cost is the tokenizer (the lookup and mean after it take a few microseconds), and a
BERT-style tokenizer cuts a text into words first and then each word into pieces on its own. So a word's ids
never depend on the words around it, and texts repeat words: after the first few hundred texts almost every word
has been seen. ``WordPieceCache`` keeps each word's ids and tokenizes a text as a regular-expression split into
words plus one dictionary lookup per word; only words it has not seen go to the ``tokenizers`` library, in one
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

_ASCII_UNSAFE = re.compile(r"[^\x20-\x7e\t\n\r]")

# words kept at most; past it the cache starts again (a bound on memory for endless streams of new words)
MAX_WORDS = 500_000


class WordPieceCache:
    """``ids(texts, limit)``: each text's token ids without special tokens, cut to ``limit``; the same as
    ``tokenizer.encode_batch_fast(texts, add_special_tokens=False)`` cut to ``limit``."""

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
        self.words: dict[str, list[int]] = {}
        self.chars = _CharTable(tokenizer)

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
        """Token ids of each text, cut to ``limit``: dictionary lookups for texts whose words were all seen, one
        library call for the words not seen yet, one for the texts only the library tokenizes exactly."""
        if len(self.words) > MAX_WORDS:
            self.words = {}
        words = self.words
        out: list[list[int] | None] = [None] * len(texts)
        whole: list[int] = []  # texts only the library tokenizes exactly
        split: dict[int, list[str]] = {}  # texts with words not seen yet
        for i, text in enumerate(texts):
            found = self.split(text)
            if found is None:
                whole.append(i)
                continue
            try:
                out[i] = list(itertools.chain.from_iterable([words[w] for w in found]))[:limit]
            except KeyError:
                split[i] = found
        if split:
            new = list({w for found in split.values() for w in found if w not in words})
            for w, enc in zip(
                new, self.tokenizer.encode_batch_fast(new, add_special_tokens=False), strict=True
            ):
                words[w] = enc.ids
            for i, found in split.items():
                out[i] = list(itertools.chain.from_iterable([words[w] for w in found]))[:limit]
        if whole:
            enc = self.tokenizer.encode_batch_fast([texts[i] for i in whole], add_special_tokens=False)
            for i, e in zip(whole, enc, strict=True):
                out[i] = e.ids[:limit]
        return out  # type: ignore[return-value]


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
