"""Per-CPU choice of how image extraction runs, in bf16 and fp32 (backbones/image_tuning.py)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from tests.conftest import make_images
from warmstart.backbones import image_tuning as it
from warmstart.data import Dataset
from warmstart.features import FeatureCache


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def images():
    x, labels = make_images(5, size=20, seed=0)
    return Dataset(x, labels, "image", "synthetic")


@pytest.mark.parametrize("cast", it.CASTS)
def test_each_cast_runs_as_asked_and_matches_fp32(tiny_image_backbone, images, monkeypatch, cast):
    ref = tiny_image_backbone.encode(images, progress=False, num_workers=0)
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_CAST", cast)
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_BATCH", "4")
    seen = []
    real = tiny_image_backbone.forward_features

    def spy(pixels, module=None):
        seen.append((len(pixels), pixels.dtype, module is not None, torch.is_autocast_enabled("cpu")))
        return real(pixels, module=module)

    monkeypatch.setattr(tiny_image_backbone, "forward_features", spy)
    out = tiny_image_backbone.encode(images, progress=False, precision="bf16", num_workers=0)
    used = tiny_image_backbone.last_encode_settings
    assert (used.cast, used.batch_size, used.source) == (cast, 4, "default+override")
    assert [s[0] for s in seen] == [4, 4, 4, 3]  # 15 images, 4 per batch
    if cast == "weights":  # the bf16 copy is fed bf16 pixels, outside autocast
        assert all(s[1:] == (torch.bfloat16, True, False) for s in seen)
    else:
        assert all(s[1:] == (torch.float32, False, True) for s in seen)
    assert out.dtype == np.float32 and _cos(out, ref).min() > 0.99
    assert np.abs(out - ref).max() > 0  # really computed in low precision


def test_the_low_precision_copy_follows_weight_changes_and_pickles(tiny_image_backbone):
    bb = tiny_image_backbone
    copy = bb.low_precision_module(torch.bfloat16)
    assert next(copy.parameters()).dtype == torch.bfloat16 and bb.low_precision_module(torch.bfloat16) is copy
    assert next(bb.module.parameters()).dtype == torch.float32  # the model itself is untouched
    with torch.no_grad():
        next(bb.module.parameters()).add_(1.0)  # an optimizer step, in place
    assert bb.low_precision_module(torch.bfloat16) is not copy
    clone = pickle.loads(pickle.dumps(bb))
    assert "_low_copies" not in clone.__dict__ and clone.low_precision_module(torch.bfloat16) is not None


def _fake_timer(forward, pixels):
    """Seconds per call: the weights copy is 30% faster than autocast, and 128 images per batch the fastest."""
    per_image = {32: 1.2, 64: 1.0, 128: 0.8}[len(pixels)]
    return len(pixels) * per_image * (0.7 if forward.cast == "weights" else 1.0)


def test_calibration_keeps_the_fastest_candidate(tiny_image_backbone):
    got = it.calibrate(tiny_image_backbone, torch.bfloat16, timer=_fake_timer, repeats=1)
    assert got == it.ImageEncodeSettings("weights", 128, "measured")
    # within the margin the default stays
    got = it.calibrate(tiny_image_backbone, torch.bfloat16, timer=lambda f, p: len(p) * 1.0, repeats=1)
    assert got == it.ImageEncodeSettings("autocast", 64, "measured")
    real = it.calibrate(tiny_image_backbone, torch.bfloat16, repeats=1, stage_seconds=0.5)
    assert real.cast in it.CASTS and real.batch_size in it.BATCHES and real.source == "measured"


def test_settings_are_measured_once_per_cpu_and_backbone_shape_then_cached(tiny_image_backbone, monkeypatch):
    bb = tiny_image_backbone
    calls = []
    measured = it.ImageEncodeSettings("weights", 32, "measured")
    monkeypatch.setattr(it, "calibrate", lambda *a, **k: calls.append(1) or measured)
    assert it.choose(bb, "bf16", torch.bfloat16, 10) == it.ImageEncodeSettings()  # too few to measure
    assert not calls
    assert it.choose(bb, "bf16", torch.bfloat16, it.MIN_IMAGES) == measured
    key = it.settings_key(bb, "bf16")
    stored = json.loads(it._cache_path().read_text())
    assert stored[key] == {"cast": "weights", "batch_size": 32} and it.cpu_signature() in key
    again = it.choose(bb, "bf16", torch.bfloat16, 10)  # cached: used even for a small encode
    assert (again.cast, again.batch_size, again.source) == ("weights", 32, "cached") and len(calls) == 1
    assert it.choose(bb, "fp16", torch.float16, 10) == it.ImageEncodeSettings()  # another precision's key
    bb.image_size = 48  # another input size is another key
    assert it.choose(bb, "bf16", torch.bfloat16, 10) == it.ImageEncodeSettings()
    bb.image_size = 32
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_CAST", "autocast")
    over = it.choose(bb, "bf16", torch.bfloat16, 10)
    assert (over.cast, over.batch_size, over.source) == ("autocast", 32, "cached+override")
    monkeypatch.delenv("WARMSTART_ENCODE_IMAGE_CAST")
    monkeypatch.setenv("WARMSTART_ENCODE_TUNE", "off")
    it._cache_path().unlink()
    assert (
        it.choose(bb, "bf16", torch.bfloat16, it.MIN_IMAGES) == it.ImageEncodeSettings() and len(calls) == 1
    )


def test_the_feature_cache_key_names_the_cast_used(tiny_image_backbone, images, monkeypatch):
    cache = FeatureCache("unused")
    fp32 = cache.key(tiny_image_backbone, images, "fp32")
    autocast = cache.key(tiny_image_backbone, images, "bf16")
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_CAST", "weights")
    weights = cache.key(tiny_image_backbone, images, "bf16")
    assert len({fp32, autocast, weights}) == 3
    assert cache.key(tiny_image_backbone, images, "fp32") == fp32  # fp32 whatever the bf16 cast


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("WARMSTART_ENCODE_IMAGE_CAST", "fp8", "autocast, weights"),
        ("WARMSTART_ENCODE_IMAGE_BATCH", "0", ">= 1"),
    ],
)
def test_a_bad_override_is_named(tiny_image_backbone, images, monkeypatch, var, value, says):
    from warmstart.errors import ParameterError

    monkeypatch.setenv(var, value)
    with pytest.raises(ParameterError, match=var) as err:
        tiny_image_backbone.encode(images, progress=False, precision="bf16", num_workers=0)
    assert says in str(err.value)


def test_fp32_ignores_the_cast_but_not_the_batch_size(tiny_image_backbone, images, monkeypatch):
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_CAST", "weights")
    tiny_image_backbone.encode(images, progress=False, num_workers=0)
    assert tiny_image_backbone.last_encode_settings == it.ImageEncodeSettings()
    assert "_low_copies" not in tiny_image_backbone.__dict__
    monkeypatch.setenv("WARMSTART_ENCODE_IMAGE_BATCH", "4")
    tiny_image_backbone.encode(images, progress=False, num_workers=0)
    assert tiny_image_backbone.last_encode_settings == it.ImageEncodeSettings(
        "autocast", 4, "default+override"
    )


def test_fp32_calibration_times_the_model_itself_at_each_batch_size(tiny_image_backbone, monkeypatch):
    seen = []

    def timer(forward, pixels):
        seen.append((forward.cast, len(pixels)))
        with torch.inference_mode():
            forward(pixels)
            assert not torch.is_autocast_enabled("cpu")
        return len(pixels) * {32: 1.2, 64: 1.0, 128: 0.8}[len(pixels)]

    got = it.calibrate(tiny_image_backbone, torch.float32, timer=timer, repeats=1)
    assert got == it.ImageEncodeSettings("autocast", 128, "measured")
    assert {c for c, _ in seen} == {"autocast"} and {b for _, b in seen} == set(it.BATCHES)
    assert "_low_copies" not in tiny_image_backbone.__dict__  # no low-precision copy made
    calls = []
    monkeypatch.setattr(it, "calibrate", lambda b, dtype, **k: calls.append(dtype) or got)
    assert it.choose(tiny_image_backbone, "fp32", torch.float32, it.MIN_IMAGES) == got
    assert it.choose(tiny_image_backbone, "fp32", torch.float32, 10).source == "cached"
    assert (
        it.choose(tiny_image_backbone, "bf16", torch.bfloat16, 10) == it.ImageEncodeSettings()
    )  # its own key
    assert calls == [torch.float32]
