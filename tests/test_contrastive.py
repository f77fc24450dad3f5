"""The contrastive (SetFit-style) technique: losses against slow references, the pair budget, balanced batches,
the two public phases, and multi-label data end to end. The conformance suite covers fit/save/load/resume."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from warmstart.artifact import load_artifact, save_artifact
from warmstart.backbones import get_backbone
from warmstart.data import Dataset, few_shot, load_text, stratified_split
from warmstart.data.labels import multi_hot, strata
from warmstart.errors import DataError, ParameterError
from warmstart.metrics import classification_metrics
from warmstart.run import fit_run
from warmstart.techniques import get_technique
from warmstart.techniques.contrastive import (
    balanced_batches,
    cosine_pair_loss,
    pair_targets,
    supcon_loss,
)

from .conftest import CLASS_WORDS, FILLER

FAST = {"epochs": 2, "batch_size": 16, "progress": False, "min_steps": 4}


def make_multilabel(n: int, seed: int = 0) -> tuple[list[str], list[tuple[str, ...]]]:
    """Sentences built from the words of one or two classes; the label set names the classes used."""
    rng = np.random.default_rng(seed)
    names = sorted(CLASS_WORDS)
    texts, labels = [], []
    for _ in range(n):
        chosen = sorted(rng.choice(names, size=int(rng.integers(1, 3)), replace=False))
        toks = list(rng.choice(FILLER, 3))
        for c in chosen:
            toks += list(rng.choice(CLASS_WORDS[c], 3))
        rng.shuffle(toks)
        texts.append(" ".join(toks))
        labels.append(tuple(chosen))
    return texts, labels


def test_pair_targets_are_jaccard_overlaps():
    Y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    T = pair_targets(Y)
    assert T[0, 1] == 1 and T[0, 2] == 0 and T[4, 4] == 0
    assert T[0, 3] == pytest.approx(0.5) and T[2, 3] == pytest.approx(0.5)  # {a} vs {a, b}: 1/2
    assert torch.equal(T, T.T)


def _slow_supcon(emb, Y, t):
    z = torch.nn.functional.normalize(emb, dim=-1)
    T = pair_targets(Y)
    losses = []
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in others)
        w = [float(T[i, j]) for j in others]
        if sum(w) == 0:
            continue
        terms = [
            w_j * -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
            for w_j, j in zip(w, others, strict=True)
        ]
        losses.append(sum(terms) / sum(w))
    return sum(losses) / len(losses)


def _slow_cosine(emb, Y):
    z = torch.nn.functional.normalize(emb, dim=-1)
    T = pair_targets(Y)
    pos, neg = [], []
    for i, j in itertools.permutations(range(len(z)), 2):
        err = (float(z[i] @ z[j]) - float(T[i, j])) ** 2
        (pos if T[i, j] > 0 else neg).append(err)
    return (np.mean(pos) + np.mean(neg)) / 2


@pytest.mark.parametrize("multi", [False, True])
def test_losses_match_slow_references(multi):
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 5, generator=g, dtype=torch.float64)
    if multi:
        Y = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [0, 0], [1, 1]], dtype=torch.float64)
    else:
        Y = torch.eye(3, dtype=torch.float64)[torch.tensor([0, 0, 1, 1, 2, 2, 0])]
    assert float(supcon_loss(emb, Y, 0.1)) == pytest.approx(_slow_supcon(emb, Y, 0.1), rel=1e-9)
    assert float(cosine_pair_loss(emb, Y)) == pytest.approx(_slow_cosine(emb, Y), rel=1e-9)


def test_supcon_without_positives_is_zero_with_zero_gradient():
    emb = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(emb, torch.eye(3), 0.1)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(emb.grad) == 0


def test_balanced_batches_have_positives_and_use_rows_evenly():
    labels = np.repeat(np.arange(6), [40, 40, 40, 40, 40, 5])
    Y = np.eye(6, dtype=np.float32)[labels]
    batches = balanced_batches(Y, 16, 60, np.random.default_rng(0))
    assert all(len(b) == 16 and len(set(b.tolist())) == 16 for b in batches)
    for b in batches:  # nearly every row has a same-class partner in its batch
        counts = np.bincount(labels[b], minlength=6)
        assert (counts[labels[b]] >= 2).mean() >= 0.75
    used = np.bincount(np.concatenate(batches), minlength=len(labels))
    assert used[labels < 5].min() >= 1, "every row of the big classes is used"
    again = balanced_batches(Y, 16, 60, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    small = balanced_batches(Y[:10], 16, 3, np.random.default_rng(0))
    assert all(np.array_equal(b, np.arange(10)) for b in small), "N <= batch: all rows, all pairs"


def test_pair_budget_is_fixed_by_steps_not_by_rows():
    est = get_technique("contrastive")
    assert est.planned_steps(48) == 20  # 8 rows x 6 classes: the minimum
    assert est.planned_steps(640) == 120  # 6 passes of 640 rows in batches of 32
    assert est.planned_steps(50_000) == 300  # capped
    assert est.planned_steps(50_000) * 32 * 31 // 2 == 148_800  # pairs, not millions
    assert get_technique("contrastive", steps=7).planned_steps(50_000) == 7


def test_rows_that_fit_in_one_batch_train_min_passes_steps():
    est = get_technique("contrastive")
    assert est.planned_steps(16) == 10  # 8 rows x 2 classes: every step sees every row, 10 passes
    assert est.planned_steps(32) == 10  # exactly one batch
    assert est.planned_steps(33) == 20  # two batches a pass: the min_steps floor
    assert (
        get_technique("contrastive", min_passes=3).planned_steps(16) == 6
    )  # epochs=6 passes above the floor
    assert get_technique("contrastive", min_passes=30).planned_steps(16) == 20  # never above min_steps
    assert get_technique("contrastive", batch_size=8).planned_steps(16) == 20  # two batches a pass


def test_tuning_pulls_classes_apart(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))

    def separation(backbone):
        z = torch.nn.functional.normalize(
            torch.from_numpy(backbone.encode(text_data.inputs, progress=False)), dim=-1
        )
        same = np.equal.outer(text_data.labels, text_data.labels)
        S = (z @ z.T).numpy()
        off = ~np.eye(len(S), dtype=bool)
        return S[same & off].mean() - S[~same].mean()

    est = get_technique("contrastive", backbone=bb, lr=1e-3, **{**FAST, "steps": 30}).tune_encoder(text_data)
    assert separation(est.backbone_) > separation(bb) + 0.1
    assert est.history_[-1]["train_loss"] < est.history_[0]["train_loss"]


def test_phases_are_public_and_fit_runs_both(tiny_bert_dir, text_data, text_test):
    bb = get_backbone(str(tiny_bert_dir))
    with pytest.raises(ParameterError, match="call tune_encoder"):
        get_technique("contrastive", backbone=bb, **FAST).fit_head(text_data)
    whole = get_technique("contrastive", backbone=bb, **FAST).fit(text_data)
    phased = get_technique("contrastive", backbone=bb, **FAST).tune_encoder(text_data).fit_head(text_data)
    np.testing.assert_allclose(phased.predict_proba(text_test), whole.predict_proba(text_test), atol=1e-6)
    # the head can be refitted on other labelled rows without tuning again
    half = text_data.subset(np.arange(0, len(text_data), 2))
    refit = phased.fit_head(half)
    assert refit.predict_proba(text_test).shape == (len(text_test), 3)
    assert whole.pairs_seen_ == whole.steps_ * 16 * 15 // 2


def test_single_label_techniques_refuse_label_sets(tiny_bert_dir):
    texts, labels = make_multilabel(30)
    data = Dataset(texts, labels, "text", "multi.csv")
    with pytest.raises(DataError, match="multi.csv.*label sets.*--technique contrastive"):
        get_technique("probe", backbone=get_backbone(str(tiny_bert_dir)), progress=False).fit(data)


def test_multilabel_end_to_end(tiny_bert_dir, tmp_path):
    texts, labels = make_multilabel(90, seed=0)
    test_texts, test_labels = make_multilabel(30, seed=1)
    data, test = Dataset(texts, labels, "text", "m"), Dataset(test_texts, test_labels, "text", "m-test")
    assert data.multilabel and data.classes == sorted(CLASS_WORDS)
    bb = get_backbone(str(tiny_bert_dir))
    est = get_technique("contrastive", backbone=bb, lr=1e-3, **{**FAST, "steps": 30}).fit(data)
    proba = est.predict_proba(test)
    assert proba.shape == (30, 3) and not np.allclose(proba.sum(1), 1.0)  # one sigmoid per label
    pred = est.predict(test)
    assert all(isinstance(p, tuple) for p in pred)
    m = classification_metrics(test.labels, pred, est.classes_)
    assert m["multilabel"] and m["micro_f1"] >= 0.8, m  # words name their classes: easy

    loaded = load_artifact(save_artifact(est, tmp_path / "m", embed_backbone=True))
    np.testing.assert_allclose(loaded.predict_proba(test), proba, atol=1e-6)
    assert list(loaded.predict(test)) == list(pred)

    r = fit_run(data, test=test, backbone=bb, technique="contrastive", params={**FAST, "steps": 5})
    assert r.metrics["multilabel"] and 0.0 <= r.metrics["accuracy"] <= 1.0


def test_multilabel_data_layer(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("text,labels\nball and code,sports|tech\nsoup,food\nnothing here,\n")
    ds = load_text(p, label_sep="|")
    assert ds.labels == [("sports", "tech"), ("food",), ()]
    assert ds.multilabel and ds.classes == ["food", "sports", "tech"]
    assert ds.class_counts() == {"food": 1, "sports": 1, "tech": 1}
    assert multi_hot(ds.labels, ds.classes).sum() == 3
    labels = [("a",)] * 20 + [("a", "b")] * 4 + [("c",)] * 10
    assert strata(labels)[20] == "b"  # the rarest label of the set
    s = stratified_split(labels, val_size=0.0, test_size=0.25, seed=0)
    assert len(set(s.train) & set(s.test)) == 0 and len(s.train) + len(s.test) == len(labels)
    assert any(labels[i] == ("a", "b") for i in s.test)
    picks = few_shot(labels, 3, seed=0)
    counts = {c: sum(c in labels[i] for i in picks) for c in "abc"}
    assert all(v >= 3 for v in counts.values())


def test_the_default_lr_shrinks_with_the_text_encoders_width():
    """lr="auto" is 1e-4 up to all-MiniLM-L6-v2's width (384) and 1e-4 * 384 / width above it (all-mpnet-base-v2,
    768: 5e-5); an lr given, and images, are left alone."""
    from types import SimpleNamespace

    from warmstart.techniques.contrastive import Contrastive

    def bb(width, modality="text"):
        return SimpleNamespace(
            modality=modality, module=SimpleNamespace(config=SimpleNamespace(hidden_size=width))
        )

    auto = Contrastive(progress=False)
    assert auto._base_lr(bb(384)) == 1e-4 and auto._base_lr(bb(32)) == 1e-4
    assert auto._base_lr(bb(768)) == pytest.approx(5e-5) and auto._base_lr(bb(1024)) == pytest.approx(3.75e-5)
    assert auto._base_lr(bb(768, "image")) == 1e-4
    assert Contrastive(lr=3e-4, progress=False)._base_lr(bb(768)) == 3e-4
    no_config = SimpleNamespace(modality="text", module=object(), num_features=768)
    assert auto._base_lr(no_config) == pytest.approx(5e-5)
