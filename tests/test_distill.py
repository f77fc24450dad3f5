"""Distillation: the static-embedding backbone, training on soft targets, and `warmstart distill` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import make_sentences

pytest.importorskip("model2vec")


@pytest.fixture(scope="module")
def static_bb(tiny_bert_dir):
    from warmstart.backbones import get_backbone
    from warmstart.backbones.static import StaticBackbone

    return StaticBackbone.distill(get_backbone(str(tiny_bert_dir)), pca_dims=8, progress=False)


def test_static_backbone_encodes_like_its_training_path_and_adds_no_special_tokens(static_bb):
    texts = ["the ball and the goal", "code", "", "unknownword zzz"]
    feats = static_bb.encode(texts, progress=False)
    assert feats.shape == (4, 8) and static_bb.num_features == 8
    batch = static_bb.batch_source(texts).collate(np.arange(4))
    ids = static_bb.tokenize(texts)
    assert batch["lengths"].tolist() == [len(x) for x in ids]  # no padding: the ids end to end
    assert batch["token_ids"].tolist() == [i for x in ids for i in x]
    picked = static_bb.batch_source(texts).collate(np.array([3, 0, 2]))  # any rows, in any order
    assert picked["lengths"].tolist() == [len(ids[i]) for i in (3, 0, 2)]
    assert picked["token_ids"].tolist() == [t for i in (3, 0, 2) for t in ids[i]]
    with torch.no_grad():
        batched = static_bb.forward_features(**batch).numpy()
        graph = static_bb.graph_features(*static_bb.graph_args(batch)).numpy()
    np.testing.assert_allclose(batched, feats, atol=1e-6)  # the batched path equals encode's
    np.testing.assert_allclose(graph, feats, atol=1e-6)  # and the exported graph's gather-and-sum
    assert np.allclose(feats[2], 0)  # an empty text has no tokens: a zero vector, not NaN
    np.testing.assert_allclose(np.linalg.norm(feats[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    ids = static_bb.tokenize(["code"])[0]
    assert len(ids) == 1  # one word, one id: no [CLS]/[SEP]


def test_prediction_reads_an_fp16_copy_of_both_tables_that_follows_their_training(static_bb):
    """With gradients off the features come from one fp16 lookup over this table and a branch's side by side:
    close to the fp32 path's (training's), the same as the ONNX graph's, and made again after a training step
    changed a table in place (a fused AdamW step moves no version counter), whatever the optimizer."""
    import copy

    bb = copy.deepcopy(static_bb)
    tuned = copy.deepcopy(static_bb).add_hidden_layer(16)
    with torch.no_grad():
        tuned.module.embedding.weight.mul_(-2.0)  # a branch table unlike this one: a wrong column split shows
    bb.add_branch(tuned)
    texts = ["the ball and the goal", "code code food", "", "unknownword zzz"]
    batch = bb.batch_source(texts).collate(np.arange(len(texts)))
    table = bb.module.lookup_table()
    assert table.dtype == torch.float16 and table.shape == (bb.module.embedding.weight.shape[0], 16)
    assert not bb.module.training  # a backbone starts in evaluation mode, where prediction reads that table
    with torch.no_grad():
        fast = bb.forward_features(**batch)
        graph = bb.graph_features(*bb.graph_args(batch))
    with torch.enable_grad():
        full = bb.forward_features(**batch).detach()
    assert fast.shape == full.shape == (4, 8 + 16)
    np.testing.assert_allclose(fast.numpy(), full.numpy(), atol=5e-3)  # fp16 rounding only
    np.testing.assert_allclose(fast.numpy(), graph.numpy(), atol=1e-6)  # the exported graph computes the same
    np.testing.assert_allclose(bb.encode(texts, progress=False), fast.numpy(), atol=1e-6)
    # a training step in place, as the fused optimizer makes it, then the loop's switch back to evaluation
    bb.module.train()
    with torch.no_grad():
        bb.module.embedding.weight.data.mul_(3.0).add_(0.5)
        bb.module.branch.embedding.weight.data.add_(1.0)
    with torch.no_grad():
        in_training = bb.forward_features(**batch)  # training mode reads the fp32 tables, gradients or not
    bb.module.eval()
    with torch.no_grad():
        after = bb.forward_features(**batch)
    made = bb.module._lookup
    bb.module.eval()  # again, as each prediction of a fine-tuned model does: the table is kept
    with torch.no_grad():
        bb.forward_features(**batch)
    assert made is not None and bb.module._lookup is made
    with torch.enable_grad():
        full_after = bb.forward_features(**batch).detach()
    assert np.abs(after.numpy() - fast.numpy()).max() > 0.05  # the tables did change
    np.testing.assert_allclose(after.numpy(), full_after.numpy(), atol=5e-3)
    np.testing.assert_allclose(in_training.numpy(), full_after.numpy(), atol=1e-6)
    # a value fp16 cannot hold: the tables are read in fp32 throughout, the same on every path
    with torch.no_grad():
        bb.module.embedding.weight[0, 0] = 1e6
    bb.invalidate_fingerprint()
    assert bb.module.lookup_table() is None
    with torch.no_grad():
        exact = bb.forward_features(**batch)
        exact_graph = bb.graph_features(*bb.graph_args(batch))
    with torch.enable_grad():
        exact_full = bb.forward_features(**batch).detach()
    np.testing.assert_allclose(exact.numpy(), exact_full.numpy(), atol=1e-6)
    np.testing.assert_allclose(exact_graph.numpy(), exact_full.numpy(), atol=1e-5)


def test_prediction_from_counts_reads_fp32_where_fp16_cannot_hold_a_count(static_bb):
    """``encode`` sums each distinct id once, weighted by its count; a count fp16 cannot hold exactly (above
    2,048) sends the rows to the fp32 tables, so their features are the exact mean's, not fp16-rounded ones."""
    import copy

    bb = copy.deepcopy(static_bb).set_max_length(4000)
    assert bb.module.lookup_table() is not None  # the fp16 table exists: the count alone decides
    text = "code " * 3001 + "ball goal"
    ids = bb.tokenize([text])[0]
    assert len(ids) > 3001 and not bb.hidden_dim and bb.normalize
    mean = bb.module.embedding.weight.detach().double()[ids].mean(0)  # the exact mean, in float64
    want = (mean / mean.norm()).numpy()
    # fp32 from the counts: within 1e-6 of it (fp16's rounding of the sum is about 4e-4 away)
    np.testing.assert_allclose(bb.encode([text], progress=False)[0], want, atol=1e-6)


def test_the_feature_cache_keys_how_a_backbone_computes_its_features(static_bb, text_data):
    """Static features read an fp16 table: cached features computed another way (an fp32 lookup, before) are
    under another key, so they are not read back."""
    from warmstart.features import FeatureCache

    cache = FeatureCache(enabled=False)
    key = cache.key(static_bb, text_data)
    assert static_bb.feature_kind == "fp16-lookup"
    static_bb.feature_kind = ""
    try:
        assert cache.key(static_bb, text_data) != key
    finally:
        del static_bb.feature_kind


