"""Conformance over backbone families: tiny random configs of every Hugging Face text and vision family that
warmstart supports, saved to a folder as a user would have them, found by their config, encoded, trained with
every technique, saved and reloaded with identical predictions, and exported to ONNX with its parity check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_images, save_tiny_tokenizer
from warmstart.artifact import load_artifact, save_artifact
from warmstart.backbones import get_backbone
from warmstart.data import from_arrays
from warmstart.errors import BackboneError
from warmstart.techniques import available_techniques, get_technique

TEXT = ["roberta", "xlm-roberta", "deberta-v2", "mpnet", "modernbert", "distilbert"]
VISION = ["vit", "deit", "dinov2", "beit", "swin", "convnext", "convnextv2", "resnet", "clip", "siglip"]
HIERARCHICAL = {"swin", "convnext", "convnextv2", "resnet"}
FAST = {
    "epochs": 1,
    "min_steps": 0,
    "batch_size": 16,
    "progress": False,
    "precision": "fp32",
    "device": "cpu",
}
SQUARE = {
    "do_resize": True,
    "size": {"height": 32, "width": 32},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5] * 3,
    "image_std": [0.5] * 3,
}
CROPPED = {
    "do_resize": True,
    "size": {"shortest_edge": 32},
    "do_center_crop": True,
    "crop_size": {"height": 32, "width": 32},
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
}


def _text_model(family: str, vocab: int):
    import transformers as tf

    small = dict(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        pad_token_id=0,
    )
    if family == "roberta":
        return tf.RobertaModel(tf.RobertaConfig(**small, max_position_embeddings=80), add_pooling_layer=False)
    if family == "xlm-roberta":
        return tf.XLMRobertaModel(
            tf.XLMRobertaConfig(**small, max_position_embeddings=80), add_pooling_layer=False
        )
    if family == "deberta-v2":
        cfg = tf.DebertaV2Config(
            **small,
            max_position_embeddings=64,
            relative_attention=True,
            position_buckets=16,
            pos_att_type=["p2c", "c2p"],
            type_vocab_size=0,
        )
        return tf.DebertaV2Model(cfg)
    if family == "mpnet":
        return tf.MPNetModel(tf.MPNetConfig(**small, max_position_embeddings=80), add_pooling_layer=False)
    if family == "modernbert":
        cfg = tf.ModernBertConfig(
            **small,
            max_position_embeddings=64,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
            local_attention=16,
        )
        return tf.ModernBertModel(cfg)
    if family == "distilbert":
        cfg = tf.DistilBertConfig(
            vocab_size=vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            pad_token_id=0,
            max_position_embeddings=64,
        )
        return tf.DistilBertModel(cfg)
    raise AssertionError(family)


TINY_TEXT_TOWER = dict(
    vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
)


def _vision_model(family: str):
    import transformers as tf

    vit = dict(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    stages = dict(num_channels=3, hidden_sizes=[16, 32], depths=[1, 1])
    if family == "vit":
        return tf.ViTModel(tf.ViTConfig(**vit)), SQUARE
    if family == "deit":
        return tf.DeiTModel(tf.DeiTConfig(**vit), add_pooling_layer=False), SQUARE
    if family == "dinov2":
        cfg = tf.Dinov2Config(**{k: v for k, v in vit.items() if k != "intermediate_size"}, mlp_ratio=2)
        return tf.Dinov2Model(cfg), CROPPED
    if family == "beit":
        return tf.BeitModel(tf.BeitConfig(**vit, use_mean_pooling=True)), SQUARE
    if family == "swin":
        cfg = tf.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4
        )
        return tf.SwinModel(cfg), SQUARE
    if family == "convnext":
        return tf.ConvNextModel(tf.ConvNextConfig(**stages, num_stages=2)), {
            **CROPPED,
            "crop_pct": 0.875,
            "do_center_crop": False,
        }
    if family == "convnextv2":
        return tf.ConvNextV2Model(tf.ConvNextV2Config(**stages, num_stages=2)), SQUARE
    if family == "resnet":
        return tf.ResNetModel(tf.ResNetConfig(embedding_size=16, layer_type="basic", **stages)), CROPPED
    if family == "clip":
        cfg = tf.CLIPConfig(
            text_config=TINY_TEXT_TOWER,
            vision_config=vit,
            projection_dim=24,
        )
        return tf.CLIPModel(cfg), CROPPED
    if family == "siglip":
        cfg = tf.SiglipConfig(
            text_config=TINY_TEXT_TOWER,
            vision_config=vit,
        )
        return tf.SiglipModel(cfg), SQUARE
    raise AssertionError(family)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    """One saved folder per family, built once for this module."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    torch.manual_seed(0)
    for fam in TEXT:
        folder = root / fam
        vocab = save_tiny_tokenizer(folder)
        _text_model(fam, vocab).save_pretrained(folder)
        out[fam] = folder
    for fam in VISION:
        folder = root / fam
        model, processor = _vision_model(fam)
        model.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
        out[fam] = folder
    return out


def _data(family: str):
    from tests.conftest import make_sentences
    from warmstart.data import Dataset

    if family in VISION:
        x, y = make_images(6, size=40, seed=0)
        xt, yt = make_images(3, size=40, seed=1)
        return from_arrays(x, y), from_arrays(xt, yt)
    texts, labels = make_sentences(8, seed=0)
    tt, tl = make_sentences(3, seed=1)
    return Dataset(texts, labels, "text", "train"), Dataset(tt, tl, "text", "test")


