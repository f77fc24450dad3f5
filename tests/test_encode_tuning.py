"""Per-CPU choice of how bf16 text extraction runs (backbones/encode_tuning.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from warmstart.backbones import encode_tuning as et
from warmstart.backbones import get_backbone


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("bias", [True, False])
def test_transposed_linear_computes_what_linear_does(bias):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8, bias=bias)
    x = torch.randn(3, 5, 16)
    np.testing.assert_allclose(et.TransposedLinear(lin)(x).detach(), lin(x).detach(), atol=1e-6)


@pytest.mark.parametrize("attention", et.ATTENTIONS)
@pytest.mark.parametrize("linear", et.LINEARS)
def test_every_candidate_runs_as_asked_and_matches_fp32(
    tiny_bert_dir, text_data, monkeypatch, attention, linear
):
    bb = get_backbone(str(tiny_bert_dir))
    ref = bb.encode(text_data.inputs, progress=False)
    monkeypatch.setenv("WARMSTART_ENCODE_ATTENTION", attention)
    monkeypatch.setenv("WARMSTART_ENCODE_LINEAR", linear)
    monkeypatch.setenv("WARMSTART_ENCODE_TOKENS", "64")
    out = bb.encode(text_data.inputs, progress=False, precision="bf16")
    used = bb.last_encode_settings
    assert (used.attention, used.linear, used.max_batch_tokens) == (attention, linear, 64)
    assert used.source == "default+override"
    copy = bb.inference_module(torch.bfloat16, used)
    assert copy.config._attn_implementation == attention
    transposed = [m for m in copy.modules() if isinstance(m, et.TransposedLinear)]
    assert bool(transposed) == (linear == "transposed")
    assert not any(isinstance(m, torch.nn.Linear) for m in copy.modules()) or linear == "standard"
    assert _cos(out, ref).min() > 0.99


def test_fp32_runs_the_model_itself_unless_another_layout_is_chosen(tiny_bert_dir, text_data, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    own = bb.module.config._attn_implementation
    ref = bb.encode(text_data.inputs, progress=False)
    used = bb.last_encode_settings
    assert (used.attention, used.linear, used.source) == (own, "standard", "default")
    assert bb.inference_module(torch.float32, used) is bb.module
    other = "eager" if own == "sdpa" else "sdpa"
    monkeypatch.setenv("WARMSTART_ENCODE_ATTENTION", other)
    monkeypatch.setenv("WARMSTART_ENCODE_LINEAR", "transposed")
    out = bb.encode(text_data.inputs, progress=False)
    used = bb.last_encode_settings
    assert (used.attention, used.linear, used.source) == (other, "transposed", "default+override")
    copy = bb.inference_module(torch.float32, used)
    assert copy is not bb.module and copy.config._attn_implementation == other
    assert next(copy.parameters()).dtype == torch.float32
    assert any(isinstance(m, et.TransposedLinear) for m in copy.modules())
    assert bb.module.config._attn_implementation == own  # the trained module is untouched
    assert _cos(out, ref).min() > 0.9999


def test_fp32_settings_are_measured_and_cached_apart_from_bf16(tiny_bert_dir, text_data, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    seen = []
    measured = et.EncodeSettings("eager", "transposed", 4096, 0, "measured")
    monkeypatch.setattr(
        et, "calibrate", lambda b, dtype, *a, **k: seen.append((dtype, k["default"])) or measured
    )
    monkeypatch.setattr(et, "MIN_TOKENS", 1)
    bb.encode(text_data.inputs, progress=False, precision="fp32")
    assert bb.last_encode_settings == measured
    own = bb.module.config._attn_implementation
    assert seen == [(torch.float32, et.EncodeSettings(attention=own))]
    bb.encode(text_data.inputs, progress=False, precision="fp32")
    assert bb.last_encode_settings.source == "cached" and len(seen) == 1
    bb.encode(text_data.inputs, progress=False, precision="bf16")  # its own key: measured again
    assert [d for d, _ in seen] == [torch.float32, torch.bfloat16]


def test_calibration_keeps_the_default_when_nothing_is_faster(tiny_bert_dir):
    bb = get_backbone(str(tiny_bert_dir))
    same = lambda module, batch, threads: 1e-6 * batch["input_ids"].numel()  # noqa: E731
    for default in (
        et.EncodeSettings("sdpa", "transposed", 1024),
        et.EncodeSettings("eager", "standard", 4096),
    ):
        got = et.calibrate(bb, torch.float32, 32, timer=same, repeats=1, default=default)
        assert (got.attention, got.linear, got.max_batch_tokens, got.threads) == (
            default.attention,
            default.linear,
            default.max_batch_tokens,
            0,
        )


def _fake_timer(module, batch, threads):
    """Seconds as if SDPA, the transposed layout, large batches and one extra thread were each faster."""
    per_token = 1e-6
    per_token *= 0.5 if module.config._attn_implementation == "sdpa" else 1.0
    per_token *= 0.8 if any(isinstance(m, et.TransposedLinear) for m in module.modules()) else 1.0
    per_token *= 0.7 if batch["input_ids"].numel() > 3000 else 1.0
    per_token *= 0.9 if threads == torch.get_num_threads() + 1 else 1.0
    return per_token * batch["input_ids"].numel()


def test_calibration_keeps_the_fastest_candidate(tiny_bert_dir, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    monkeypatch.setattr(
        et, "_thread_candidates", lambda: [torch.get_num_threads(), torch.get_num_threads() + 1]
    )
    got = et.calibrate(bb, torch.bfloat16, 32, timer=_fake_timer, repeats=1)
    assert got == et.EncodeSettings("sdpa", "transposed", 4096, torch.get_num_threads() + 1, "measured")
    # with the real clock every choice is one of the candidates
    real = et.calibrate(bb, torch.bfloat16, 32, repeats=1)
    assert real.attention in et.ATTENTIONS and real.linear in et.LINEARS
    assert real.max_batch_tokens in et.TOKEN_CAPS and real.source == "measured"


SMALL = np.array([30, 34])
BIG = np.full(et.MIN_TOKENS // 32, 32)


def test_the_length_class_is_the_nearest_power_of_two_within_the_model_limit():
    assert et.length_class(np.array([20, 26, 40]), 128) == 32
    assert et.length_class(np.array([100, 112, 128]), 128) == 128
    assert et.length_class(np.array([300, 310]), 256) == 256
    assert et.length_class(np.array([3, 4]), 128) == 16
    assert et.length_class(np.array([], dtype=int), 128) == 16


def test_settings_are_measured_once_per_cpu_shape_and_length_then_cached(tiny_bert_dir, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    calls = []
    measured = et.EncodeSettings("sdpa", "transposed", 1024, 0, "measured")
    monkeypatch.setattr(et, "calibrate", lambda *a, **k: calls.append(1) or measured)
    assert et.choose(bb, "bf16", torch.bfloat16, SMALL) == et.EncodeSettings()  # too small to measure
    assert not calls
    assert et.choose(bb, "bf16", torch.bfloat16, BIG) == measured
    stored = json.loads(et._cache_path().read_text())
    key = f"{et.settings_key(bb.module.config, 'bf16')} | ~32 tokens"
    assert key in stored and "torch" in key and et.cpu_signature() in key
    assert stored[key]["attention"] == "sdpa"
    again = et.choose(bb, "bf16", torch.bfloat16, SMALL)  # cached: used even for a small encode
    assert (again.attention, again.linear, again.source) == ("sdpa", "transposed", "cached") and len(
        calls
    ) == 1
    assert et.choose(bb, "fp16", torch.float16, SMALL) == et.EncodeSettings()  # another precision's key
    assert et.choose(bb, "bf16", torch.bfloat16, SMALL * 2) == et.EncodeSettings()  # another length class
    monkeypatch.setenv("WARMSTART_ENCODE_TOKENS", "512")
    over = et.choose(bb, "bf16", torch.bfloat16, SMALL)
    assert (over.max_batch_tokens, over.attention, over.source) == (512, "sdpa", "cached+override")
    monkeypatch.delenv("WARMSTART_ENCODE_TOKENS")
    monkeypatch.setenv("WARMSTART_ENCODE_TUNE", "force")
    et.choose(bb, "bf16", torch.bfloat16, SMALL)
    assert len(calls) == 2
    et._cache_path().unlink()
    monkeypatch.setenv("WARMSTART_ENCODE_TUNE", "off")
    assert et.choose(bb, "bf16", torch.bfloat16, BIG) == et.EncodeSettings() and len(calls) == 2


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("WARMSTART_ENCODE_ATTENTION", "flash", "eager, sdpa"),
        ("WARMSTART_ENCODE_LINEAR", "packed", "standard, transposed"),
        ("WARMSTART_ENCODE_TOKENS", "lots", ">= 16"),
        ("WARMSTART_ENCODE_THREADS", "0", ">= 1"),
        ("WARMSTART_ENCODE_TUNE", "sometimes", "auto, off or force"),
    ],
)
def test_a_bad_override_is_named(tiny_bert_dir, text_data, monkeypatch, var, value, says):
    from warmstart.errors import ParameterError

    bb = get_backbone(str(tiny_bert_dir))
    monkeypatch.setenv(var, value)
    with pytest.raises(ParameterError, match=var) as err:
        bb.encode(text_data.inputs, progress=False, precision="bf16")
    assert says in str(err.value)


def test_threads_are_set_for_the_encode_and_restored(tiny_bert_dir, text_data, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    before = torch.get_num_threads()
    seen = []
    real = bb.forward_features
    monkeypatch.setattr(
        bb, "forward_features", lambda **kw: seen.append(torch.get_num_threads()) or real(**kw)
    )
    monkeypatch.setenv("WARMSTART_ENCODE_THREADS", "1")
    bb.encode(text_data.inputs, progress=False, precision="bf16")
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_a_fitted_model_records_how_its_features_were_extracted(tiny_bert_dir, text_data):
    from warmstart.runtime import runtime_of
    from warmstart.techniques import get_technique

    est = get_technique("probe", backbone=str(tiny_bert_dir), precision="bf16", progress=False).fit(text_data)
    record = runtime_of(est)
    assert record["precision"] == "bf16"
    assert record["encode"] == {
        "attention": "eager",
        "linear": "standard",
        "max_batch_tokens": 2048,
        "threads": 0,
        "source": "default",
    }


def test_a_model_that_cannot_switch_attention_keeps_its_own(tiny_bert_dir, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    own = bb.module.config._attn_implementation
    bb.module._can_set_attn_implementation = lambda: False  # as MPNet in transformers 5
    got = et.calibrate(bb, torch.bfloat16, 32, timer=_fake_timer, repeats=1)
    assert (got.attention, got.linear) == ("model", "transposed")
    copy = et.inference_copy(bb.module, torch.bfloat16, "sdpa", "standard")
    assert copy.config._attn_implementation == own
    monkeypatch.setenv("WARMSTART_ENCODE_ATTENTION", "sdpa")
    with pytest.warns(UserWarning, match="cannot change its attention"):
        chosen = et.choose(bb, "bf16", torch.bfloat16, SMALL)
    assert chosen.attention == "model"


def test_a_slow_encoder_is_timed_in_fewer_rounds(tiny_bert_dir):
    import time

    bb = get_backbone(str(tiny_bert_dir))
    calls = []

    def slow(module, batch, threads):
        calls.append(1)
        time.sleep(0.002)
        return 1.0

    et.calibrate(bb, torch.bfloat16, 32, timer=slow, repeats=5, stage_seconds=1e-6)
    # each stage: one warm-up round and one timed round (4 attention x layout candidates, then 3 batch sizes)
    assert len(calls) == 2 * 4 + 2 * 3 + 2 * (len(et._thread_candidates()) > 1) * len(et._thread_candidates())