def test_static_tokenizing_in_pieces_gives_the_whole_texts_first_tokens(static_bb):
    """Long texts are tokenized a space-cut piece at a time until they have max_length tokens: the ids must be
    exactly those of the whole text, cut, whatever the text holds (fuzzed: accents, CJK, tabs, long words)."""
    import copy

    from warmstart.backbones import static as st

    bb = copy.deepcopy(static_bb)
    assert bb._prefix_safe()  # a BERT tokenizer: whitespace pre-tokenizer, per-character normalizer
    rng = np.random.default_rng(0)
    words = [
        "the",
        "ball",
        "Café",
        "naïve",
        "東京",
        "x" * 130,
        "goal!",
        "co-op",
        "…",
        "😀",
        "a.b",
        "ÅNGSTRÖM",
    ]
    seps = [" ", "  ", "\n", "\t", " \t\n ", ", ", "\u00a0", "\u3000"]
    texts = ["", " ", "x" * 500, "word " * 3, "   leading", "trailing   " * 20]
    for _ in range(300):
        n = int(rng.integers(1, 120))
        texts.append(
            "".join(f"{words[rng.integers(len(words))]}{seps[rng.integers(len(seps))]}" for _ in range(n))
        )
    texts += ["[UNK] " * 50, "ab [UNK] cd"]  # an added token: the library tokenizes the text whole
    for limit in (3, 8, 40):
        bb.max_length = limit
        whole = [e.ids[:limit] for e in bb.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
        assert bb.tokenize(texts) == whole
        flat, lengths = bb.tokenize_flat(texts)  # the same ids end to end, as the static model reads them
        assert lengths.tolist() == [len(w) for w in whole] and flat.tolist() == [i for w in whole for i in w]
    assert st._split_at_space("ab cd ef", 5) == ("ab cd", " ef")
    assert st._split_at_space("ab cd ef", 4) == ("ab", " cd ef")
    assert st._split_at_space("abcdefgh ij", 3) == ("abcdefgh", " ij")  # no space before: the first after
    assert st._split_at_space("abcdefgh", 3) == ("abcdefgh", "")


@pytest.mark.parametrize("lowercase", [True, False])
def test_word_cache_gives_the_librarys_ids_and_sends_it_only_new_words(static_bb, lowercase):
    """``WordPieceCache``: the ids of ``encode_batch_fast``, on texts fuzzed with what the fast split must not get
    wrong (case, ASCII and Unicode punctuation, control characters, accents, CJK, added tokens), cold and warm;
    and once its words are known, an ASCII text costs the library nothing."""
    from warmstart.backbones.wordpiece_cache import WordPieceCache

    class Counting:  # the library's tokenizer, counting the texts it is sent
        def __init__(self, tok):
            self.tok, self.normalizer, self.pre_tokenizer, self.sent = (
                tok,
                tok.normalizer,
                tok.pre_tokenizer,
                0,
            )

        def to_str(self):
            return self.tok.to_str()

        def encode_batch_fast(self, texts, add_special_tokens):
            self.sent += len(texts)
            return self.tok.encode_batch_fast(texts, add_special_tokens=add_special_tokens)

    tok = static_bb.tokenizer
    if not lowercase:  # a cased BERT tokenizer: the normaliser's lowercasing and accent stripping off
        from tokenizers import Tokenizer

        state = json.loads(tok.to_str())
        state["normalizer"].update(lowercase=False, strip_accents=False)
        tok = Tokenizer.from_str(json.dumps(state))
    rng = np.random.default_rng(1)
    parts = ["The", "ball", "GOAL", "co-op", "don't", "a.b", "x" * 120, "Café", "naïve", "東京", "£5", "½",
             "…", "«quote»", "ΟΔΟΣ", "İstanbul", "e\u0301", "\u200b", "\ufeffbom", "[UNK]", "[unk]", "[PAD]x", "snake_case", "\x07bell", "\x0bv", "tab\tx", "~^`|"]  # fmt: skip
    seps = [" ", "\n", "\t", "\r\n", ", ", "\u00a0", "\u2028", "", "\x00"]
    texts = ["", " ", "word", "UPPER lower", "a" * 101, "[UNK]", "\x7f"]
    for _ in range(400):
        n = int(rng.integers(1, 30))
        texts.append(
            "".join(f"{parts[rng.integers(len(parts))]}{seps[rng.integers(len(seps))]}" for _ in range(n))
        )
    blocks = [(0x00, 0x250), (0x300, 0x370), (0x590, 0x700), (0x900, 0x980), (0x2000, 0x2070), (0x3000, 0x3040),
              (0x4E00, 0x4E40), (0xAC00, 0xAC40), (0xFE00, 0xFF10), (0x1F600, 0x1F640)]  # fmt: skip
    for _ in range(200):  # random characters of many scripts, marks, spaces and controls
        lo, hi = blocks[rng.integers(len(blocks))]
        texts.append(
            "".join(chr(int(c)) for c in rng.integers(lo, hi, size=int(rng.integers(1, 40)))) + " ab"
        )
    cache = WordPieceCache(Counting(tok))
    truth = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert cache.ids(texts, 10_000) == truth  # cold
    assert cache.ids(texts, 10_000) == truth  # warm
    assert cache.ids(texts, 5) == [t[:5] for t in truth]
    plain = [p for p in parts if p.isascii() and p.isprintable() and "[" not in p]
    cache.ids(plain, 10_000)  # each word alone, punctuation attached ("co-op"), as ASCII text keys it
    ascii_texts = [
        " ".join(rng.choice(plain, size=8)) + "\n" + "\t".join(rng.choice(plain, size=4)) for _ in range(50)
    ]
    cache.tokenizer.sent = 0
    assert cache.ids(ascii_texts, 10_000) == [
        e.ids for e in tok.encode_batch_fast(ascii_texts, add_special_tokens=False)
    ]
    assert cache.tokenizer.sent == 0  # every word known: no library call
    assert cache.split("[UNK] is one token") is None  # an added token: the library matches it whole
    assert cache.added_firsts == {"["}  # only texts with a "[" are searched for one
    assert not WordPieceCache.supports({"normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
                                        "model": {"type": "WordPiece"}})  # fmt: skip


def test_word_cache_keys_are_exact_even_when_their_hashes_collide(static_bb, monkeypatch):
    """The key table is a hash table whose keys are compared whole: with every hash equal, every piece shares
    one chain of slots and still gets its own ids; pieces longer than a key and texts with control characters
    take their own paths."""
    from warmstart.backbones import wordpiece_cache as wc

    monkeypatch.setattr(wc, "_key_hash", lambda low, high: np.zeros(len(low), dtype=np.uint64))
    tok = static_bb.tokenizer
    assert len({tuple(e.ids) for e in tok.encode_batch_fast(["ball.goa", "ball.goal"])}) == 2
    long = "y" * (wc.KEY_BYTES + 3)
    texts = [
        "the ball, the goal",
        "Goal BALL code",
        f"{long} ball {long}x",
        "co\x07de\x0bball",
        "",
        "  ball  ",
        "ball.goa ball.goal ball.goal.code ball.goal.ball",  # the same first 8 bytes: the key's high half
    ]
    texts += [f"w{i} Wörd{i}" for i in range(40)]  # enough keys to grow the table past its first size
    cache = wc.WordPieceCache(tok)
    cache._slots = wc._SlotTable(16)
    truth = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert cache.ids(texts, 10_000) == truth
    assert cache.ids(texts, 10_000) == truth  # warm: the short pieces from the table
    short = {p for t in texts for p in cache.split(t) if len(p.encode()) <= wc.KEY_BYTES}
    assert cache._slots.used == len(short) and len(cache._slots.code) >= 2 * len(short)
    assert cache.ids(texts[::-1], 2) == [t[:2] for t in truth[::-1]]


def test_word_cache_in_threads_gives_the_same_ids(static_bb, monkeypatch):
    """A batch cut into parts for threads: looked up in parallel, its new words (some in several parts) learned
    once in between, and the same ids as the library's, in order."""
    from warmstart.backbones import wordpiece_cache as wc

    monkeypatch.setattr(wc, "PART_BYTES", 64)
    tok = static_bb.tokenizer
    rng = np.random.default_rng(0)
    words = ["ball", "Goal", "code", "naïve", "東京", "co-op", "x" * 40, "[UNK]", "\x07", "Zebra", "q"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 30)))) for _ in range(60)]
    truth = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    assert wc._parts(texts, 3) != [texts] and sum(map(len, wc._parts(texts, 3))) == len(texts)
    cache = wc.WordPieceCache(tok)
    for limit in (10_000, 7):
        flat, lengths = cache.flat_ids(texts, limit, threads=3)
        assert wc.split(flat, lengths) == [t[:limit] for t in truth]
    short = {p for t in texts for p in cache.split(t) or [] if len(p.encode()) <= wc.KEY_BYTES}
    assert cache._slots.used == len(short)  # each word in the table once


