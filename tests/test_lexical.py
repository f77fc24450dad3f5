"""The probe with word features beside the embedding (lexical="tfidf"): the same model as scikit-learn's logistic
regression on the joint features, its choices, calibration, artifacts and refusals."""

import numpy as np
import pytest
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
    with pytest.raises(ExportError, match="TF-IDF"):
        export_onnx(tmp_path / "m", tmp_path / "onnx", data=text_data.inputs[:4])


def test_pieces_are_the_backbones_token_ids_as_words_and_survive_an_artifact(
    tiny_bert_dir, text_data, text_test, tmp_path
):
    from warmstart.artifact import load_artifact, save_artifact

    est = get_technique("probe", backbone=str(tiny_bert_dir), lexical="pieces", lexical_weight=0.1, C=10.0,
                        calibrate="none", progress=False).fit(text_data)  # fmt: skip
    bb = est.backbone_

    def words(texts):
        return [" ".join(f"p{i}" for i in ids) for ids in bb.tokenize([str(t) for t in texts])]

    X = est.features(text_data)
    d = Design.fit(words(text_data.inputs), np.asarray(X, dtype=np.float64))
    assert est.words_.vocabulary == d.words.vocabulary and all(w[0] == "p" for w in d.words.vocabulary)
    ref = LogisticRegression(C=10.0, max_iter=2000).fit(
        d.features(words(text_data.inputs), X, 0.1), text_data.labels
    )
    want = ref.predict_proba(d.features(words(text_test.inputs), est.features(text_test), 0.1))
    np.testing.assert_allclose(est.predict_proba(text_test.inputs), want, atol=1e-5)
    save_artifact(est, tmp_path / "a")
    again = load_artifact(tmp_path / "a")
    assert again.lexical == "pieces"
    np.testing.assert_allclose(again.predict_proba(text_test.inputs), want, atol=1e-5)
    from warmstart.errors import ExportError
    from warmstart.export import export_onnx

    with pytest.raises(ExportError, match="lexical='pieces'"):  # not in the graph yet: said, not half-done
        export_onnx(tmp_path / "a", tmp_path / "onnx", data=text_test.inputs[:4])
