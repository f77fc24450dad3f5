"""Image augmentation in training, images decoded once per fit, and test-time augmentation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import make_images
from warmstart.backbones.image import CachedImageSource, ImageBatchSource, ImagePreprocess
from warmstart.data import from_arrays, image_at
from warmstart.errors import ParameterError
from warmstart.techniques import get_technique
from warmstart.techniques.augment import AugmentConfig, BatchAugmenter, tta_views

PRE = ImagePreprocess(resize=(16, 16), crop=None, mean=(127.0,) * 3, std=(128.0,) * 3, rescale=1.0)


def normalised(pixels_0_255: torch.Tensor) -> torch.Tensor:
    return PRE.normalise(pixels_0_255.float())


def augmenter(n_classes: int = 4, **cfg) -> BatchAugmenter:
    return BatchAugmenter(AugmentConfig(**cfg), PRE.mean, PRE.std, PRE.rescale, n_classes)


def asymmetric(n: int) -> torch.Tensor:
    """Images whose left half is bright and right half dark, so a mirror image is easy to tell."""
    x = torch.zeros(n, 3, 16, 16)
    x[..., :8] = 255.0
    return normalised(x)


def test_unit_space_round_trip_is_exact():
    aug = augmenter(policy="light")
    raw = torch.randint(0, 256, (2, 3, 16, 16)).float()
    unit = aug.to_unit(normalised(raw))
    torch.testing.assert_close(unit, raw / 255.0, atol=1e-6, rtol=0)
    torch.testing.assert_close(aug.from_unit(unit), normalised(raw), atol=1e-5, rtol=0)


def test_policy_none_returns_the_batch_untouched():
    x, y = asymmetric(4), torch.arange(4)
    out, targets = augmenter(policy="none")(x, y)
    assert out is x and targets is y


@pytest.mark.parametrize("hflip", [True, False])
def test_horizontal_flip_only_when_asked(hflip):
    torch.manual_seed(0)
    x = asymmetric(64)
    out, _ = augmenter(policy="light", hflip=hflip, crop_scale=1.0)(x, torch.zeros(64, dtype=torch.long))
    left, right = out[..., :8].mean((1, 2, 3)), out[..., 8:].mean((1, 2, 3))
    mirrored = int((right > left).sum())
    if hflip:
        assert 16 < mirrored < 48, mirrored  # about half
    else:
        assert mirrored == 0


def test_augmentation_is_seeded_and_varies_between_draws():
    x, y = asymmetric(8), torch.arange(8) % 4
    aug = augmenter(policy="trivial")
    torch.manual_seed(3)
    a, _ = aug(x, y)
    torch.manual_seed(3)
    b, _ = aug(x, y)
    c, _ = aug(x, y)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)


def class_valued(n_classes: int) -> torch.Tensor:
    """Image i is the constant 40 * (i + 1): a mixed pixel tells which classes it came from."""
    vals = 40.0 * (torch.arange(n_classes, dtype=torch.float32) + 1)
    return normalised(vals.view(-1, 1, 1, 1).expand(-1, 3, 16, 16).clone()), vals / 255.0


def test_mixup_targets_are_the_shares_of_the_blended_images():
    torch.manual_seed(0)
    x, vals = class_valued(4)
    aug = augmenter(policy="none", mixup=1.0)
    out, targets = aug(x, torch.arange(4))
    assert targets.shape == (4, 4)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    # every pixel of a mixed-up image is the targets' blend of the class values
    expected = targets @ vals
    torch.testing.assert_close(aug.to_unit(out)[:, 0, 0, 0], expected, atol=1e-4, rtol=0)


def test_cutmix_targets_are_the_shares_of_pixels():
    torch.manual_seed(1)
    x, vals = class_valued(4)
    aug = augmenter(policy="none", cutmix=1.0)
    out, targets = aug(x, torch.arange(4))
    unit = aug.to_unit(out)[:, 0]
    for i in range(4):
        share_own = float((unit[i] - vals[i]).abs().lt(1e-3).float().mean())
        assert float(targets[i, i]) == pytest.approx(share_own, abs=1e-3)


def test_tta_views():
    x = asymmetric(2)
    views = tta_views(x, hflip=True)
    assert len(views) == 4 and views[0] is x
    torch.testing.assert_close(views[2], x.flip(-1))
    assert len(tta_views(x, hflip=False)) == 2
    flat = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(tta_views(flat, hflip=False)[1], flat)


def test_cached_source_batches_equal_the_per_batch_decoded_ones(tiny_image_backbone, tmp_path):
    from PIL import Image

    imgs, labels = make_images(3, size=20)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    paths = from_arrays(imgs, labels)
    paths.inputs = [str(tmp_path / f"{i}.png") for i in range(len(imgs))]
    for data in (from_arrays(imgs, labels), paths):
        cached = tiny_image_backbone.training_source(data, progress=False)
        assert isinstance(cached, CachedImageSource)
        idx = np.array([4, 0, 7])
        torch.testing.assert_close(
            cached.collate(idx)["pixels"], ImageBatchSource(tiny_image_backbone, data).collate(idx)["pixels"]
        )


def test_over_the_memory_limit_images_are_decoded_per_batch(tiny_image_backbone, monkeypatch, capsys):
    monkeypatch.setenv("WARMSTART_IMAGE_CACHE_MB", "0")
    imgs, labels = make_images(2)
    src = tiny_image_backbone.training_source(from_arrays(imgs, labels))
    assert isinstance(src, ImageBatchSource)
    assert "WARMSTART_IMAGE_CACHE_MB=0" in capsys.readouterr().err


def image_fit(bb, **params):
    imgs, labels = make_images(6, size=32)
    data = from_arrays(imgs, labels)
    est = get_technique(
        "finetune", backbone=bb, epochs=2, min_steps=0, batch_size=6, progress=False, seed=1, **params
    )
    return est.fit(data), data


def test_augmentation_changes_training_and_is_reproducible(tiny_image_backbone):
    plain, data = image_fit(tiny_image_backbone, augment="none")
    a, _ = image_fit(tiny_image_backbone, augment="trivial", hflip=False)
    b, _ = image_fit(tiny_image_backbone, augment="trivial", hflip=False)
    pa, pb, pp = (m.predict_proba(data) for m in (a, b, plain))
    np.testing.assert_allclose(pa, pb, atol=1e-6)
    assert np.abs(pa - pp).max() > 1e-3
    assert a.fitted_config()["augment"] == "trivial" and plain.fitted_config()["augment"] == "none"


def test_label_smoothing_and_mixup_reach_the_loss(tiny_image_backbone):
    base, _ = image_fit(tiny_image_backbone, augment="none")
    smooth, _ = image_fit(tiny_image_backbone, augment="none", label_smoothing=0.3)
    mixed, _ = image_fit(tiny_image_backbone, augment="none", mixup=1.0)
    losses = [m.history_[0]["train_loss"] for m in (base, smooth, mixed)]
    assert len(set(losses)) == 3, losses


def test_training_throughput_counts_every_row_of_every_epoch(tiny_image_backbone):
    est, data = image_fit(tiny_image_backbone, augment="none")
    assert est.fitted_config()["train_rows_per_s"] == est.train_rows_per_s_
    # 18 images x 2 epochs, over the loop's own seconds
    assert est.train_rows_per_s_ == pytest.approx(36 / est.train_seconds_, rel=0.05)


def test_tta_prediction_averages_views(tiny_image_backbone):
    est, data = image_fit(tiny_image_backbone, augment="none")
    plain, tta = est.predict_proba(data), est.predict_proba(data, tta=True)
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)
    assert np.abs(plain - tta).max() > 1e-4
    assert list(est.predict(data, tta=True)) == list(est.classes_[tta.argmax(1)])


def test_image_augmentation_on_text_is_refused(tiny_bert_dir, text_data):
    for params in ({"augment": "trivial"}, {"mixup": 0.5}):
        with pytest.raises(ParameterError, match="the backbone reads text"):
            get_technique("finetune", backbone=str(tiny_bert_dir), progress=False, **params).fit(text_data)
    est = get_technique("finetune", backbone=str(tiny_bert_dir), epochs=1, min_steps=0, progress=False)
    est.fit(text_data)
    assert est.fitted_config()["augment"] == "none"
    with pytest.raises(ParameterError, match="tta=True"):
        est.predict_proba(text_data, tta=True)


def test_contrastive_refuses_augmentation(tiny_image_backbone):
    imgs, labels = make_images(4)
    with pytest.raises(ParameterError, match="does not augment"):
        get_technique("contrastive", backbone=tiny_image_backbone, augment="light").fit(
            from_arrays(imgs, labels)
        )


def test_a_fit_decodes_each_training_image_at_most_twice(tiny_image_backbone, tmp_path, monkeypatch):
    """Once into the cache the epochs read, once for the head's starting features; not once per epoch."""
    from PIL import Image

    import warmstart.data.image as image_mod

    imgs, labels = make_images(4, size=20)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    data = from_arrays(imgs, labels)
    data.inputs = [str(tmp_path / f"{i}.png") for i in range(len(imgs))]
    reads = []
    real = image_mod.read_image
    monkeypatch.setattr(image_mod, "read_image", lambda p: (reads.append(p), real(p))[1])
    get_technique(
        "finetune",
        backbone=tiny_image_backbone,
        epochs=4,
        min_steps=0,
        batch_size=4,
        progress=False,
        use_cache=False,
    ).fit(data)
    assert 0 < len(reads) <= 2 * len(imgs), len(reads)