def test_static_training_batches_are_not_grouped_by_length(static_bb):
    """A static backbone's batches are plain shuffles (padding costs its mean nothing, and grouping by length
    measured worse on the development collection); its lengths stay for sorting at inference."""
    from warmstart.techniques.train import epoch_batches

    texts = [" ".join(["ball"] * (1 + i % 97)) for i in range(1200)]
    src = static_bb.batch_source(texts)
    assert src.lengths is not None and not src.pool_by_length
    spread = [np.ptp(src.lengths[b]) for b in epoch_batches(src, 16, seed=0, epoch=0)]
    assert np.median(spread) > 50  # grouped, a batch's lengths would lie within a few tokens


def test_static_backbone_saves_and_loads_without_model2vec(static_bb, tmp_path, monkeypatch):
    from warmstart.backbones import get_backbone

    static_bb.save(tmp_path / "bb")
    monkeypatch.setitem(__import__("sys").modules, "model2vec", None)  # loading must not need it
    again = get_backbone(str(tmp_path / "bb"))
    assert again.fingerprint() == static_bb.fingerprint()
    texts, _ = make_sentences(3)
    np.testing.assert_array_equal(
        again.encode(texts, progress=False), static_bb.encode(texts, progress=False)
    )


def test_static_name_distils_once_and_reuses_it(tiny_bert_dir):
    from warmstart.backbones import get_backbone

    a = get_backbone(f"static:{tiny_bert_dir}:pca_dims=4")
    b = get_backbone(f"static:{tiny_bert_dir}:pca_dims=4")
    assert a.num_features == 4 and a.fingerprint() == b.fingerprint()
    assert a.name == f"static:{tiny_bert_dir}:pca_dims=4"


def test_a_hidden_layer_feeds_the_head_on_every_path_and_is_saved(static_bb, tmp_path):
    import copy

    from warmstart.backbones import get_backbone
    from warmstart.errors import BackboneError

    bb = copy.deepcopy(static_bb).add_hidden_layer(16, seed=3)
    texts = ["the ball and the goal", "code", "", "unknownword zzz"]
    feats = bb.encode(texts, progress=False)
    assert feats.shape == (4, 16) and bb.num_features == 16 and (feats >= 0).all()  # after the ReLU
    plain = static_bb.encode(texts, progress=False)
    assert not np.allclose(feats[:, :8], plain)  # the features are the hidden layer's, not the vectors
    batch = bb.batch_source(texts).collate(np.arange(4))
    with torch.no_grad():
        np.testing.assert_allclose(bb.forward_features(**batch).numpy(), feats, atol=1e-6)
        graph = bb.graph_features(*bb.graph_args(batch)).numpy()
    np.testing.assert_allclose(graph, feats, atol=1e-6)  # the exported graph has the layer too
    same = copy.deepcopy(static_bb).add_hidden_layer(16, seed=3)  # the seed decides the start
    np.testing.assert_array_equal(same.encode(texts, progress=False), feats)
    assert bb.fingerprint() != static_bb.fingerprint()
    bb.save(tmp_path / "bb")
    again = get_backbone(str(tmp_path / "bb"))
    assert again.hidden_dim == 16 and again.fingerprint() == bb.fingerprint()
    np.testing.assert_array_equal(again.encode(texts, progress=False), feats)
    with pytest.raises(BackboneError, match="without one"):
        bb.add_hidden_layer(8)


def test_a_teacher_cut_student_starts_from_the_teachers_fine_tuned_layers(tiny_bert_dir, tmp_path):
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.data import Dataset
    from warmstart.distill import distill, make_student
    from warmstart.errors import ParameterError
    from warmstart.techniques import get_technique

    texts, labels = make_sentences(6, seed=0)
    train = Dataset(texts, labels, "text", "train")
    teacher = get_technique("finetune", backbone=str(tiny_bert_dir), epochs=2, progress=False).fit(train)
    cut = make_student(teacher, "teacher:num_layers=1")
    tb = teacher.backbone_
    assert cut.module.config.num_hidden_layers == 1 and tb.module.config.num_hidden_layers == 2  # a copy
    kept = dict(tb.module.named_parameters())
    for name, p in cut.module.named_parameters():  # every kept weight is the fine-tuned teacher's
        assert torch.equal(p, kept[name])
    assert "from the fine-tuned teacher" in cut.name and cut.fingerprint() != tb.fingerprint()
    with pytest.raises(ParameterError, match="teacher:num_layers=N"):
        make_student(teacher, "teacher:layers=1")
    test = Dataset(*make_sentences(3, seed=9), "text", "test")
    result = distill(teacher, train, None, test, student="teacher:num_layers=1", measure_speed=False,
                     params={"epochs": 1, "progress": False})  # fmt: skip
    save_artifact(result.estimator, tmp_path / "s", embed_backbone=True)
    again = load_artifact(tmp_path / "s")  # an ordinary artifact: the cut encoder is saved with it
    np.testing.assert_allclose(
        again.predict_proba(test.inputs), result.estimator.predict_proba(test.inputs), atol=1e-5
    )


