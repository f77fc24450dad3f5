"""The probe with word features beside the embedding (lexical="tfidf"): the same model as scikit-learn's logistic
regression on the joint features, its choices, calibration, artifacts and refusals."""

import itertools

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from warmstart.errors import DataError, ParameterError
from warmstart.lexical import Design, Tfidf
from warmstart.techniques import get_technique


def lexical_probe(backbone, **kw):
    return get_technique("probe", backbone=str(backbone), lexical="tfidf", progress=False, **kw)


def test_tfidf_matches_scikit_learn_on_new_texts():
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = ["The cat sat on the mat", "dogs and cats", "a dog ran far, far away"]
    new = ["cat and dog", "nothing known here", "far FAR mat"]
    ref = TfidfVectorizer(sublinear_tf=True).fit(train)
    ours = Tfidf.fit(train)
    assert ours.vocabulary == ref.get_feature_names_out().tolist()
    np.testing.assert_allclose(ours.transform(new).toarray(), ref.transform(new).toarray(), atol=1e-12)
    rebuilt = Tfidf(ours.vocabulary, ours.idf)  # as an artifact restores it
    np.testing.assert_allclose(rebuilt.transform(new).toarray(), ref.transform(new).toarray(), atol=1e-12)


def test_probabilities_are_logistic_regression_on_words_plus_weighted_embedding(
    tiny_bert_dir, text_data, text_test
):
    est = lexical_probe(tiny_bert_dir, lexical_weight=0.1, C=10.0, calibrate="none").fit(text_data)
    X = est.features(text_data)
    d = Design.fit(text_data.inputs, np.asarray(X, dtype=np.float64))
    ref = LogisticRegression(C=10.0, max_iter=2000).fit(
        d.features(text_data.inputs, X, 0.1), text_data.labels
    )
    want = ref.predict_proba(d.features(text_test.inputs, est.features(text_test), 0.1))
    np.testing.assert_allclose(est.predict_proba(text_test.inputs), want, atol=1e-5)
    assert est.lexical_weight_ == 0.1 and est.C_ == 10.0 and est.temperature_ is None


def test_weight_and_C_are_chosen_by_cross_validation_and_the_temperature_from_out_of_fold_logits(
    tiny_bert_dir, text_data, text_test
):
    est = lexical_probe(tiny_bert_dir).fit(text_data)
    assert len(est.c_scores_) == 12  # four weights times three C
    best = max(est.c_scores_.values())
    assert est.c_scores_[f"{est.lexical_weight_},{est.C_}"] == best
    assert est.temperature_from_ == "cross-validation" and est.temperature_ > 0
    # the temperature divides the whole logit, words and embedding alike
    raw = lexical_probe(tiny_bert_dir, calibrate="none").fit(text_data)
    logits = np.log(raw.predict_proba(text_test.inputs).astype(np.float64)) / est.temperature_
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(est.predict_proba(text_test.inputs), want, atol=1e-4)


def test_validation_rows_choose_instead_of_cross_validation(tiny_bert_dir, text_data, text_test):
    est = lexical_probe(tiny_bert_dir).fit(text_data, val=text_test)
    assert len(est.c_scores_) == 12 and est.temperature_from_ == "validation"
    scores = {k: round(v * len(text_test)) for k, v in est.c_scores_.items()}  # whole rows of the 30
    assert all(abs(v - round(v)) < 1e-9 for v in scores.values())


def test_words_carry_a_class_the_embedding_does_not_see(tiny_bert_dir):
    # a token the tiny tokenizer does not know maps to [UNK]: only the word features can tell the classes apart
    from warmstart.data import Dataset

    texts = [f"zqxalpha item {i}" for i in range(12)] + [f"zqxbeta item {i}" for i in range(12)]
    labels = ["a"] * 12 + ["b"] * 12
    data = Dataset(texts, labels, "text", "unknown-words")
    words = lexical_probe(tiny_bert_dir).fit(data)
    plain = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(data)
    test = ["zqxalpha item 99", "zqxbeta item 98"]
    assert words.predict(test).tolist() == ["a", "b"]
    assert plain.predict(test).tolist() != ["a", "b"]  # the two test texts embed alike


