"""Self-training (selftrain.py): class-balanced pseudo-labels, no label leaks, fit/study/CLI plumbing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_sentences
from warmstart.data import Dataset
from warmstart.errors import ParameterError
from warmstart.selftrain import _balanced, base_of, fit_self_training, split_params


def test_balanced_selection_takes_each_predicted_classes_most_confident_share():
    pred = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    conf = np.array([0.9, 0.5, 0.8, 0.7, 0.6, 0.95, 0.99, 0.4])
    # half of each predicted class: class 0 has 6 rows -> 3 (0.99, 0.9, 0.8), class 1 has 2 -> 1 (0.95)
    assert _balanced(pred, conf, 2, 0.5, 0.0, 100).tolist() == [0, 2, 5, 6]
    # a confidence floor drops rows below it, never adds others
    assert _balanced(pred, conf, 2, 1.0, 0.75, 100).tolist() == [0, 2, 5, 6]
    # max_rows is split evenly over the classes: 2 per class
    assert _balanced(pred, conf, 2, 1.0, 0.0, 4).tolist() == [0, 4, 5, 6]
    # a class nothing is predicted as takes nothing
    assert _balanced(pred, conf, 3, 1.0, 0.0, 100).tolist() == list(range(8))


def test_spec_and_options_are_checked():
    assert base_of("probe") is None and base_of("self_train:lp_ft") == "lp_ft"
    for bad in ("self_train:", "self_train:auto", "self_train:self_train:probe"):
        with pytest.raises(ParameterError, match="self_train:BASE"):
            base_of(bad)
    base, opts = split_params({"C": 0.1, "self_train_rounds": 3})
    assert base == {"C": 0.1} and opts["self_train_rounds"] == 3 and opts["self_train_portion"] == 0.5
    for key, value in [
        ("self_train_rounds", 0),
        ("self_train_portion", 0),
        ("self_train_portion", 1.5),
        ("self_train_min_confidence", 1.0),
        ("self_train_max_rows", 2.5),
    ]:
        with pytest.raises(ParameterError, match=key):
            split_params({key: value})


def _probe(tiny_bert_dir):
    from warmstart import get_technique

    return get_technique("probe", backbone=str(tiny_bert_dir), progress=False, C=1.0)


def test_self_training_never_sees_the_unlabelled_rows_labels(tiny_bert_dir):
    texts, labels = make_sentences(4, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    pool_texts, _ = make_sentences(10, seed=5)
    # hidden labels of a class the labelled rows do not have: a leak would make it a class of the model
    pool = Dataset(pool_texts, ["leaked"] * len(pool_texts), "text", "pool")
    model = fit_self_training(_probe(tiny_bert_dir), train, pool, self_train_rounds=2, self_train_portion=1.0)
    assert "leaked" not in model.classes_.tolist()
    rounds = model.self_training_["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and [r["share"] for r in rounds] == [0.5, 1.0]
    assert rounds[1]["rows"] == len(pool) and model.n_train_ == len(train) + len(pool)
    assert sum(rounds[0]["per_class"].values()) == rounds[0]["rows"] >= len(pool) // 2
    assert model.self_training_["unlabeled_rows"] == len(pool)


def test_a_labeler_picks_the_first_rounds_rows_and_the_model_the_later_ones(tiny_bert_dir):
    texts, labels = make_sentences(4, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    pool = Dataset(make_sentences(6, seed=5)[0], None, "text", "pool")
    classes = sorted(set(labels))

    class OneClass:  # a fitted model that calls every row its first class, surely
        classes_ = np.array(classes)

        def predict_proba(self, data):
            out = np.zeros((len(data), len(classes)))
            out[:, 0] = 1.0
            return out

    model = fit_self_training(
        _probe(tiny_bert_dir), train, pool, self_train_rounds=2, self_train_portion=1.0, labeler=OneClass()
    )
    first, second = model.self_training_["rounds"]
    assert first["per_class"] == {c: (len(pool) // 2 if c == classes[0] else 0) for c in classes}  # share 0.5
    assert first["min_confidence_taken"] == 1.0
    assert second["min_confidence_taken"] < 1.0  # the model's own probabilities, not the labeler's
    OneClass.classes_ = np.array(classes[::-1])
    with pytest.raises(ParameterError, match="labeler's classes"):
        fit_self_training(_probe(tiny_bert_dir), train, pool, labeler=OneClass())


def test_self_training_joins_images_of_another_size(tiny_image_backbone):
    """Labelled 16x16 images, unlabelled 24x24 ones from another source (8x8 digits beside 28x28 MNIST):
    the pseudo-labelled rows join the labelled ones as they are, each resized by the backbone."""
    from tests.conftest import make_images
    from warmstart.techniques.probe import LinearProbe

    small, labels = make_images(4, size=16, seed=0)
    large, _ = make_images(5, size=24, seed=1)
    train = Dataset(small, labels, "image", "small")
    pool = Dataset(large, None, "image", "large")
    probe = LinearProbe(backbone=tiny_image_backbone, progress=False, C=1.0)
    model = fit_self_training(probe, train, pool, self_train_rounds=1, self_train_portion=1.0)
    assert model.n_train_ == len(train) + len(pool)
    assert model.predict(pool).shape == (len(pool),)


def test_self_training_predicts_in_chunks_with_the_same_result(tiny_bert_dir, monkeypatch):
    import warmstart.selftrain as st

    texts, labels = make_sentences(3, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    pool = Dataset(make_sentences(6, seed=7)[0], None, "text", "pool")
    whole = fit_self_training(_probe(tiny_bert_dir), train, pool, self_train_rounds=1)
    calls = []
    real = st._predict_chunks

    def spy(est, data):
        calls.append(len(data))
        return real(est, data)

    monkeypatch.setattr("warmstart.data.stream.CHUNK", 5)
    monkeypatch.setattr(st, "_predict_chunks", spy)
    chunked = fit_self_training(_probe(tiny_bert_dir), train, pool, self_train_rounds=1)
    assert chunked.self_training_["rounds"] == whole.self_training_["rounds"]
    probe = Dataset(texts, None, "text")
    np.testing.assert_allclose(chunked.predict_proba(probe), whole.predict_proba(probe), atol=1e-6)
    assert calls == [len(pool)]


def test_fit_run_refuses_unused_or_missing_unlabelled_rows_and_records_rounds(tiny_bert_dir, tmp_path):
    from warmstart.artifact import load_artifact
    from warmstart.run import fit_run

    texts, labels = make_sentences(8, seed=0)
    data = Dataset(texts, labels, "text", "labelled")
    pool = Dataset(make_sentences(5, seed=9)[0], None, "text", "pool")
    opts = dict(backbone=str(tiny_bert_dir), shots=3, params={"progress": False})
    with pytest.raises(ParameterError, match="self_train:probe"):
        fit_run(data, technique="probe", unlabeled=pool, **opts)
    with pytest.raises(ParameterError, match="--unlabeled"):
        fit_run(data, technique="self_train:probe", **opts)
    r = fit_run(
        data,
        technique="self_train:probe",
        unlabeled=pool,
        output=tmp_path / "st",
        **{**opts, "params": {"progress": False, "self_train_rounds": 1}},
    )
    assert r.config["technique"] == "self_train:probe" and r.config["n_train"] == 9
    assert r.config["self_training"]["rounds"][0]["rows"] > 0
    meta = json.loads((tmp_path / "st" / "warmstart.json").read_text())
    assert meta["technique"] == "probe" and meta["fitted"]["self_training"]["unlabeled_rows"] == len(pool)
    assert "self_train_rounds" not in meta["params"]
    model = load_artifact(tmp_path / "st")
    assert model.predict(texts[:4]).tolist() == r.estimator.predict(texts[:4]).tolist()


def test_study_self_trains_on_the_rest_of_the_pool_and_pairs_with_the_base(tiny_bert_dir, tmp_path):
    from warmstart.report import study_markdown
    from warmstart.study import StudyConfig, load_cells, run_study

    texts, labels = make_sentences(12, seed=3)
    data = Dataset(texts, labels, "text", "synthetic")
    cfg = StudyConfig(
        data="synthetic",
        backbone=str(tiny_bert_dir),
        techniques=["probe", "self_train:probe"],
        shots=[2],
        seeds=2,
        params={"self_train:probe": {"self_train_rounds": 1}},
        unlabeled="rest",
    )
    out = tmp_path / "study"
    summary = run_study(data, cfg, out, progress=False)
    names = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert names == [
        "probe-k2-s0.json",
        "probe-k2-s1.json",
        "self_train+probe-k2-s0.json",
        "self_train+probe-k2-s1.json",
    ]
    cells = {(c["technique"], c["seed"]): c for c in load_cells(out)}
    pool = len(json.loads((out / "splits.json").read_text())["pool"])
    st = cells[("self_train:probe", 0)]["self_training"]
    assert st["unlabeled_rows"] == pool - 3 * 2 and st["labelled_rows"] == 6
    assert cells[("probe", 0)]["train_rows"] == cells[("self_train:probe", 0)]["train_rows"]
    row = next(r for r in summary["rows"] if r["technique"] == "self_train:probe")
    assert row["vs_base"]["base"] == "probe" and row["vs_base"]["n"] == 2
    assert "vs the same technique without unlabelled rows" in study_markdown(out)
    # unlabelled rows that no cell uses, and self_train cells without any, are refused
    with pytest.raises(ParameterError, match="self_train:BASE techniques and probes with align only"):
        run_study(
            data, StudyConfig(**{**cfg.__dict__, "techniques": ["probe"]}), tmp_path / "b", progress=False
        )
    with pytest.raises(ParameterError, match="--unlabeled rest"):
        run_study(data, StudyConfig(**{**cfg.__dict__, "unlabeled": None}), tmp_path / "c", progress=False)


def test_study_leaves_test_rows_out_of_unlabelled_rows_from_the_same_source():
    from warmstart.study import _without_test_rows

    pool = Dataset(["a", "b", "c", "d"], None, "text", "other-domain")
    test = pool.subset([1, 3])
    test.labels = ["x", "y"]
    kept = _without_test_rows(pool, test)
    assert kept.inputs == ["a", "c"] and kept.rows == [1, 3]
    assert _without_test_rows(pool, Dataset(["b"], ["x"], "text", "elsewhere")) is pool


def test_cli_fit_self_trains_on_an_unlabelled_file(tiny_bert_dir, tmp_path, capsys):
    from warmstart.cli import main

    texts, labels = make_sentences(6, seed=0)
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels, strict=True)))
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(make_sentences(4, seed=4)[0]) + "\n")
    argv = ["fit", "--data", str(data), "--backbone", str(tiny_bert_dir), "--shots", "3"]
    rc = main(argv + ["--technique", "self_train:probe", "--unlabeled", str(pool), "-o", str(tmp_path / "a")])
    out = capsys.readouterr().out
    assert rc == 0 and "self-training on 12 unlabelled rows" in out and "round 2:" in out
    rc = main(argv + ["--unlabeled", str(pool), "-o", str(tmp_path / "b")])
    assert rc == 2 and "self_train:probe" in capsys.readouterr().err


def test_domain_map_moves_labelled_features_onto_the_target_domain():
    from sklearn.linear_model import LogisticRegression

    from warmstart.techniques.probe import domain_map

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    src = np.c_[np.where(y == 1, 1.0, -1.0), np.zeros(40)] + rng.normal(0, 0.2, (40, 2))
    yt = np.repeat([0, 1], 200)
    # the target domain: shifted by +4 and stretched 3x along the class axis
    tgt = np.c_[3 * np.where(yt == 1, 1.0, -1.0) + 4, np.zeros(400)] + rng.normal(0, 0.2, (400, 2))
    plain = LogisticRegression().fit(src, y).score(tgt, yt)
    assert plain == 0.5  # everything lands on one side of the source boundary
    for how in ("mean", "coral"):
        moved = LogisticRegression().fit(domain_map(src, tgt, how)(src), y).score(tgt, yt)
        assert moved > 0.95, how


def test_probe_alignment_needs_unlabelled_rows_and_uses_them(tiny_bert_dir, tmp_path):
    from warmstart import get_technique
    from warmstart.run import fit_run

    texts, labels = make_sentences(8, seed=0)
    data = Dataset(texts, labels, "text", "labelled")
    pool = Dataset(make_sentences(5, seed=9)[0], None, "text", "pool")
    probe = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, align="coral")
    with pytest.raises(ParameterError, match="unlabeled=rows"):
        probe.fit(data)
    with pytest.raises(ParameterError, match="align='none'"):
        get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(data, unlabeled=pool)
    plain = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, C=1.0).fit(data)
    aligned = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, C=1.0, align="mean")
    aligned.fit(data, unlabeled=pool)
    assert aligned.fitted_config()["n_unlabeled"] == len(pool)
    # the head standardises new rows by the unlabelled domain's mean, not the labelled rows'
    assert not np.allclose(aligned.head_.mean, plain.head_.mean)
    r = fit_run(
        data,
        backbone=str(tiny_bert_dir),
        shots=3,
        technique="probe",
        params={"progress": False, "align": "coral"},
        unlabeled=pool,
    )
    assert r.estimator.n_unlabeled_ == len(pool)


def _bn_means(backbone) -> np.ndarray:
    return np.concatenate(
        [b.numpy().ravel() for n, b in backbone.module.named_buffers() if n.endswith("running_mean")]
    )


def test_adabn_probe_encodes_each_domain_with_its_own_batchnorm_statistics(tiny_image_backbone, tmp_path):
    from tests.conftest import make_images
    from warmstart import get_technique
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.runtime import resolve
    from warmstart.techniques.domain import adabn_copy

    images, labels = make_images(4, seed=0)
    train = Dataset(images, labels, "image", "labelled")
    pool = Dataset(255 - make_images(3, seed=1)[0], None, "image", "inverted")  # the other domain
    kw = dict(backbone=tiny_image_backbone, progress=False, C=1.0, precision="fp32", calibrate="none")
    with pytest.raises(ParameterError, match="unlabeled=rows"):
        get_technique("probe", align="adabn", **kw).fit(train)
    probe = get_technique("probe", align="adabn", **kw).fit(train, unlabeled=pool)
    rt = resolve("cpu", "fp32")
    source, target = (adabn_copy(tiny_image_backbone, d, 128, rt) for d in (train, pool.without_labels()))
    # the model predicts with the unlabelled rows' statistics, and learnt from the labelled rows' own
    np.testing.assert_allclose(_bn_means(probe.backbone_), _bn_means(target), atol=1e-5)
    assert not np.allclose(_bn_means(source), _bn_means(target), atol=1e-3)
    assert not np.allclose(_bn_means(tiny_image_backbone), _bn_means(target), atol=1e-3)
    Xs = source.encode(train, progress=False)
    np.testing.assert_allclose(probe.head_.mean.numpy(), Xs.mean(0), rtol=1e-4, atol=1e-5)
    import torch

    with torch.inference_mode():
        want = probe.head_(torch.from_numpy(target.encode(pool, progress=False))).softmax(-1).numpy()
    np.testing.assert_allclose(probe.predict_proba(pool), want, atol=1e-5)
    assert probe.fitted_config()["n_unlabeled"] == len(pool)
    assert not hasattr(probe, "labelled_backbone_")
    # validation rows are labelled rows: they go through the labelled rows' statistics too
    from warmstart.techniques.probe import LinearProbe

    seen, real = [], LinearProbe.features

    def spy(self, data, store=True, backbone=None):
        seen.append((data.source, (backbone or self.backbone_).fingerprint()))
        return real(self, data, store=store, backbone=backbone)

    val = Dataset(images[::2], labels[::2], "image", "val")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LinearProbe, "features", spy)
        get_technique("probe", align="adabn", **kw).fit(train, val=val, unlabeled=pool)
    assert dict(seen)["val"] == dict(seen)["labelled"] == source.fingerprint()
    # adabn+coral then moves the labelled rows' features onto the unlabelled rows' (their mean, first of all)
    both = get_technique("probe", align="adabn+coral", **kw).fit(train, unlabeled=pool)
    Xt = target.encode(pool, progress=False)
    np.testing.assert_allclose(both.head_.mean.numpy(), Xt.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_bn_means(both.backbone_), _bn_means(target), atol=1e-5)
    # the artifact holds the adapted backbone, and says which one it came from
    save_artifact(probe, tmp_path / "a")
    ref = json.loads((tmp_path / "a" / "backbone.json").read_text())
    assert ref["embedded"] and ref["base"]["fingerprint"] == tiny_image_backbone.fingerprint()
    assert ref["fingerprint"] == target.fingerprint() != ref["base"]["fingerprint"]
    loaded = load_artifact(tmp_path / "a", device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(pool), want, atol=1e-5)
    # self-training: the pseudo-labelled rows go through the unlabelled rows' statistics, the labelled ones not
    model = fit_self_training(
        get_technique("probe", align="adabn", **kw), train, pool, self_train_rounds=1, self_train_portion=1.0
    )
    assert model.n_train_ == len(train) + len(pool)
    joined = np.concatenate([Xs, target.encode(pool, progress=False)])
    np.testing.assert_allclose(model.head_.mean.numpy(), joined.mean(0), rtol=1e-4, atol=1e-5)


def test_adabn_is_refused_for_backbones_without_batchnorm(tiny_bert_dir):
    from warmstart import get_technique

    texts, labels = make_sentences(4, seed=0)
    probe = get_technique("probe", backbone=str(tiny_bert_dir), progress=False, align="adabn")
    with pytest.raises(ParameterError, match="no BatchNorm"):
        probe.fit(Dataset(texts, labels, "text"), unlabeled=Dataset(texts, None, "text"))


def test_self_training_reads_features_of_rows_already_encoded(tiny_bert_dir, monkeypatch):
    from warmstart.backbones.text_transformers import TransformerTextBackbone

    texts, labels = make_sentences(4, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    pool = Dataset(make_sentences(6, seed=8)[0], None, "text", "pool")
    encoded = []
    real = TransformerTextBackbone.encode

    def counting(self, data, *a, **kw):
        encoded.append(len(data))
        return real(self, data, *a, **kw)

    monkeypatch.setattr(TransformerTextBackbone, "encode", counting)
    model = fit_self_training(_probe(tiny_bert_dir), train, pool, self_train_rounds=2)
    # the labelled rows once and the unlabelled rows once; the rounds' joined rows come from the cache
    assert sorted(encoded) == sorted([len(train), len(pool)])
    uncached = get_probe_without_cache(tiny_bert_dir)
    plain = fit_self_training(uncached, train, pool, self_train_rounds=2)
    np.testing.assert_allclose(model.predict_proba(texts), plain.predict_proba(texts), atol=1e-5)


def get_probe_without_cache(tiny_bert_dir):
    from warmstart import get_technique

    return get_technique("probe", backbone=str(tiny_bert_dir), progress=False, C=1.0, use_cache=False)


def test_coral_fine_tuning_pulls_features_towards_the_target_domain(tiny_bert_dir):
    import torch

    from warmstart import get_technique
    from warmstart.techniques.domain import coral_distance

    texts, labels = make_sentences(6, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    # the target domain: the same words shouted and padded with other filler
    target_texts = [t.upper() + " zzz qqq" for t in make_sentences(6, seed=2)[0]]
    target = Dataset(target_texts, None, "text", "target")
    kw = dict(backbone=str(tiny_bert_dir), progress=False, epochs=6, min_steps=0, lr=1e-3, use_cache=False)
    with pytest.raises(ParameterError, match="unlabeled=rows"):
        get_technique("finetune", align="coral", **kw).fit(train)
    with pytest.raises(ParameterError, match="align='none'"):
        get_technique("finetune", **kw).fit(train, unlabeled=target)

    def gap(model):
        bb = model.model_.backbone
        with torch.no_grad():
            fs = bb.forward_features(**bb.batch_source(train).collate(np.arange(len(train))))
            ft = bb.forward_features(**bb.batch_source(target).collate(np.arange(len(target))))
        return float(coral_distance(fs, ft))

    plain = get_technique("finetune", **kw).fit(train)
    aligned = get_technique("finetune", align="coral", align_weight=50.0, **kw).fit(train, unlabeled=target)
    assert aligned.fitted_config()["n_unlabeled"] == len(target)
    assert gap(aligned) < 0.7 * gap(plain)
    assert not aligned.model_.head._forward_pre_hooks  # the hook is gone after training


def test_dann_fine_tuning_trains_with_a_critic_and_leaves_none_behind(tiny_bert_dir, tmp_path, monkeypatch):
    import copy

    import torch

    from warmstart import get_technique
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.techniques import domain, tuned

    made, strengths = [], []

    class Critic(domain.DomainCritic):  # keeps a reference, and the first weights, of the critic fit makes
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append((self, copy.deepcopy(self.state_dict())))

    monkeypatch.setattr(tuned, "DomainCritic", Critic)
    real = domain.dann_coefficient
    monkeypatch.setattr(domain, "dann_coefficient", lambda e, n: strengths.append((e, n)) or real(e, n))

    texts, labels = make_sentences(6, seed=0)
    train = Dataset(texts, labels, "text", "labelled")
    target = Dataset([t.upper() + " zzz qqq" for t in make_sentences(6, seed=2)[0]], None, "text", "target")
    kw = dict(backbone=str(tiny_bert_dir), progress=False, epochs=3, min_steps=0, lr=1e-3, use_cache=False)
    with pytest.raises(ParameterError, match="unlabeled=rows"):
        get_technique("finetune", align="dann", **kw).fit(train)
    plain = get_technique("finetune", **kw).fit(train)
    aligned = get_technique("finetune", align="dann", **kw).fit(train, unlabeled=target)
    assert aligned.fitted_config()["n_unlabeled"] == len(target)
    critic, first = made[0]
    assert any(not torch.equal(v, first[k]) for k, v in critic.state_dict().items())  # it was trained
    assert sorted({e for e, _ in strengths}) == [0, 1, 2] and {n for _, n in strengths} == {3}  # every epoch
    assert aligned.trainable_parameters() == plain.trainable_parameters()  # the critic is not the model's
    assert not hasattr(aligned.model_, "critic") and not aligned.model_.head._forward_pre_hooks
    assert not any(k.startswith("critic.") for k in aligned.model_.state_dict())
    # the critic's loss went into training: the losses differ from the plain run's on the same rows and seed
    assert [h["train_loss"] for h in aligned.history_] != [h["train_loss"] for h in plain.history_]
    folder = save_artifact(aligned, tmp_path / "m", metrics={"accuracy": 0.0})
    proba = aligned.predict_proba(Dataset(texts[:4], None, "text"))
    np.testing.assert_allclose(
        load_artifact(folder).predict_proba(Dataset(texts[:4], None, "text")), proba, atol=1e-6
    )


def test_adapt_tunes_a_text_encoder_without_labels_and_saves_a_backbone(tiny_bert_dir, tmp_path):
    from warmstart.adapt import adapt_backbone
    from warmstart.backbones import get_backbone

    rows = Dataset(make_sentences(8, seed=3)[0], ["hidden"] * 24, "text", "pool")
    out = tmp_path / "adapted"
    rec = adapt_backbone(str(tiny_bert_dir), rows, out, batch_size=8, lr=1e-3, progress=False)
    assert rec["method"] == "simcse" and rec["rows"] == 24 and rec["steps"] == 6  # 24 rows, 4 per batch
    before, after = get_backbone(str(tiny_bert_dir)), get_backbone(str(out))
    assert after.fingerprint() != before.fingerprint()
    texts = rows.inputs[:6]
    a = before.encode(Dataset(texts, None, "text"), progress=False)
    b = after.encode(Dataset(texts, None, "text"), progress=False)
    assert a.shape == b.shape and not np.allclose(a, b)
    # the same command again reuses the folder; another recipe replaces it only when asked
    assert adapt_backbone(str(tiny_bert_dir), rows, out, batch_size=8, lr=1e-3, progress=False)["reused"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="not an adapted backbone"):
        adapt_backbone(str(tiny_bert_dir), rows, tmp_path / "other", progress=False)


def test_simcse_pulls_two_dropout_copies_together_and_pushes_other_rows_apart():
    import torch

    from warmstart.techniques.contrastive import weighted_supcon

    rows = torch.tensor([0, 1, 2, 0, 1, 2])
    same = (rows[:, None] == rows[None, :]).float()
    paired = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]).repeat(2, 1)
    mixed = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    assert weighted_supcon(paired, same, 0.05) < weighted_supcon(mixed, same, 0.05)


def test_adapt_re_estimates_batchnorm_for_images(tiny_image_backbone, tmp_path):
    from tests.conftest import make_images
    from warmstart.adapt import adapt_backbone
    from warmstart.backbones import get_backbone

    images, _ = make_images(6, seed=1)
    rows = Dataset(255 - images, None, "image", "inverted")  # another domain: inverted intensities
    rec = adapt_backbone(tiny_image_backbone, rows, tmp_path / "bn", progress=False)
    assert rec["method"] == "adabn" and rec["steps"] == 0
    before, after = tiny_image_backbone, get_backbone(str(tmp_path / "bn"))
    bn = [n for n, _ in before.module.named_buffers() if n.endswith("running_mean")]
    assert bn
    changed = [
        n
        for n in bn
        if not np.allclose(dict(before.module.named_buffers())[n], dict(after.module.named_buffers())[n])
    ]
    assert changed


def test_cli_adapt(tiny_bert_dir, tmp_path, capsys):
    from warmstart.cli import main

    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(make_sentences(4, seed=4)[0]) + "\n")
    argv = ["adapt", "--backbone", str(tiny_bert_dir), "--unlabeled", str(pool), "-o", str(tmp_path / "a")]
    assert main(argv + ["--batch-size", "4"]) == 0
    assert "adapted by simcse on 12 of 12 rows" in capsys.readouterr().out
    assert main(argv + ["--batch-size", "4"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_alignment_reads_a_seeded_sample_of_many_unlabelled_rows():
    from warmstart.techniques.probe import unlabeled_sample

    rows = Dataset([f"row {i}" for i in range(50)], ["x"] * 50, "text", "many")
    a, b = unlabeled_sample(rows, 0, limit=10), unlabeled_sample(rows, 0, limit=10)
    assert len(a) == 10 and a.rows == b.rows == sorted(a.rows) and a.labels is None
    assert unlabeled_sample(rows, 1, limit=10).rows != a.rows
    assert len(unlabeled_sample(rows, 0, limit=100)) == 50