@pytest.fixture(scope="module")
def small_teacher(tiny_bert_dir):
    """A tiny fine-tuned teacher, its 6 training rows per class and 3 test rows per class."""
    from warmstart.data import Dataset
    from warmstart.techniques import get_technique

    texts, labels = make_sentences(6, seed=0)
    train = Dataset(texts, labels, "text", "train")
    teacher = get_technique("finetune", backbone=str(tiny_bert_dir), epochs=1, progress=False).fit(train)
    return teacher, train, Dataset(*make_sentences(3, seed=9), "text", "test")


def test_hidden_dim_is_for_static_students_only(tiny_bert_dir, small_teacher):
    from warmstart.distill import distill
    from warmstart.errors import ParameterError

    teacher, train, test = small_teacher
    with pytest.raises(ParameterError, match="for static students"):
        distill(teacher, train, None, test, student=str(tiny_bert_dir), hidden_dim=8, measure_speed=False)
    # the default static student: its fine-tuned half gets the hidden layer, the probe reads the vectors
    pair = distill(teacher, train, None, test, pca_dims=8, hidden_dim=12, measure_speed=False,
                   params={"epochs": 1, "progress": False})  # fmt: skip
    assert (
        pair.estimator.backbone_.num_features == 8 + 12
        and pair.config["pair"]["finetune"]["hidden_dim"] == 12
    )
    result = distill(teacher, train, None, test, pca_dims=8, hidden_dim=12, measure_speed=False, technique="finetune",
                     params={"epochs": 2, "progress": False})  # fmt: skip
    assert result.estimator.backbone_.num_features == 12 and result.config["hidden_dim"] == 12


def test_a_probe_student_learns_the_teachers_top_class_with_words_beside_the_vectors(small_teacher):
    """--technique probe: no soft targets to train on, so the probe fits the teacher's top class over the
    transfer set (the true label where the hard weight makes it win); lexical="tfidf" adds the words."""
    from warmstart.data import Dataset
    from warmstart.distill import distill
    from warmstart.errors import ParameterError

    teacher, train, test = small_teacher
    more, _ = make_sentences(20, seed=7)
    unlabeled = Dataset(more, None, "text", "unlabeled")
    result = distill(teacher, train, unlabeled, test, technique="probe", pca_dims=8,
                     measure_speed=False, params={"lexical": "tfidf", "progress": False})  # fmt: skip
    est = result.estimator
    assert type(est).__name__ == "LinearProbe" and est.lexical_coef_ is not None
    taught = est.predict(unlabeled)  # a probe on 2x2 clusters of easy sentences fits what it was given
    assert (taught == teacher.predict(unlabeled)).mean() >= 0.9
    assert result.metrics["distillation"]["transfer_rows"] == len(train) + len(unlabeled)
    assert (
        result.config["technique"] == "probe" and result.config["hidden_dim"] == 0
    )  # no frozen random layer
    assert est.backbone_.num_features == 8
    # its speed is inference, not a read of the feature cache: every pass encodes, and the cache is back after
    from warmstart.distill import speed

    encode, calls = est.backbone_.encode, []
    est.backbone_.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    est.predict_proba(test)  # cached now
    before = len(calls)
    timed = speed(est, list(test.inputs), seconds=0.05, single=2)
    assert timed["rows_per_s"] > 0 and len(calls) - before >= 2 + 2 and est.cache_.enabled
    with pytest.raises(ParameterError, match="has no epochs"):
        distill(teacher, train, unlabeled, test, technique="probe", hidden_dim=0, pca_dims=8,
                val_fraction=0.2, measure_speed=False)  # fmt: skip


def test_max_length_sets_what_a_static_student_reads_and_is_for_static_students_only(
    tiny_bert_dir, small_teacher
):
    from warmstart.distill import STATIC_MAX_LENGTH, distill
    from warmstart.errors import ParameterError

    teacher, train, test = small_teacher
    with pytest.raises(ParameterError, match="--max-length is for static students"):
        distill(teacher, train, None, test, student=str(tiny_bert_dir), max_length=8, measure_speed=False)
    with pytest.raises(ParameterError, match="at least 1 token"):
        distill(teacher, train, None, test, max_length=0, measure_speed=False)
    result = distill(teacher, train, None, test, pca_dims=8, max_length=3, measure_speed=False,
                     technique="finetune", params={"epochs": 1, "progress": False})  # fmt: skip
    bb = result.estimator.backbone_
    assert bb.max_length == 3 == result.config["max_length"]
    long_text = "alpha beta gamma delta epsilon"
    assert len(bb.tokenize([long_text])[0]) == 3
    np.testing.assert_allclose(  # what follows the first 3 tokens does not count
        result.estimator.predict_proba([long_text]),
        result.estimator.predict_proba([long_text + " zeta eta theta"]),
        atol=1e-6,
    )
    bb.set_max_length(64)
    assert len(bb.tokenize([long_text])[0]) > 3
    default = distill(teacher, train, None, test, pca_dims=8, measure_speed=False,
                      params={"progress": False})  # fmt: skip
    assert teacher.backbone_.max_length != STATIC_MAX_LENGTH  # not the teacher's: the static default
    assert default.estimator.backbone_.max_length == STATIC_MAX_LENGTH == default.config["max_length"]


def test_static_needs_a_transformers_teacher(tiny_image_backbone):
    from warmstart.backbones.static import StaticBackbone
    from warmstart.errors import BackboneError

    with pytest.raises(BackboneError, match="transformers text encoder"):
        StaticBackbone.distill(tiny_image_backbone, progress=False)


def test_soft_targets_decide_what_is_learned(static_bb, text_data):
    """Targets that swap two classes win over the labels: the loss really uses them."""
    from warmstart.techniques import get_technique
    from warmstart.techniques.tuned import SoftTargets

    classes = np.array(sorted(set(text_data.labels)))
    swap = {"sports": "tech", "tech": "sports", "food": "food"}
    proba = np.zeros((len(text_data), 3))
    proba[np.arange(len(text_data)), [list(classes).index(swap[y]) for y in text_data.labels]] = 1.0
    est = get_technique("finetune", backbone=static_bb, epochs=6, progress=False, seed=0)
    est.fit(text_data, soft_targets=SoftTargets(classes, proba))
    pred = est.predict(text_data)
    followed = np.mean([p == swap[y] for p, y in zip(pred, text_data.labels, strict=True)])
    assert followed > 0.8


def test_soft_targets_are_checked(static_bb, text_data):
    from warmstart.errors import ParameterError
    from warmstart.techniques import get_technique
    from warmstart.techniques.tuned import SoftTargets

    est = get_technique("finetune", backbone=static_bb, epochs=1, progress=False)
    classes = np.array(["food", "sports", "tech"])
    with pytest.raises(ParameterError, match="one row of class probabilities per training row"):
        est.fit(text_data, soft_targets=SoftTargets(classes, np.full((3, 3), 1 / 3)))
    with pytest.raises(ParameterError, match="must be probabilities"):
        est.fit(text_data, soft_targets=SoftTargets(classes, np.ones((len(text_data), 3))))


