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
- an ASCII text is lowercased where the normaliser lowercases and cut at whitespace. Each piece, a word with any
  punctuation attached (``said,`` or ``don't``), is a key of its own, whose ids are the library's for that piece
  alone: the pre-tokenizer splits a piece's punctuation without looking past the whitespace around it, so they
  are the text's ids there;
- in any other text (and an ASCII one with a control character), each run of characters other than printable
  ASCII, tab, newline and carriage return goes through a character table (``str.translate``): each character
  maps to what the library's normaliser makes of it, with spaces around it where the library's pre-tokenizer
  splits there (punctuation, asked of the library one character at a time, in context), and the text is cut
  like an ASCII one (its ASCII letters lowercased; the table's forms are the normaliser's already). The table
  is filled the first time a character is met. A character whose normal form holds anything else Python counts
  as whitespace, or a control character, sends its text whole to the library;
- a text holding an added token's content (``[UNK]``, ``[MASK]``, ...; compared ignoring case) goes whole to the
  library, which would match it as one token. Where every added token starts with a character without case
  (BERT's all start with ``[``), only texts holding one of those characters are searched for them.

Tokenizing a character alone must give what it gives in a text: true of ``BertNormalizer`` (it cleans, pads CJK
characters, strips accents and lowercases character by character), and checked by the tests on fuzzed text.

The split and the lookup run on a batch's bytes at once (numpy), not a Python call per word: the batch's normalised
texts are joined into one UTF-8 buffer, the pieces are the runs of bytes between whitespace bytes (UTF-8 never
uses a byte under 128 inside a longer character, and a normalised text holds no whitespace but ASCII's), and each
piece of at most ``KEY_BYTES`` bytes is read as a fixed-width key (its bytes, zero-padded) and found in a hash
table of the known pieces' keys (``_SlotTable``). A key is the piece's bytes themselves, compared whole, so a match
is exact; longer pieces, and any piece the table does not hold, are decoded and looked up in the dictionary.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..parallel import even_runs, thread_map
from ..ragged import flatten, splice, split

# A normalised buffer holds no byte under 32 but whitespace (9 to 13, 28 to 31: what Python's ``str.split`` cuts
# at there): every other one is a control character, which the character table maps, and the table's forms hold
# none (``_CharTable``). So its whitespace bytes are those up to 32 (the space), one comparison each.
SPACE_MAX = 32

# pieces of up to this many bytes are found by their bytes in a hash table (two 64-bit numbers each); longer ones
# in the dictionary
KEY_BYTES = 16

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
        self._runs: dict[bytes, bytes] = {}  # runs of bytes the table maps -> what they map to, as bytes
        self._reset()

    def _reset(self) -> None:
        self.code: dict[str, int] = {}
        self._pool = np.zeros(1024, dtype=np.int32)  # every known word's ids end to end (grown by doubling)
        self._pool_used = 0
        self._start = np.zeros(256, dtype=np.int64)  # where each code's ids start in _pool
        self._len = np.zeros(256, dtype=np.int64)  # how many ids each code has
        # the known pieces of up to KEY_BYTES bytes: a hash table with linear probing, by key (its two halves);
        # code -1 where a slot is free
        self._slots = _SlotTable(1 << 12)

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
        """The normalised pieces of ``text`` (words, or words with their punctuation attached), each tokenized
        alone as in the text; or None where only the library tokenizes it exactly."""
        if self._holds_added(text):
            return None
        buf, _ = self._normalised([text.encode()])
        return None if buf is None else buf.decode().split()

    def _holds_added(self, text: str) -> bool:
        """Whether ``text`` holds an added token's content (searched only where it holds a first character)."""
        firsts = self.added_firsts
        if self.added is None or (firsts is not None and not any(c in text for c in firsts)):
            return False
        return self.added.search(text) is not None

    def ids(self, texts: list[str], limit: int) -> list[list[int]]:
        """Token ids of each text, cut to ``limit`` (``flat_ids`` as one list per text)."""
        return split(*self.flat_ids(texts, limit))

    def flat_ids(self, texts: list[str], limit: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """All texts' token ids end to end, each text's cut to ``limit``, and each text's length: the texts the
        split serves normalised and joined into one buffer of bytes, cut into pieces at whitespace bytes (a
        text's first ``limit``: each is a token or more), each piece's code found by its key, the ids gathered
        from the pool by array arithmetic; texts only the library tokenizes exactly go to it whole.

        With ``threads`` > 1 a large batch is cut into that many parts, split, looked up and gathered in threads
        (numpy leaves the interpreter's lock while it works on arrays); words not seen yet are learned in between,
        in one thread, so the result is the same ids."""
        if len(self.code) > MAX_WORDS:
            self._reset()
        parts = _parts(texts, threads)  # one part: all in this thread
        looks = thread_map(lambda part: self._look(part, limit), parts, len(parts))
        self._learn_missing(looks)
        done = thread_map(lambda look: self._assemble(look, limit), looks, len(parts))
        if len(done) == 1:
            return done[0]
        return np.concatenate([f for f, _ in done]), np.concatenate([n for _, n in done])

    def _look(self, texts: list[str], limit: int) -> _Look:
        """The pieces of ``texts`` (each text's first ``limit``) and the codes of those the table knows (-1
        for the others); reads the cache, never changes it."""
        whole = [i for i, text in enumerate(texts) if self._holds_added(text)]  # the library's, whole
        encoded = [t.encode() for t in texts]
        for i in whole:
            encoded[i] = b""
        buf, first_byte = self._normalised(encoded)
        if buf is None:  # rare: texts whose characters only the library normalises exactly
            unsafe = first_byte.tolist()
            whole = sorted(set(whole) | set(unsafe))
            for i in unsafe:
                encoded[i] = b""
            buf, first_byte = self._normalised(encoded)
        data = np.frombuffer(buf, dtype=np.uint8)
        space = data <= SPACE_MAX
        edges = np.flatnonzero(space[1:] != space[:-1]) + 1  # the buffer starts and ends with a space
        starts, ends = edges[0::2], edges[1::2]
        # the pieces lie in order: each text's first one, and how many it has
        first = np.searchsorted(starts, first_byte)
        counts = np.diff(np.append(first, len(starts)))
        if len(counts) and counts.max() > limit:  # a text's first ``limit`` pieces only
            keep = np.arange(len(starts)) - np.repeat(first, counts) < limit
            starts, ends, counts = starts[keep], ends[keep], np.minimum(counts, limit)
        sizes = ends - starts
        low, high = _keys(data, starts, sizes)
        codes = self._slots.find(low, high)
        codes[sizes > KEY_BYTES] = -1  # a key holds a long piece's first bytes only
        return _Look(texts, buf, starts, ends, low, high, codes, counts, whole)

    def _learn_missing(self, looks: list[_Look]) -> None:
        """Fill in the codes the table lacked, by each piece's text in the dictionary; words not seen yet are
        learned from the library in one batch, and the short ones added to the table."""
        missing = [(look, np.flatnonzero(look.codes < 0)) for look in looks]
        missing = [(look, miss) for look, miss in missing if len(miss)]
        if not missing:
            return
        words = {
            id(look): [
                look.buf[a:b].decode()
                for a, b in zip(look.starts[miss].tolist(), look.ends[miss].tolist(), strict=True)
            ]
            for look, miss in missing
        }
        known = self.code
        new = [w for w in dict.fromkeys(itertools.chain(*words.values())) if w not in known]
        if new:
            self._learn(new)
        for look, miss in missing:
            got = words[id(look)]
            look.codes[miss] = np.fromiter(map(known.__getitem__, got), dtype=np.int64, count=len(got))
            short = miss[look.ends[miss] - look.starts[miss] <= KEY_BYTES]
            if len(short):  # into the table, once each
                _, once = np.unique(look.codes[short], return_index=True)
                keep = short[once]
                fresh = self._slots.find(look.low[keep], look.high[keep]) < 0  # not added by an earlier part
                keep = keep[fresh]
                self._slots = self._slots.add(look.low[keep], look.high[keep], look.codes[keep])

    def _assemble(self, look: _Look, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """``flat_ids`` of one looked-up batch whose codes are all known."""
        flat, lengths = self._gather(look.codes, look.counts, limit)
        if look.whole:  # rare: the library's ids spliced in
            texts = [look.texts[i] for i in look.whole]
            enc = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            flat, lengths = splice(
                flat, lengths, {i: e.ids[:limit] for i, e in zip(look.whole, enc, strict=True)}
            )
        return flat, lengths

    def _normalised(self, encoded: list[bytes]) -> tuple[Any, np.ndarray]:
        """The texts' UTF-8 bytes joined by spaces, with a space before the first and after the last, lowercased
        where the normaliser lowercases (ASCII letters only), each run of other bytes than printable ASCII, tab,
        newline and carriage return mapped by the character table; and where each text's bytes start. Where a
        run maps to ``UNSAFE``: None, and the texts that hold one."""
        sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        first_byte = np.cumsum(sizes + 1) - sizes
        buf = b" " + b" ".join(encoded) + b" "
        if self.lowercase:
            buf = buf.lower()
        data = np.frombuffer(buf, dtype=np.uint8)
        # bytes other than printable ASCII, tab, newline and carriage return: control characters and the bytes of
        # every character beyond ASCII
        odd = (data > 126) | (data < 32)
        odd &= (data != 9) & (data != 10) & (data != 13)
        if not odd.any():
            return buf, first_byte
        edges = np.flatnonzero(odd[1:] != odd[:-1]) + 1  # the buffer starts and ends with a space
        starts, ends = edges[0::2].tolist(), edges[1::2].tolist()
        parts, unsafe, at = [], [], 0
        runs = self._runs
        if len(runs) > MAX_WORDS:
            runs.clear()
        for a, b in zip(starts, ends, strict=True):
            run = buf[a:b]
            mapped = runs.get(run)
            if mapped is None:  # the same few runs come again and again (quotes, dashes, accented letters)
                mapped = runs[run] = run.decode().translate(self.chars).encode()
            if UNSAFE_BYTE in mapped:
                unsafe.append(a)
            parts += (buf[at:a], mapped)
            at = b
        if unsafe:
            return None, np.unique(np.searchsorted(first_byte, unsafe, side="right") - 1)
        parts.append(buf[at:])
        # each text's start moves by what the runs before it grew or shrank
        grown = np.cumsum([len(m) for m in parts[1::2]]) - np.cumsum(np.subtract(ends, starts))
        before = np.searchsorted(starts, first_byte)
        moved = np.where(before > 0, grown[np.maximum(before - 1, 0)], 0)
        return b"".join(parts), first_byte + moved

    def _gather(self, codes: np.ndarray, counts: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids of words ``codes`` (``counts[i]`` of them for row ``i``, in order), each row cut to ``limit``:
        every word's ids gathered end to end, then the few rows longer than ``limit`` (a row's first ``limit``
        pieces may hold more ids) cut, a slice each."""
        sizes = self._len[codes]
        ends = np.cumsum(sizes)  # ids up to each word's end, over all rows
        total = int(ends[-1]) if len(ends) else 0
        flat = self._pool[np.repeat(self._start[codes] - (ends - sizes), sizes) + np.arange(total)]
        at = np.concatenate([[0], ends])
        last = np.cumsum(counts)  # each row's words end there
        lengths = at[last] - at[last - counts]
        over = np.flatnonzero(lengths > limit)
        if not len(over):
            return flat, lengths
        keep = np.ones(total, dtype=bool)
        row_ends = np.cumsum(lengths)[over]
        for end, size in zip(row_ends.tolist(), lengths[over].tolist(), strict=True):
            keep[end - size + limit : end] = False
        return flat[keep], np.minimum(lengths, limit)


@dataclass
class _Look:
    """One batch's pieces: the texts, their normalised bytes, each piece's start and end in them, its key and
    its code (-1 until known); each text's number of pieces, and the texts the library tokenizes whole."""

    texts: list[str]
    buf: bytes
    starts: np.ndarray
    ends: np.ndarray
    low: np.ndarray
    high: np.ndarray
    codes: np.ndarray
    counts: np.ndarray
    whole: list[int]


# a batch is cut into parts for threads only where each part would hold at least this many bytes of text
PART_BYTES = 1 << 18


def _parts(texts: list[str], threads: int) -> list[list[str]]:
    """``texts`` cut into up to ``threads`` runs of about equal length in characters (whole texts each)."""
    sizes = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    return [texts[a:b] for a, b in even_runs(sizes, threads, PART_BYTES)]


_LOW_BYTES = np.array([(1 << (8 * m)) - 1 for m in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _keys(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each piece's first ``KEY_BYTES`` bytes, zero after its end, as two 64-bit numbers (little-endian): its
    key. Pieces of up to ``KEY_BYTES`` bytes have equal keys only if they are equal (no piece holds a zero byte)."""
    padded = np.zeros(len(data) + 2 * 8, dtype=np.uint8)
    padded[: len(data)] = data
    # the 8 bytes from every position: an unaligned view, one byte apart
    words = np.ndarray((len(data) + 8,), dtype="<u8", buffer=padded, strides=(1,))
    low = words[starts] & _LOW_BYTES[np.minimum(sizes, 8)]
    high = np.zeros(len(starts), dtype=np.uint64)
    long = np.flatnonzero(sizes > 8)  # most pieces fit in the low half
    high[long] = words[starts[long] + 8] & _LOW_BYTES[np.minimum(sizes[long] - 8, 8)]
    return low, high


def _key_hash(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key, whose high bits pick its slot (multiplicative hashing)."""
    return low * np.uint64(0x9E3779B97F4A7C15) ^ high * np.uint64(0xC2B2AE3D27D4EB4F)


class _SlotTable:
    """Keys (two 64-bit halves) -> codes: open addressing with linear probing, searched for a whole batch of
    keys at once (each round probes every key still looking; at most half the slots are used, so few rounds).
    A key is found only where both halves are equal: exact whatever the hash does."""

    def __init__(self, size: int) -> None:
        self.low = np.zeros(size, dtype=np.uint64)
        self.high = np.zeros(size, dtype=np.uint64)
        self.code = np.full(size, -1, dtype=np.int64)
        self.used = 0
        self._shift = np.uint64(64 - (size.bit_length() - 1))

    def _home(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return (_key_hash(low, high) >> self._shift).astype(np.int64)

    def find(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Each key's code, or -1."""
        slot = self._home(low, high)
        code = self.code[slot]
        found = (self.low[slot] == low) & (self.high[slot] == high) & (code >= 0)
        codes = np.where(found, code, -1)
        todo = np.flatnonzero(~found & (code >= 0))  # another key in its slot: look in the next ones
        mask = len(self.code) - 1
        slot[todo] = (slot[todo] + 1) & mask
        while len(todo):
            at = slot[todo]
            code = self.code[at]
            found = (code >= 0) & (self.low[at] == low[todo]) & (self.high[at] == high[todo])
            codes[todo[found]] = code[found]
            todo = todo[(code >= 0) & ~found]  # another key there: look in the next slot
            slot[todo] = (slot[todo] + 1) & mask
        return codes

    def add(self, low: np.ndarray, high: np.ndarray, codes: np.ndarray) -> _SlotTable:
        """The table with these keys (distinct, none in it yet) added: this one, or a copy twice the size where
        it would be more than half full."""
        if 2 * (self.used + len(low)) > len(self.code):
            size = len(self.code)
            while 2 * (self.used + len(low)) > size:
                size *= 2
            grown = _SlotTable(size)
            kept = self.code >= 0
            grown._place(self.low[kept], self.high[kept], self.code[kept])
            grown._place(low, high, codes)
            return grown
        self._place(low, high, codes)
        return self

    def _place(self, low: np.ndarray, high: np.ndarray, codes: np.ndarray) -> None:
        slot = self._home(low, high)
        todo = np.arange(len(low))
        mask = len(self.code) - 1
        while len(todo):
            at = slot[todo]
            free = self.code[at] < 0
            _, first = np.unique(at[free], return_index=True)  # one key per free slot this round
            won = todo[free][first]
            self.low[slot[won]], self.high[slot[won]], self.code[slot[won]] = low[won], high[won], codes[won]
            placed = np.zeros(len(low), dtype=bool)
            placed[won] = True
            todo = todo[~placed[todo]]
            slot[todo] = (slot[todo] + 1) & mask
        self.used += len(low)


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """``array``, or a copy at least twice as long, so that ``size`` entries fit."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


UNSAFE = "\x00"  # what the character table maps a character to when only the library splits its text exactly
UNSAFE_BYTE = UNSAFE.encode()


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
                inner = pieces[1:-1]
                mapped = UNSAFE if any(c.isspace() for p in inner for c in p) else " " + " ".join(inner) + " "
            else:  # part of it joins the word before or after: not one kind of character
                mapped = UNSAFE
        else:
            mapped = ""
        if any(ord(c) < SPACE_MAX and not c.isspace() for c in mapped):  # a control character: the split
            mapped = UNSAFE  # would not find the whitespace bytes by value
        self[code] = mapped
        return mapped
