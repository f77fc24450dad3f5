"""sentence-transformers conventions: a folder saved by the sentence-transformers library gives the same embeddings
through warmstart (every pooling mode, Dense, Normalize, max_seq_length), and warmstart's saved folders load in it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from warmstart.backbones import get_backbone

st = pytest.importorskip("sentence_transformers")

MODES = ["cls", "mean", "max", "weightedmean", "lasttoken", "mean_sqrt_len_tokens"]
OURS = {
    "cls": "cls",
    "mean": "mean",
    "max": "max",
    "weightedmean": "weighted-mean",
    "lasttoken": "last-token",
    "mean_sqrt_len_tokens": "mean-sqrt-len",
}


def _st_folder(tiny_bert_dir, tmp_path, mode: str, dense: bool, normalize: bool, max_len: int = 12):
    from sentence_transformers import SentenceTransformer, models

    enc = models.Transformer(str(tiny_bert_dir), max_seq_length=max_len)
    mods = [enc, models.Pooling(enc.get_word_embedding_dimension(), pooling_mode=mode)]
    if dense:
        torch.manual_seed(0)
        mods.append(models.Dense(32, 16, activation_function=torch.nn.Tanh()))
    if normalize:
        mods.append(models.Normalize())
    model = SentenceTransformer(modules=mods, device="cpu")
    folder = tmp_path / f"st-{mode}"
    model.save(str(folder))
    return model, folder


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("mode", MODES)
def test_every_pooling_mode_matches_the_library(mode, tiny_bert_dir, tmp_path, text_data):
    model, folder = _st_folder(tiny_bert_dir, tmp_path, mode, dense=False, normalize=False)
    ref = model.encode(list(text_data.inputs), convert_to_numpy=True)
    bb = get_backbone(str(folder))
    assert bb.pooling == OURS[mode] and bb.max_length == 12
    ours = bb.encode(text_data.inputs, progress=False, precision="fp32")
    assert _cos(ours, ref).min() >= 0.9999
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_cls_dense_normalize_matches_the_library_and_round_trips(tiny_bert_dir, tmp_path, text_data):
    model, folder = _st_folder(tiny_bert_dir, tmp_path, "cls", dense=True, normalize=True)
    ref = model.encode(list(text_data.inputs), convert_to_numpy=True)
    bb = get_backbone(str(folder))
    assert bb.normalize and bb.num_features == 16 and bb.preprocess_config()["dense"] == [[32, 16, "Tanh"]]
    ours = bb.encode(text_data.inputs, progress=False, precision="fp32")
    assert _cos(ours, ref).min() >= 0.9999
    # warmstart's own save is a sentence-transformers folder too: both libraries read it back the same
    bb.save(tmp_path / "saved")
    again = get_backbone(str(tmp_path / "saved"))
    assert again.fingerprint() == bb.fingerprint()
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(list(text_data.inputs))
    assert _cos(theirs, ours).min() >= 0.9999


def test_a_dense_layer_is_trained_and_saved_with_the_backbone(tiny_bert_dir, tmp_path, text_data, text_test):
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.techniques import get_technique

    _, folder = _st_folder(tiny_bert_dir, tmp_path, "mean", dense=True, normalize=True)
    bb = get_backbone(str(folder))
    before = bb.module.st_dense[0][0].weight.detach().clone()
    est = get_technique("finetune", backbone=bb, epochs=1, min_steps=0, progress=False, precision="fp32").fit(
        text_data
    )
    assert not torch.equal(est.backbone_.module.st_dense[0][0].weight.detach(), before)  # it trained
    art = save_artifact(est, tmp_path / "art", embed_backbone=True)
    np.testing.assert_allclose(
        load_artifact(art).predict_proba(text_test), est.predict_proba(text_test), atol=1e-6
    )