def test_soft_target_mixing_and_temperature():
    from warmstart.distill import soft_targets

    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    classes = np.array(["a", "b", "c"])
    known = np.array([True, False])
    same = soft_targets(proba, classes, None, known, temperature=1.0, hard_weight=0.5)
    np.testing.assert_allclose(same, proba)  # no labels: the teacher's probabilities as they are
    mixed = soft_targets(proba, classes, ["b", None], known, temperature=1.0, hard_weight=0.5)
    np.testing.assert_allclose(mixed[0], [0.35, 0.6, 0.05])
    np.testing.assert_allclose(mixed[1], proba[1])  # an unlabelled row keeps the teacher's
    soft = soft_targets(proba, classes, None, known, temperature=4.0, hard_weight=0.0)
    assert soft[0].max() < proba[0].max() and np.allclose(soft.sum(1), 1)


def test_validation_rows_come_from_the_unlabelled_rows_only():
    from warmstart.distill import MIN_VALIDATION_ROWS, validation_rows

    known = np.array([True] * 40 + [False] * 600)
    held = validation_rows(known, 0.1, seed=3)
    assert len(held) == 60 and not known[held].any() and len(set(held)) == 60
    np.testing.assert_array_equal(held, validation_rows(known, 0.1, seed=3))  # the seed decides
    assert validation_rows(known, 0.0, seed=3) is None
    few = np.array([True] * 40 + [False] * (MIN_VALIDATION_ROWS * 5))
    assert validation_rows(few, 0.1, seed=0) is None  # 25 rows would choose an epoch by noise


def test_distill_with_validation_keeps_the_best_epoch_on_held_out_rows(tiny_bert_dir):
    from warmstart.data import Dataset
    from warmstart.distill import distill
    from warmstart.techniques import get_technique

    texts, labels = make_sentences(10, seed=0)
    train = Dataset(texts, labels, "text", "train")
    teacher = get_technique("finetune", backbone=str(tiny_bert_dir), epochs=2, progress=False).fit(train)
    more, _ = make_sentences(200, seed=7)
    unlabeled = Dataset(more, None, "text", "unlabeled")
    test = Dataset(*make_sentences(5, seed=9), "text", "test")
    result = distill(teacher, train, unlabeled, test, pca_dims=8, val_fraction=0.1, measure_speed=False,
                     technique="finetune", params={"epochs": 3, "progress": False})  # fmt: skip
    d = result.metrics["distillation"]
    assert d["validation_rows"] == 60 and d["transfer_rows"] == 30 + 540 and d["labelled_rows"] == 30
    assert 1 <= d["best_epoch"] <= 3 and result.config["val_fraction"] == 0.1
    # every epoch was scored on the held-out rows
    assert all(any(k.startswith("val_") for k in h) for h in result.estimator.history_)
    plain = distill(teacher, train, unlabeled, test, pca_dims=8, measure_speed=False, technique="finetune",
                    params={"epochs": 3, "progress": False})  # fmt: skip
    assert plain.metrics["distillation"]["validation_rows"] == 0
    assert plain.config["hidden_dim"] == 512 == plain.estimator.backbone_.num_features  # the static default
    assert plain.metrics["distillation"]["transfer_rows"] == 630