@pytest.mark.parametrize("family", TEXT + VISION)
def test_family_is_found_by_its_config_and_encodes(family, family_dirs):
    bb = get_backbone(str(family_dirs[family]))
    assert bb.family.startswith(family.split("-v")[0].replace("xlm-roberta", "xlm-roberta"))
    assert bb.modality == ("image" if family in VISION else "text")
    train, _ = _data(family)
    feats = bb.encode(train if family in VISION else train.inputs, progress=False, precision="fp32")
    assert feats.shape == (len(train), bb.num_features) and np.isfinite(feats).all()
    assert np.abs(feats).max() > 0
    again = get_backbone(str(family_dirs[family]))
    assert again.fingerprint() == bb.fingerprint()  # nothing random at load time
    groups = bb.layer_groups()
    assert len(groups) >= 3, (
        groups
    )  # embeddings or stem, then the repeated blocks or stages, found per family
    assert bb.adapter_targets("lora") is not None and bb.adapter_targets("ia3") is not None


@pytest.mark.parametrize("family", TEXT + VISION)
def test_every_technique_trains_on_every_family(family, family_dirs):
    train, test = _data(family)
    for name in sorted(available_techniques()):
        params = {"progress": False, "precision": "fp32", "device": "cpu"} if name == "probe" else dict(FAST)
        est = get_technique(name, backbone=str(family_dirs[family]), **params).fit(train)
        proba = est.predict_proba(test)
        assert proba.shape == (len(test), 3) and np.isfinite(proba).all(), name
        if name not in ("probe", "scratch"):
            assert est.trainable_parameters() < est.total_params_ or name in (
                "finetune",
                "l2sp",
                "lp_ft",
                "contrastive",
            ), name


@pytest.mark.parametrize("family", TEXT + VISION)
def test_save_load_and_onnx_export_keep_the_predictions(family, family_dirs, tmp_path):
    from warmstart.export import export_onnx

    train, test = _data(family)
    est = get_technique("lora", backbone=str(family_dirs[family]), **FAST).fit(train)
    folder = save_artifact(est, tmp_path / "art", embed_backbone=True)
    loaded = load_artifact(folder)
    np.testing.assert_allclose(loaded.predict_proba(test), est.predict_proba(test), atol=1e-6)
    report = export_onnx(folder, tmp_path / "onnx", data=test)  # raises unless parity holds
    assert report.parity["fp32"]["argmax_agreement"] == 1.0


@pytest.mark.parametrize("family", ["mpnet", "vit", "dinov2", "clip", "siglip", "modernbert"])
def test_num_layers_and_random_init_variants(family, family_dirs):
    full = get_backbone(str(family_dirs[family]))
    cut = get_backbone(f"{family_dirs[family]}:num_layers=1")
    assert sum(p.numel() for p in cut.module.parameters()) < sum(p.numel() for p in full.module.parameters())
    rand = get_backbone(f"{family_dirs[family]}:init=random,seed=3")
    assert rand.fingerprint() != full.fingerprint() and rand.name.endswith("init=random,seed=3")


@pytest.mark.parametrize("family", sorted(HIERARCHICAL))
def test_num_layers_on_a_staged_model_keeps_its_first_stages(family, family_dirs):
    """Swin, ConvNeXt and ResNet grow wider stage by stage: num_layers=1 keeps the first stage, whose width the
    feature then has; 0 stages, or more than there are, are refused by name."""
    full = get_backbone(str(family_dirs[family]))
    cut = get_backbone(f"{family_dirs[family]}:num_layers=1")
    x, _ = make_images(2, size=40)
    feats = cut.encode(list(x), progress=False, precision="fp32")
    assert cut.num_features < full.num_features and feats.shape == (6, cut.num_features)
    assert np.isfinite(feats).all()
    with pytest.raises(BackboneError, match=r"must be an int in \[1, 2\] .* counts stages"):
        get_backbone(f"{family_dirs[family]}:num_layers=3")


def test_vision_folder_without_preprocessing_is_refused(family_dirs, tmp_path):
    import shutil

    folder = tmp_path / "vit"
    shutil.copytree(family_dirs["vit"], folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(BackboneError, match="no preprocessor_config.json"):
        get_backbone(str(folder))


def test_hf_prefix_and_hub_id_errors_are_clear():
    with pytest.raises(BackboneError, match="hub id 'nobody/nothing-here': not a local folder"):
        get_backbone("hf:nobody/nothing-here")


def test_a_reset_hugging_face_cnn_has_no_pretrained_running_statistics(family_dirs):
    """scratch's reset_parameters: the model's own initialisation, and BatchNorm statistics back to mean 0 and
    variance 1 (a random network has none to keep, and batchnorm="pretrained" must not keep the loaded ones).
    ResNet's own initialisation resets them in the transformers installed here; the backbone's loop after it
    covers initialisations that do not, so this holds whichever does it."""
    import torch

    bb = get_backbone(str(family_dirs["resnet"]))
    norms = [m for m in bb.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:  # loaded statistics that differ from the initial ones, as a pretrained network's do
        m.running_mean.fill_(0.5)
        m.running_var.fill_(2.0)
    bb.reset_parameters(seed=0)
    assert norms and all(
        torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
        and torch.equal(m.running_var, torch.ones_like(m.running_var))
        for m in norms
    )