@pytest.mark.parametrize("shape", [(9, 20, 14), (9, 20, 14, 1), (9, 20, 14, 3), (9, 20, 14, 4)])
@pytest.mark.parametrize("crop", [None, (10, 12)])
def test_a_batch_holds_each_image_as_preprocessed_alone(shape, crop):
    """The batched collate (one normalisation per batch; grayscale resized as one channel) gives the numbers of
    the per-image path, which spreads gray over three channels first: bit for bit, upscaled and downscaled."""
    rng = np.random.default_rng(len(shape) + (crop is not None))
    data = from_arrays(rng.integers(0, 256, shape, dtype=np.uint8), list("abcabcabc"))
    for resize in ((31, 17), (8, 6), (20, 14), 16):
        fits = crop and (isinstance(resize, int) or resize[0] >= 10)  # else no crop; 16 alone: image by image
        pre = ImagePreprocess(resize, crop if fits else None, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
        holder = SimpleNamespace(image_preprocess=pre, preprocess=pre.to_tensor)  # all the source reads
        got = ImageBatchSource(holder, data).collate(np.array([3, 0, 8]))["pixels"]
        want = torch.stack([pre.to_tensor(image_at(data, i)) for i in (3, 0, 8)])
        assert got.shape == want.shape and torch.equal(got, want)
        assert pre.geometry(image_at(data, 0, keep_gray=True)).shape[-1] == (1 if shape[-1] in (14, 1) else 3)