def test_distill_cli_end_to_end_static_student_predicts_exports_and_reports(tmp_path, tiny_bert_dir, capsys):
    from warmstart.artifact import load_artifact
    from warmstart.cli import main

    texts, labels = make_sentences(20, seed=0)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    more, _ = make_sentences(30, seed=5)
    pd.DataFrame({"text": more}).to_csv(tmp_path / "unlabeled.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "train.csv"), "--backbone", str(tiny_bert_dir),
                 "--technique", "finetune", "--param", "epochs=3", "--param", "progress=false",
                 "--output", str(tmp_path / "teacher")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["distill", str(tmp_path / "teacher"), "--student", "static", "--pca-dims", "8",
                 "--unlabeled", str(tmp_path / "unlabeled.csv"), "--param", "progress=false",
                 "--output", str(tmp_path / "student")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "student keeps" in out and "rows/s" in out
    assert "student: static (a probe on its vectors with TF-IDF of its token ids" in out  # what it is, said
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    d = metrics["distillation"]
    splits = json.loads((tmp_path / "teacher" / "splits.json").read_text())
    assert d["labelled_rows"] == len(splits["train"]) and d["transfer_rows"] == len(splits["train"]) + 90
    assert 0 <= d["agreement"] <= 1 and d["student"]["parameters"] < d["teacher"]["parameters"]
    assert d["student"]["speed"]["rows_per_s"] > 0 and d["test_rows"] == len(splits["test"])
    for who in ("teacher", "student"):  # accuracy with its interval, energy per 1,000 predictions
        lo, hi = d[who]["accuracy_ci"]
        assert lo <= d[who]["accuracy"] <= hi and 0 <= lo < hi <= 1
        assert d[who]["speed"]["joules_per_1000"] > 0 and d[who]["speed"]["energy_method"]
    diff = d["accuracy_difference"]
    assert diff["low"] <= diff["difference"] <= diff["high"]
    assert diff["difference"] == pytest.approx(d["student"]["accuracy"] - d["teacher"]["accuracy"])
    card = (tmp_path / "student" / "README.md").read_text()
    assert "## Distillation" in card and "| teacher |" in card and "| student |" in card
    assert "J / 1,000" in card and "paired over the rows" in card
    assert (
        "a probe on its vectors with TF-IDF of its token ids, on the teacher's top class, joined to a fine-tuned copy"
        in card
    )
    assert main(["report", str(tmp_path / "student")]) == 0  # the HTML report has the same table
    html = (tmp_path / "student-report.html").read_text()
    assert (
        "Teacher and student" in html and "J / 1,000" in html and f"{d['student']['accuracy']:.4f} [" in html
    )
    # a second student of the same teacher (with a hidden layer): both side by side in one report
    assert main(["distill", str(tmp_path / "teacher"), "--student", "static", "--pca-dims", "8", "--hidden-dim", "8",
                 "--technique", "finetune", "--param", "progress=false", "--no-speed",
                 "--output", str(tmp_path / "student2")]) == 0  # fmt: skip
    d2 = json.loads((tmp_path / "student2" / "metrics.json").read_text())["distillation"]
    out = tmp_path / "students.html"
    assert main(["report", str(tmp_path / "student"), str(tmp_path / "student2"), "--output", str(out)]) == 0
    html = out.read_text()
    assert "Teacher and students" in html and "student2 (static)" in html and "speed-up" in html
    assert f"{d2['student']['accuracy']:.4f} [" in html and "not measured" in html  # student2 skipped timing
    assert main(["report", str(tmp_path / "student"), str(tmp_path / "teacher"), "--output", str(out)]) == 2
    assert "not a distilled student" in capsys.readouterr().err
    student = load_artifact(tmp_path / "student")
    assert type(student.backbone_).__name__ == "StaticBackbone"
    # its size counts what it predicts with: both tables, the hidden layer, the head and the word weights
    body = sum(p.numel() for p in student.backbone_.module.parameters())
    assert (
        body > 2 * student.backbone_.module.embedding.weight.numel()
    )  # the fine-tuned copy and its hidden layer
    assert student.trainable_parameters() > student.lexical_coef_.numel()  # the head's, and the word weights
    assert d["student"]["parameters"] == body + student.trainable_parameters()
    # the default static student (STATIC_TECHNIQUE): a probe with TF-IDF of its token ids joined to a fine-tuned
    # copy of the vectors with a hidden layer of 512
    assert student.name == "probe" and student.lexical == "pieces" and student.lexical_coef_ is not None
    assert student.backbone_.branch["hidden_dim"] == 512 and student.backbone_.num_features == 8 + 512
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["technique"] == "probe+finetune" and config["hidden_dim"] == 512
    assert set(student.predict(["the ball and the goal"])) <= {"sports", "tech", "food"}
    # an ordinary artifact: ONNX export with its parity check on the teacher's held-out rows (the TF-IDF in the graph)
    assert main(["export", str(tmp_path / "student"), "--onnx", "--output", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_distill_cli_probe_student_with_words_is_an_artifact_that_predicts(tmp_path, tiny_bert_dir, capsys):
    from warmstart.artifact import load_artifact
    from warmstart.cli import main

    texts, labels = make_sentences(10, seed=0)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "train.csv"), "--backbone", str(tiny_bert_dir),
                 "--output", str(tmp_path / "teacher")]) == 0  # fmt: skip
    assert main(["distill", str(tmp_path / "teacher"), "--technique", "probe", "--param", "lexical=tfidf",
                 "--pca-dims", "8", "--no-speed", "--output", str(tmp_path / "s")]) == 0  # fmt: skip
    assert "student keeps" in capsys.readouterr().out
    student = load_artifact(tmp_path / "s")
    assert student.lexical_coef_ is not None and type(student.backbone_).__name__ == "StaticBackbone"
    assert (
        main(
            ["predict", str(tmp_path / "s"), str(tmp_path / "train.csv"), "--output", str(tmp_path / "p.csv")]
        )
        == 0
    )
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(texts)


def test_distill_refuses_bad_settings_before_training(tmp_path, tiny_bert_dir, capsys):
    from warmstart.cli import main

    texts, labels = make_sentences(10, seed=0)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "train.csv"), "--backbone", str(tiny_bert_dir),
                 "--output", str(tmp_path / "teacher")]) == 0  # fmt: skip
    capsys.readouterr()
    assert (
        main(["distill", str(tmp_path / "teacher"), "--temperature", "0", "--output", str(tmp_path / "s")])
        == 2
    )
    assert "temperature must be above 0" in capsys.readouterr().err
    assert (
        main(["distill", str(tmp_path / "teacher"), "--val-fraction", "1", "--output", str(tmp_path / "s")])
        == 2
    )
    assert "val_fraction within [0, 1) (got 1.0)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    # --unlabeled is read as the teacher reads; a folder that is no artifact is named before any work
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "u.csv", index=False)
    assert (
        main(
            [
                "distill",
                str(tmp_path),
                "--unlabeled",
                str(tmp_path / "u.csv"),
                "--output",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    assert "warmstart.json: missing" in capsys.readouterr().err


def test_a_static_table_trains_its_own_epochs_and_rate_unless_told(static_bb, tiny_bert_dir):
    """epochs="auto" and lr="auto" under finetune: the static table's 8 epochs and 1e-2, a transformer's 4 and
    its modality's rate; an explicit value wins for both."""
    from warmstart.techniques import get_technique

    static = get_technique("finetune", backbone=static_bb, progress=False)
    assert static.base_epochs() == static_bb.tuning_epochs == 8
    assert static._base_lr(static_bb) == 1e-2
    assert get_technique("finetune", backbone=static_bb, epochs=3, progress=False).base_epochs() == 3
    transformer = get_technique("finetune", backbone=str(tiny_bert_dir), progress=False)
    assert transformer.base_epochs() == 4


def test_the_benchmarks_shared_teacher_labels_each_text_once_with_the_teachers_probabilities(
    small_teacher, monkeypatch
):
    """benchmarks/distill.py --no-speed: the students of one data set and seed share the teacher's labels."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from distill import SharedTeacher

    teacher, train, test = small_teacher
    seen = []
    real = teacher.predict_proba

    class Counting:
        def __getattr__(self, name):
            return getattr(teacher, name)

        def predict_proba(self, data):
            seen.extend(getattr(data, "inputs", data))
            return real(data)

    shared = SharedTeacher(Counting())
    both = [*train.inputs, *test.inputs]
    np.testing.assert_allclose(shared.predict_proba(train), real(train), atol=1e-6)
    np.testing.assert_allclose(shared.predict_proba(both), real(both), atol=1e-5)
    assert list(shared.predict(test)) == list(teacher.predict(test))
    assert sorted(seen) == sorted(both)  # every text went to the teacher once, whichever call asked first
    assert shared.classes_ is teacher.classes_


def test_the_benchmarks_hard_teacher_gives_one_hot_targets_on_the_teachers_top_class(
    small_teacher, monkeypatch
):
    """benchmarks/distill.py static-hard: the student's targets are the teacher's labels, not its probabilities."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from distill import HardTeacher

    teacher, train, test = small_teacher
    proba = teacher.predict_proba(train)
    hard = HardTeacher(teacher).predict_proba(train)
    assert hard.shape == proba.shape and set(np.unique(hard)) <= {0.0, 1.0}
    np.testing.assert_array_equal(hard.sum(1), 1.0)
    np.testing.assert_array_equal(hard.argmax(1), proba.argmax(1))
    assert list(HardTeacher(teacher).predict(test)) == list(teacher.predict(test))


def test_a_static_probe_with_pieces_tokenizes_once_and_exports(
    static_bb, text_data, text_test, tmp_path, monkeypatch
):
    """A probe with lexical="pieces" on a static backbone: new texts are tokenized once for both the vectors and
    the TF-IDF (the tokenizer is most of a static model's time), with the same probabilities as the cached path,
    also when the rows go on in parts in threads; the artifact exports to ONNX with both parts in the graph."""
    from warmstart.artifact import save_artifact
    from warmstart.export import OnnxModel, export_onnx
    from warmstart.techniques import get_technique

    est = get_technique("probe", backbone=static_bb, lexical="pieces", progress=False).fit(text_data)
    cached = est.predict_proba(text_test)
    calls = []
    for name in ("tokenize", "tokenize_flat"):  # every way of tokenizing, counted
        method = getattr(static_bb, name)
        setattr(static_bb, name, lambda texts, m=method, n=name: calls.append((n, len(texts))) or m(texts))
    try:
        fresh = est.predict_proba(list(text_test.inputs))
    finally:
        del static_bb.tokenize, static_bb.tokenize_flat  # the class's methods again
    assert calls == [("tokenize_flat", len(text_test))]
    np.testing.assert_allclose(fresh, cached, atol=1e-5)
    from warmstart.parallel import even_runs
    from warmstart.techniques import probe

    monkeypatch.setattr(probe, "PART_TOKENS", 8)
    _, lengths = static_bb.tokenize_flat(list(text_test.inputs))
    assert len(even_runs(np.cumsum(lengths), 3, probe.PART_TOKENS)) == 3
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        np.testing.assert_allclose(est.predict_proba(list(text_test.inputs)), cached, atol=1e-5)
    finally:
        torch.set_num_threads(threads)
    save_artifact(est, tmp_path / "a", embed_backbone=True)  # as `warmstart distill` saves a static student
    report = export_onnx(tmp_path / "a", tmp_path / "onnx", data=text_test, rounds=1)
    assert report.parity["fp32"]["max_abs_diff"] <= 1e-4
    np.testing.assert_allclose(
        OnnxModel(tmp_path / "onnx").predict_proba(text_test.inputs), cached, atol=1e-4
    )


def test_held_out_rows_come_from_a_recorded_test_file_without_a_data_record(tmp_path):
    """A student distilled with --test from a teacher that does not record its data still finds its test rows
    (export's parity check, report) in the --test file recorded with it."""
    from warmstart.artifact import held_out
    from warmstart.errors import ArtifactError

    texts, labels = make_sentences(3, seed=0)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "test.csv", index=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"record": {"test": str(tmp_path / "test.csv")}}))
    rows = held_out(tmp_path / "a")
    assert list(rows.inputs) == texts and list(rows.labels) == labels
    (tmp_path / "a" / "config.json").write_text(json.dumps({"record": {}}))
    with pytest.raises(ArtifactError, match="does not say which data"):
        held_out(tmp_path / "a")


