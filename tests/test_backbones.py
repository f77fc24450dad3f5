import numpy as np
import pytest
import torch

from warmstart.backbones import (
    EfficientNetLite,
    EfficientNetLiteBackbone,
    TransformerTextBackbone,
    available_backbones,
    get_backbone,
)
from warmstart.errors import BackboneError


def test_registry_lists_packaged_backbones():
    names = set(available_backbones())
    assert {"all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2", "efficientnet-lite0"} <= names


def test_unknown_name_lists_close_matches():
    with pytest.raises(
        BackboneError, match=r"unknown backbone 'all-minilm-l6'\. Did you mean 'all-MiniLM-L6-v2'"
    ):
        get_backbone("all-minilm-l6")
    with pytest.raises(BackboneError, match="warmstart backbones"):
        get_backbone("zzzz")


def test_hub_id_offline_gives_clear_error():
    with pytest.raises(BackboneError, match="(?s)hub id 'nobody-here/no-such-model'.*local folder"):
        get_backbone("nobody-here/no-such-model")


def _hub_cache_with(tmp_path, repo_id, folder):
    """A hub cache laid out as huggingface_hub writes it, holding ``folder``'s files as ``repo_id``."""
    import shutil

    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return tmp_path / "hub"


def test_hub_id_without_network_is_one_probe_then_cache_or_a_clear_error(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """With the hub unreachable (and offline mode not set), a cached id loads from the cache with no retries
    and an uncached one is refused at once; the hub is probed once per process."""
    import socket
    import time

    from huggingface_hub import constants

    from warmstart.backbones import hub

    probes = []

    def no_network(*a, **k):
        probes.append(a)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants, "HF_HUB_CACHE", str(_hub_cache_with(tmp_path, "someorg/tiny", tiny_bert_dir))
    )
    monkeypatch.setattr(hub, "_UNREACHABLE", {})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(
        BackboneError, match=r"hub id 'someorg/absent'.*cannot be reached.*Network is unreachable"
    ):
        get_backbone("hf:someorg/absent")
    bb = get_backbone("hf:someorg/tiny")
    assert bb.encode(["one sentence"], progress=False).shape == (1, 32)
    assert time.perf_counter() - start < 20 and len(probes) == 1
    assert constants.HF_HUB_OFFLINE is True  # the cached copy was read without requests


def test_local_transformers_folder_loads(tiny_bert_dir):
    bb = get_backbone(str(tiny_bert_dir))
    assert isinstance(bb, TransformerTextBackbone)
    feats = bb.encode(["the ball and the team", "code"], progress=False)
    assert feats.shape == (2, 32) and feats.dtype == np.float32
    assert bb.fingerprint() == get_backbone(str(tiny_bert_dir)).fingerprint()  # stable across loads


def test_a_folder_with_a_colon_in_its_name_loads_as_a_folder(tiny_bert_dir, tmp_path):
    import shutil

    folder = (
        tmp_path / "bert:num_layers=1"
    )  # named after an option spec, as a derived backbone's folder may be
    shutil.copytree(tiny_bert_dir, folder)
    bb = get_backbone(str(folder))
    assert bb.encode(["code"], progress=False).shape == (1, 32)
    assert (
        bb.fingerprint() == get_backbone(str(tiny_bert_dir)).fingerprint()
    )  # both layers kept, not cut to 1


def test_length_sorted_dynamic_batches_match_one_at_a_time(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))
    texts = text_data.inputs[:25]
    batched = bb.encode(texts, batch_size=8, progress=False)
    single = np.stack([bb.encode([t], progress=False)[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-5)  # padding and reordering never change a row


def test_batches_are_sorted_and_capped_by_tokens(tiny_bert_dir):
    bb = get_backbone(str(tiny_bert_dir))
    lengths = np.array([5, 50, 7, 49, 3, 6])
    batches = bb.batches(lengths, batch_size=4, max_batch_tokens=100)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 5, 0, 4]]
    for b in batches:
        assert len(b) * lengths[b].max() <= 100


def test_bf16_features_agree_with_fp32(tiny_bert_dir, text_data):
    bb = get_backbone(str(tiny_bert_dir))
    a = bb.encode(text_data.inputs, progress=False)
    b = bb.encode(text_data.inputs, progress=False, precision="bf16")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