def test_an_artifact_keeps_the_vocabulary_and_predicts_the_same(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    from warmstart.artifact import load_artifact, save_artifact

    est = lexical_probe(tiny_bert_dir).fit(text_data)
    save_artifact(est, tmp_path / "m", metrics={})
    back = load_artifact(tmp_path / "m")
    np.testing.assert_allclose(
        back.predict_proba(text_test.inputs), est.predict_proba(text_test.inputs), atol=1e-6
    )
    assert back.words_.vocabulary == est.words_.vocabulary


def test_refusals_name_the_problem(tiny_bert_dir, text_data, tiny_image_backbone, tmp_path):
    from warmstart.artifact import save_artifact
    from warmstart.data import Dataset
    from warmstart.errors import ExportError
    from warmstart.export import export_onnx

    from .conftest import make_images

    images, labels = make_images(4, size=32)
    with pytest.raises(ParameterError, match="no words"):
        get_technique("probe", backbone=tiny_image_backbone, lexical="tfidf", progress=False).fit(
            Dataset(list(images), labels, "image", "img")
        )
    with pytest.raises(ParameterError, match="align"):
        lexical_probe(tiny_bert_dir, align="mean").fit(text_data, unlabeled=text_data.inputs[:10])
    with pytest.raises(ParameterError, match="self_train"):
        lexical_probe(tiny_bert_dir).fit(text_data, unlabeled=text_data.inputs[:10])
    with pytest.raises(DataError, match="no word"):
        lexical_probe(tiny_bert_dir).fit(Dataset(["a", "b", "c", "d"], ["x", "x", "y", "y"], "text", "short"))
    est = lexical_probe(tiny_bert_dir).fit(text_data)
    save_artifact(est, tmp_path / "m", metrics={})
    with pytest.raises(ExportError, match="lexical='pieces'"):  # names the way to an exportable probe
        export_onnx(tmp_path / "m", tmp_path / "onnx", data=text_data.inputs[:4])


def test_piece_tfidf_counts_ids_as_scikit_learn_counts_them_written_as_words():
    """TF-IDF of token ids from a sparse matrix of counts: the numbers of TfidfVectorizer on the ids written as
    words (``p2003 p1996``), new and unseen ids and empty rows included, and again from the saved word list."""
    from warmstart.lexical import PieceTfidf, count_ids, ids_as_words

    rng = np.random.default_rng(0)
    train = [rng.integers(0, 60, rng.integers(0, 25)).tolist() for _ in range(50)]
    new = [rng.integers(0, 90, rng.integers(0, 25)).tolist() for _ in range(40)] + [[], [89, 89]]
    ref = Tfidf.fit(ids_as_words(train))
    ours = PieceTfidf.fit(count_ids(train))
    assert sorted(ours.vocabulary) == sorted(ref.vocabulary)
    cols = [ref.vocabulary.index(w) for w in ours.vocabulary]
    want = ref.transform(ids_as_words(new)).toarray()
    np.testing.assert_allclose(ours.transform(count_ids(new)).toarray(), want[:, cols], atol=1e-12)
    saved = PieceTfidf.from_vocabulary(ref.vocabulary, ref.idf)  # an artifact's word list, in its own order
    np.testing.assert_allclose(saved.transform(count_ids(new)).toarray(), want, atol=1e-12)
    with pytest.raises(DataError, match="no tokens"):
        PieceTfidf.fit(count_ids([[], []]))


def test_piece_tfidf_scores_are_its_matrix_times_the_weights():
    """``PieceTfidf.scores``, the fused path a pieces probe predicts with: ``transform(counts) @ coef.T`` to
    fp32's rounding, with ids the fit never saw (inside and beyond its range), explicit zeros, empty rows and
    duplicate entries; its table follows a new ``coef``."""
    import torch

    from warmstart.lexical import PieceTfidf, count_ids

    rng = np.random.default_rng(3)
    train = [rng.integers(5, 60, rng.integers(1, 25)).tolist() for _ in range(50)]
    tfidf = PieceTfidf.fit(count_ids(train))
    new = [rng.integers(0, 90, rng.integers(0, 30)).tolist() for _ in range(40)] + [[], [89, 89], [3]]
    counts = count_ids(new)
    coef = torch.from_numpy(rng.normal(size=(4, len(tfidf))))
    want = tfidf.transform(counts) @ coef.numpy().T
    np.testing.assert_allclose(tfidf.scores(counts, coef), want, atol=1e-5)
    assert np.abs(want).max() > 0.5  # not all zeros
    # an explicit zero, an id twice in a row, an empty row
    odd = sparse.csr_matrix(([2.0, 0.0, 1.0, 1.0], ([0, 0, 1, 1], [7, 8, 9, 9])), shape=(3, 95))
    np.testing.assert_allclose(tfidf.scores(odd, coef), tfidf.transform(odd) @ coef.numpy().T, atol=1e-5)
    again = coef * -2.0
    np.testing.assert_allclose(tfidf.scores(counts, again), -2.0 * want, atol=1e-5)
    with torch.inference_mode():  # weights made there have no version counter: still scored
        inferred = coef * 3.0
    np.testing.assert_allclose(tfidf.scores(counts, inferred), 3.0 * want, atol=1e-5)


def pieces_probe(backbone, **kw):
    return get_technique("probe", backbone=backbone, lexical="pieces", progress=False, **kw)


def test_pieces_are_the_backbones_token_ids_and_survive_an_artifact(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.lexical import ids_as_words

    est = pieces_probe(str(tiny_bert_dir), lexical_weight=0.1, C=10.0, calibrate="none").fit(text_data)
    bb = est.backbone_

    def words(texts):
        return ids_as_words(bb.tokenize([str(t) for t in texts]))

    X = est.features(text_data)
    d = Design.fit(words(text_data.inputs), np.asarray(X, dtype=np.float64))
    assert sorted(est.words_.vocabulary) == sorted(d.words.vocabulary)
    ref = LogisticRegression(C=10.0, max_iter=2000).fit(
        d.features(words(text_data.inputs), X, 0.1), text_data.labels
    )
    want = ref.predict_proba(d.features(words(text_test.inputs), est.features(text_test), 0.1))
    np.testing.assert_allclose(est.predict_proba(text_test.inputs), want, atol=1e-5)
    np.testing.assert_allclose(est.predict_proba(text_test), want, atol=1e-5)  # through the feature cache
    save_artifact(est, tmp_path / "a")
    again = load_artifact(tmp_path / "a")
    assert again.lexical == "pieces"
    np.testing.assert_allclose(again.predict_proba(text_test.inputs), want, atol=1e-5)


def test_a_pieces_probe_exports_to_onnx_with_its_tfidf_in_the_graph(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    """The exported graph computes TF-IDF of the ids it receives (padding and ids it never saw count nothing):
    the parity check passes and the ONNX model predicts what the artifact does, also on texts of new words."""
    from warmstart.artifact import save_artifact
    from warmstart.export import OnnxModel, export_onnx

    est = pieces_probe(str(tiny_bert_dir), precision="fp32").fit(text_data)  # the graph's precision
    save_artifact(est, tmp_path / "a")
    odd = ["", "zzz qqq unknown words", text_test.inputs[0] + " " + text_test.inputs[0]]
    report = export_onnx(tmp_path / "a", tmp_path / "onnx", data=list(text_test.inputs) + odd, rounds=1)
    assert report.parity["fp32"]["max_abs_diff"] <= 1e-4
    onnx = OnnxModel(tmp_path / "onnx", batch_size=4)
    np.testing.assert_allclose(onnx.predict_proba(odd), est.predict_proba(odd), atol=1e-4)
    # the words' part is in the graph: without it the graph's probabilities would differ
    lexical = est.lexical_coef_
    est.lexical_coef_ = None
    assert np.abs(onnx.predict_proba(text_test.inputs) - est.predict_proba(text_test.inputs)).max() > 1e-3
    est.lexical_coef_ = lexical
    from warmstart.errors import ExportError
    from warmstart.export_transformers import export_transformers

    with pytest.raises(ExportError, match="use --onnx"):  # a transformers folder has no place for the TF-IDF
        export_transformers(tmp_path / "a", tmp_path / "hf", data=text_test.inputs)


@pytest.mark.parametrize("high", [50, 70_000, 2**40])
def test_count_flat_counts_each_rows_ids_in_canonical_form(high):
    """Each row's count of each id, as scipy sums them, in canonical form (sorted, one entry per id): through the
    padded grid of 16-, 32- or 64-bit cells, and through scipy where one long row would make the grid mostly
    padding."""
    from warmstart.lexical import count_flat

    rng = np.random.default_rng(high % 97)
    for long_row in (False, True):
        lengths = rng.integers(0, 30, 40)
        lengths[3] = 0
        if long_row:
            lengths[5] = 5_000
        flat = rng.integers(0, high, lengths.sum())
        which = np.repeat(np.arange(len(lengths)), lengths)
        want = sparse.coo_matrix((np.ones(len(flat)), (which, flat)), shape=(len(lengths), flat.max() + 1))
        got = count_flat(flat, lengths)
        assert got.shape == want.shape and (got != want.tocsr()).nnz == 0
        assert got.has_canonical_format and got.nnz == len({(r, i) for r, i in zip(which, flat, strict=True)})
        assert all((np.diff(got.indices[a:b]) > 0).all() for a, b in itertools.pairwise(got.indptr))