def test_a_streamed_transfer_set_is_never_all_in_memory_and_teaches_the_same_student(
    small_teacher, tiny_bert_dir, tmp_path, monkeypatch
):
    """Unlabelled rows streamed from a file (``--unlabeled``) are labelled by the teacher, encoded, counted and
    tokenized a chunk at a time, so the texts are never all in memory at once (Python's allocations peak well
    below their size; tracemalloc), and the student is the one the same rows in memory teach: the default static student
    (probe + pieces), a trained one and a small transformer."""
    import tracemalloc

    from warmstart.data import Dataset
    from warmstart.data.load import load_unlabeled
    from warmstart.data.stream import TextRows
    from warmstart.distill import distill

    teacher, train, test = small_teacher
    more, _ = make_sentences(12, seed=7)
    pd.DataFrame({"text": more}).to_csv(tmp_path / "u.csv", index=False)
    rows = load_unlabeled(str(tmp_path / "u.csv"), "text")
    assert isinstance(rows.inputs, TextRows)
    monkeypatch.setattr("warmstart.data.stream.CHUNK", 8)
    long = [" ".join([t] * 800) for t in make_sentences(100, seed=3)[0]]  # 300 texts of about 30 KB
    pd.DataFrame({"text": long}).to_csv(tmp_path / "long.csv", index=False)
    long_rows, size = load_unlabeled(str(tmp_path / "long.csv"), "text"), sum(map(len, long))
    static = {"student": "static", "pca_dims": 8}
    for student, technique, params in [
        (static, "auto", {}),
        (static, "finetune", {"epochs": 1}),
        ({"student": str(tiny_bert_dir)}, "finetune", {"epochs": 1}),  # a small transformer
    ]:
        opts = dict(technique=technique, measure_speed=False, params={"progress": False, **params}, **student)
        streamed = distill(teacher, train, rows, test, **opts)
        in_memory = distill(teacher, train, Dataset(more, None, "text", "u"), test, **opts)
        assert streamed.metrics["distillation"]["transfer_rows"] == len(train) + len(more)
        np.testing.assert_allclose(
            streamed.estimator.predict_proba(test), in_memory.estimator.predict_proba(test), atol=1e-5
        )
        tracemalloc.start()
        distill(teacher, train, long_rows, test, **opts)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # read whole, the texts alone would be more than that (the same rows in memory peak at several times their size);
        # what is left is the student's token ids, at most 512 a text
        assert peak < 0.6 * size, (technique, peak, size)


def _pair_halves(small_teacher, rows=None):
    """A probe (TF-IDF of the token ids) and a fine-tuned copy with a hidden layer, on one tiny static student of
    the small teacher, in fp32; ``rows``: the training rows the probe sees (default: all)."""
    import copy

    from warmstart.backbones.static import StaticBackbone
    from warmstart.techniques import get_technique

    teacher, train, test = small_teacher
    bb = StaticBackbone.distill(teacher.backbone_, pca_dims=8, progress=False)
    tuned_bb = copy.deepcopy(bb).add_hidden_layer(6, seed=0)
    probe_rows = train if rows is None else train.subset(rows)
    probe = get_technique(
        "probe", backbone=bb, lexical="pieces", precision="fp32", progress=False, use_cache=False
    )
    tuned = get_technique("finetune", backbone=tuned_bb, epochs=3, precision="fp32", progress=False)
    return probe.fit(probe_rows), tuned.fit(train), test


def test_the_joined_pair_predicts_the_mean_of_its_halves_logits(small_teacher, tmp_path):
    """``join_pair``: one probe whose backbone carries the fine-tuned copy as a branch and whose head holds both
    heads at half weight predicts softmax of the mean of the two models' log-probabilities; it saves, loads and
    exports (ONNX, parity-checked) as an ordinary probe on a static backbone."""
    from scipy.special import softmax

    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.distill import join_pair

    probe, tuned, test = _pair_halves(small_teacher)
    joined = join_pair(probe, tuned)
    texts = list(test.inputs) + ["an unseen text about nothing", ""]
    halves = [np.log(np.asarray(m.predict_proba(texts), dtype=np.float64)) for m in (probe, tuned)]
    expected = softmax((halves[0] + halves[1]) / 2, axis=1)
    assert np.allclose(joined.predict_proba(texts), expected, atol=1e-5)
    assert np.allclose(
        joined.predict_proba(test), expected[: len(test)], atol=1e-5
    )  # the cached-features path
    bb = joined.backbone_
    assert bb.num_features == 8 + 6 and bb.branch["hidden_dim"] == 6
    # the halves keep their own backbones: joining copies them
    assert probe.backbone_.num_features == 8 and probe.backbone_.branch is None
    save_artifact(joined, tmp_path / "pair", embed_backbone=True)
    again = load_artifact(tmp_path / "pair")
    assert again.backbone_.fingerprint() == bb.fingerprint()
    assert np.allclose(again.predict_proba(texts), expected, atol=1e-5)
    from warmstart.export import export_onnx

    export_onnx(tmp_path / "pair", tmp_path / "onnx", data=test)
    assert (tmp_path / "onnx" / "model.onnx").is_file()