def test_bf16_copy_follows_weight_changes_and_pickles(tiny_bert_dir, text_data):
    import pickle

    bb = get_backbone(str(tiny_bert_dir))
    first = bb.encode(text_data.inputs, progress=False, precision="bf16")
    copy_before = bb.inference_module()
    assert bb.inference_module() is copy_before  # unchanged weights: the copy is reused
    assert next(copy_before.parameters()).dtype == torch.bfloat16
    assert next(bb.module.parameters()).dtype == torch.float32  # the trained module stays fp32
    with torch.no_grad():  # an in-place update, as an optimizer step makes
        bb.module.encoder.layer[0].output.dense.weight.mul_(3.0)
    assert bb.inference_module() is not copy_before
    after = bb.encode(text_data.inputs, progress=False, precision="bf16")
    ref = bb.encode(text_data.inputs, progress=False)
    cos = (after * ref).sum(1) / np.linalg.norm(after, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99 and not np.allclose(first, after, atol=1e-3)
    clone = pickle.loads(pickle.dumps(bb))
    np.testing.assert_allclose(
        clone.encode(text_data.inputs, progress=False, precision="bf16"), after, atol=1e-6
    )


def test_fingerprint_changes_with_weights(tiny_bert_dir, tiny_bert_dir_b):
    a, b = get_backbone(str(tiny_bert_dir)), get_backbone(str(tiny_bert_dir_b))
    assert a.fingerprint() != b.fingerprint()
    with torch.no_grad():
        a.module.embeddings.word_embeddings.weight[0, 0] += 1
    a.invalidate_fingerprint()
    assert a.fingerprint() != get_backbone(str(tiny_bert_dir)).fingerprint()


def test_text_backbone_save_and_reload(tiny_bert_dir, tmp_path):
    bb = get_backbone(str(tiny_bert_dir), max_length=16, pooling="cls")
    bb.save(tmp_path / "saved")
    again = get_backbone(str(tmp_path / "saved"))
    assert (again.max_length, again.pooling) == (16, "cls")
    assert again.fingerprint() == bb.fingerprint()


def test_bad_pooling_is_rejected(tiny_bert_dir):
    with pytest.raises(
        BackboneError, match="'pooling' parameter must be one of mean, cls, max, weighted-mean"
    ):
        get_backbone(str(tiny_bert_dir), pooling="median")


def test_efficientnet_lite_shapes_and_same_padding():
    model = EfficientNetLite().eval()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    with torch.no_grad():
        fmap = model.forward_features(torch.zeros(1, 3, 224, 224))
    assert fmap.shape == (1, 1280, 7, 7)


def test_efficientnet_truncated_variant_and_bad_cut():
    assert EfficientNetLite(num_blocks=5).num_blocks == 5
    with pytest.raises(BackboneError, match=r"'num_blocks' parameter must be an int in \[1, 16\]"):
        EfficientNetLite(num_blocks=17)


def test_image_backbone_encode_save_reload(tiny_image_backbone, tmp_path):
    from tests.conftest import make_images

    imgs, _ = make_images(2, size=20)
    feats = tiny_image_backbone.encode(imgs, progress=False)
    assert feats.shape == (6, 64)
    tiny_image_backbone.save(tmp_path / "img")
    again = get_backbone(str(tmp_path / "img"))
    assert isinstance(again, EfficientNetLiteBackbone)
    np.testing.assert_allclose(again.encode(imgs, progress=False), feats, atol=1e-6)
    assert again.fingerprint() == tiny_image_backbone.fingerprint()


def test_grayscale_and_rgba_arrays_become_rgb(tiny_image_backbone):
    gray = np.random.default_rng(0).integers(0, 255, (2, 20, 20), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    np.testing.assert_allclose(
        tiny_image_backbone.encode(gray, progress=False),
        tiny_image_backbone.encode(rgb, progress=False),
        atol=1e-6,
    )


def test_a_path_that_is_neither_a_folder_nor_a_hub_id_is_named():
    from warmstart.backbones.hub import prepare_hub_id

    with pytest.raises(BackboneError, match="'a/b/c': no such folder, and not a hub id"):
        prepare_hub_id("a/b/c")
    with pytest.raises(BackboneError, match="not a hub id"):
        get_backbone("hf:a/b/c")


def test_encode_takes_a_dataset_or_its_inputs_in_every_family(tiny_bert_dir, tiny_image_backbone):
    """Callers pass the Dataset whatever the modality (they branched on it before)."""
    from tests.conftest import make_images, make_sentences
    from warmstart.backbones import get_backbone
    from warmstart.data import Dataset, from_arrays

    texts, _ = make_sentences(3)
    text_bb = get_backbone(str(tiny_bert_dir))
    np.testing.assert_array_equal(
        text_bb.encode(Dataset(texts, None, "text"), progress=False), text_bb.encode(texts, progress=False)
    )
    x, _ = make_images(2)
    np.testing.assert_array_equal(
        tiny_image_backbone.encode(from_arrays(x), progress=False),
        tiny_image_backbone.encode(x, progress=False),
    )