def test_a_class_the_pairs_probe_never_saw_is_left_to_the_fine_tuned_half(small_teacher):
    """When the teacher's top class never names a class on the transfer rows, the probe has no row for it: the
    joined model still has every class, and gives that one the probe's lowest logit less 20 (almost none)."""
    from warmstart.distill import join_pair

    teacher, train, test = small_teacher
    labels = np.asarray(train.labels)
    probe, tuned, test = _pair_halves(small_teacher, rows=np.flatnonzero(labels != "food"))
    assert "food" not in probe.classes_ and "food" in tuned.classes_
    joined = join_pair(probe, tuned)
    assert list(joined.classes_) == list(tuned.classes_)
    proba = joined.predict_proba(test)
    assert proba.shape == (len(test), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert proba[:, list(joined.classes_).index("food")].max() < 1e-3


def test_the_pairs_parameters_go_to_the_half_that_takes_them(small_teacher):
    from warmstart.distill import check_pair, distill, pair_params, student_technique
    from warmstart.errors import ParameterError

    # named or by default, the pair reads TF-IDF of the token ids unless told otherwise
    for technique in ("auto", "probe+finetune"):
        assert student_technique("static", technique, {}) == (
            "probe+finetune",
            {"lexical": "pieces"},
        )
    assert student_technique("static", "probe+finetune", {"lexical": "none"})[1] == {"lexical": "none"}

    probe, tuned = pair_params({"lexical": "pieces", "epochs": 3, "progress": False, "C": 1.0})
    assert probe == {"lexical": "pieces", "progress": False, "C": 1.0} and tuned == {
        "epochs": 3,
        "progress": False,
    }
    with pytest.raises(ParameterError, match="rank: no parameter of the default static student"):
        pair_params({"rank": 4})
    with pytest.raises(ParameterError, match="not a static one"):
        check_pair("all-MiniLM-L6-v2", 0.0)
    teacher, train, test = small_teacher
    with pytest.raises(ParameterError, match="--val-fraction 0.2: chooses a fine-tuned student's epoch"):
        distill(teacher, train, None, test, pca_dims=8, val_fraction=0.2, measure_speed=False)


def test_the_pairs_fine_tuned_half_can_keep_the_tables_leading_dimensions(small_teacher, tmp_path):
    """``tuned_dims``: the fine-tuned half reads the first N columns of the probe's table (its leading PCA
    dimensions), a narrower second table; the joined pair still saves, loads and exports."""
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.backbones.static import StaticBackbone
    from warmstart.distill import fit_pair, pair_params
    from warmstart.errors import BackboneError, ParameterError
    from warmstart.export import export_onnx
    from warmstart.techniques.tuned import SoftTargets

    teacher, train, test = small_teacher
    bb = StaticBackbone.distill(teacher.backbone_, pca_dims=8, progress=False)
    classes = np.asarray(teacher.classes_)
    targets = SoftTargets(classes, np.asarray(teacher.predict_proba(train), dtype=np.float64))
    params = {"lexical": "pieces", "epochs": 2, "progress": False, "tuned_dims": 3}
    assert pair_params(params)[1] == {"epochs": 2, "progress": False}  # the pair's own, for neither half
    pair, _ = fit_pair(bb, train, targets, 6, 0, params)
    branch = pair.backbone_.module.branch
    assert branch.embedding.weight.shape == (bb.module.embedding.weight.shape[0], 3)
    assert pair.backbone_.module.lookup_table().shape[1] == 8 + 3  # one row per token, both tables
    assert pair.backbone_.num_features == 8 + 6 and bb.num_features == 8  # the probe's table is left whole
    save_artifact(pair, tmp_path / "pair", embed_backbone=True)
    again = load_artifact(tmp_path / "pair")
    texts = list(test.inputs)
    np.testing.assert_allclose(again.predict_proba(texts), pair.predict_proba(texts), atol=1e-6)
    export_onnx(tmp_path / "pair", tmp_path / "onnx", data=test)
    # the kept columns are the table's first ones, untouched until fine-tuning moves them
    kept = copy_of(bb).keep_dims(3)
    assert torch.equal(kept.module.embedding.weight, bb.module.embedding.weight[:, :3])
    with pytest.raises(BackboneError, match="1 to 8 columns"):
        copy_of(bb).keep_dims(9)
    with pytest.raises(ParameterError, match="tuned_dims must be a whole number"):
        fit_pair(bb, train, targets, 6, 0, {**params, "tuned_dims": "wide"})


def test_the_pairs_fine_tuned_half_keeps_the_default_dimensions_unless_told(small_teacher, monkeypatch):
    """By default (``PAIR_OPTIONS``) the fine-tuned half keeps all of the table's dimensions; a default number
    keeps that many; ``none`` keeps all; a number asked for is kept as asked."""
    from warmstart import distill as ds
    from warmstart.backbones.static import StaticBackbone
    from warmstart.techniques.tuned import SoftTargets

    assert ds.PAIR_OPTIONS["tuned_dims"] is None
    teacher, train, test = small_teacher
    bb = StaticBackbone.distill(teacher.backbone_, pca_dims=8, progress=False)
    targets = SoftTargets(
        np.asarray(teacher.classes_), np.asarray(teacher.predict_proba(train), dtype=np.float64)
    )
    base = {"lexical": "pieces", "epochs": 1, "progress": False}

    def width(params):
        pair, _ = ds.fit_pair(bb, train, targets, 6, 0, {**base, **params})
        return pair.backbone_.module.branch.embedding.weight.shape[1]

    assert width({}) == 8
    monkeypatch.setitem(ds.PAIR_OPTIONS, "tuned_dims", 5)
    assert width({}) == 5 and width({"tuned_dims": "none"}) == 8 and width({"tuned_dims": None}) == 8
    assert width({"tuned_dims": 2}) == 2


def copy_of(backbone):
    import copy

    return copy.deepcopy(backbone)


def test_a_branch_must_read_the_same_token_ids(small_teacher):
    import copy

    from warmstart.backbones.static import StaticBackbone
    from warmstart.errors import BackboneError

    teacher, _, _ = small_teacher
    bb = StaticBackbone.distill(teacher.backbone_, pca_dims=8, progress=False)
    other = copy.deepcopy(bb).set_max_length(bb.max_length // 2)
    with pytest.raises(BackboneError, match="read texts differently \\(max_length"):
        copy.deepcopy(bb).add_branch(other)
    joined = copy.deepcopy(bb).add_branch(copy.deepcopy(bb).add_hidden_layer(4))
    with pytest.raises(BackboneError, match="neither may have one already"):
        joined.add_branch(bb)
    with pytest.raises(BackboneError, match="without a branch"):
        joined.add_hidden_layer(4)
    # the branch's features follow the backbone's own, from the same ids
    feats = joined.encode(["a ball and a goal", "lunch"], progress=False)
    assert feats.shape == (2, 12) and np.allclose(
        feats[:, :8], bb.encode(["a ball and a goal", "lunch"], progress=False)
    )
