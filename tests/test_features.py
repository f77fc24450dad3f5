import warnings

import numpy as np
import pytest

from warmstart.backbones import get_backbone
from warmstart.data import Dataset
from warmstart.errors import DataError
from warmstart.features import FeatureCache


class Counting:
    """Wraps a backbone and counts encode calls, to prove the cache is (or is not) used."""

    def __init__(self, bb):
        self.bb, self.calls = bb, 0
        orig = bb.encode

        def encode(*a, **k):
            self.calls += 1
            return orig(*a, **k)

        bb.encode = encode


def test_second_get_reads_disk_not_the_model(tiny_bert_dir, text_data, tmp_path):
    bb = get_backbone(str(tiny_bert_dir))
    c = Counting(bb)
    X1 = FeatureCache(tmp_path).get(bb, text_data, progress=False)
    cache2 = FeatureCache(tmp_path)  # a new process would start like this
    X2 = cache2.get(bb, text_data, progress=False)
    assert c.calls == 1 and cache2.hits == 1
    np.testing.assert_array_equal(X1, X2)
    assert isinstance(X2, np.memmap)


def test_changed_data_or_weights_or_precision_never_reuse_stale_entries(
    tiny_bert_dir, tiny_bert_dir_b, text_data, tmp_path
):
    cache = FeatureCache(tmp_path)
    bb = get_backbone(str(tiny_bert_dir))
    cache.get(bb, text_data, progress=False)
    changed = Dataset(text_data.inputs[:-1] + [text_data.inputs[-1] + " ball"], text_data.labels, "text")
    cache.get(bb, changed, progress=False)
    cache.get(get_backbone(str(tiny_bert_dir_b)), text_data, progress=False)
    cache.get(bb, text_data, progress=False, precision="bf16")
    cache.get(get_backbone(str(tiny_bert_dir), max_length=8), text_data, progress=False)
    assert cache.misses == 5 and cache.hits == 0
    cache.get(bb, text_data, progress=False)
    assert cache.hits == 1


def test_crash_mid_write_leaves_no_entry(tiny_bert_dir, text_data, tmp_path, monkeypatch):
    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache(tmp_path)

    def crash(f, arr):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.get(bb, text_data, progress=False)
    monkeypatch.undo()
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("*.tmp"))
    cache.get(bb, text_data, progress=False)
    assert cache.misses == 2 and len(list(tmp_path.rglob("*.npy"))) == 1


def test_corrupt_entry_is_recomputed_with_a_warning(tiny_bert_dir, text_data, tmp_path):
    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache(tmp_path)
    X = np.array(cache.get(bb, text_data, progress=False))
    entry = next(tmp_path.rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable feature-cache entry"):
        X2 = cache.get(bb, text_data, progress=False)
    np.testing.assert_allclose(X, X2)


def test_modality_mismatch_is_explained(tiny_image_backbone, text_data, tmp_path):
    with pytest.raises(DataError, match="text data cannot go through the image backbone"):
        FeatureCache(tmp_path).get(tiny_image_backbone, text_data)


def test_disabled_cache_writes_nothing(tiny_bert_dir, text_data, tmp_path):
    cache = FeatureCache(tmp_path, enabled=False)
    X = cache.get(get_backbone(str(tiny_bert_dir)), text_data, progress=False)
    assert not list(tmp_path.rglob("*.npy")) and (cache.hits, cache.misses) == (0, 1)
    assert X.shape == (len(text_data), 32)


def test_key_separates_how_features_were_computed(tiny_bert_dir, text_data, monkeypatch):
    """Precision, the low-precision method (autocast or a bf16 copy of the weights) and the device type each
    change the key; the preprocessing is hashed whatever its dict order; fp32 ignores the bf16 method."""
    import torch

    from warmstart.backbones.base import Backbone

    cache = FeatureCache("unused")
    bb = get_backbone(str(tiny_bert_dir))
    assert bb.bf16_kind == "weights"
    fp32, bf16 = cache.key(bb, text_data, "fp32"), cache.key(bb, text_data, "bf16")
    monkeypatch.setattr(type(bb), "bf16_kind", "autocast")
    assert cache.key(bb, text_data, "fp32") == fp32  # fp32 is computed the same way whatever the bf16 method
    autocast = cache.key(bb, text_data, "bf16")
    assert len({fp32, bf16, autocast}) == 3
    monkeypatch.setattr(type(bb), "bf16_kind", "weights")
    monkeypatch.setattr(type(bb), "device", property(lambda self: torch.device("meta")))
    assert len({cache.key(bb, text_data, "fp32"), cache.key(bb, text_data, "bf16"), fp32, bf16}) == 4
    monkeypatch.undo()
    config = bb.preprocess_config()
    monkeypatch.setattr(type(bb), "preprocess_config", lambda self: dict(reversed(list(config.items()))))
    assert list(bb.preprocess_config()) != list(config) and cache.key(bb, text_data, "fp32") == fp32
    monkeypatch.setattr(type(bb), "preprocess_config", lambda self: {**config, "extra": 1})
    assert cache.key(bb, text_data, "fp32") != fp32
    assert isinstance(bb, Backbone) and len(fp32) == 40 and cache.path(fp32).parent.name == fp32[:2]


def test_an_entry_records_what_made_it_and_stores_float32(tiny_bert_dir, text_data, tmp_path, monkeypatch):
    import json

    from warmstart.features import _checksum

    bb = get_backbone(str(tiny_bert_dir))
    real = bb.encode
    monkeypatch.setattr(bb, "encode", lambda *a, **k: real(*a, **k).astype(np.float64))  # a float64 encoder
    cache = FeatureCache(tmp_path)
    X = cache.get(bb, text_data, progress=False, precision="fp32")
    assert X.dtype == np.float32 and X.shape == (len(text_data), bb.num_features)
    meta = json.loads(cache.path(cache.key(bb, text_data)).with_suffix(".json").read_text())
    assert meta["backbone"] == bb.reference() and meta["data"] == text_data.source
    assert meta["rows"] == len(text_data) and meta["precision"] == "fp32" and meta["device"] == "cpu"
    assert 0 <= meta["seconds"] < 60 and abs(meta["created"] - __import__("time").time()) < 60
    assert meta["checksum"] == _checksum(np.asarray(X))
    assert (cache.hits, cache.misses) == (0, 1)
    cache.get(bb, text_data, progress=False)
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.parametrize("damage", ["shape", "dtype", "checksum", "no-meta"])
def test_a_wrong_entry_is_removed_and_recomputed(tiny_bert_dir, text_data, tmp_path, damage):
    import json

    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache(tmp_path)
    X = np.array(cache.get(bb, text_data, progress=False))
    path = cache.path(cache.key(bb, text_data))
    if damage == "shape":
        np.save(path, X[:-1])
    elif damage == "dtype":
        np.save(path, X.astype(np.float64))
    elif damage == "checksum":
        meta = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps({**meta, "checksum": "0" * 32}))
    else:
        path.with_suffix(".json").unlink()
    why = {
        "shape": f"float32 \\({len(X) - 1}, 32\\), expected float32 \\({len(X)}, 32\\)",
        "dtype": f"float64 \\({len(X)}, 32\\), expected float32",
        "checksum": "do not match the checksum recorded when it was written",
        "no-meta": "No such file",
    }[damage]
    with pytest.warns(UserWarning, match=f"{path.name}: unreadable feature-cache entry \\(.*{why}"):
        again = cache.get(bb, text_data, progress=False)
    np.testing.assert_allclose(again, X, rtol=1e-6)
    assert cache.misses == 2 and path.is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get(bb, text_data, progress=False)  # the recomputed entry is whole


def test_clear_removes_every_entry_and_its_record(tiny_bert_dir, text_data, tmp_path):
    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache(tmp_path)
    cache.get(bb, text_data, progress=False)
    cache.get(bb, text_data, progress=False, precision="bf16")
    (tmp_path / "notes.txt").write_text("kept")
    assert cache.clear() == 2
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("*.json"))
    assert (tmp_path / "notes.txt").exists() and cache.clear() == 0


def test_default_root_is_under_warmstart_home(monkeypatch, tmp_path):
    monkeypatch.setenv("WARMSTART_HOME", str(tmp_path))
    assert FeatureCache().root == tmp_path / "features"


def test_modality_mismatch_names_the_right_article(tiny_bert_dir, tiny_image_backbone, text_data, tmp_path):
    from warmstart.data import from_arrays

    images = from_arrays(np.zeros((2, 8, 8), np.uint8), ["a", "b"])
    with pytest.raises(DataError, match="pick an image backbone"):
        FeatureCache(tmp_path).get(get_backbone(str(tiny_bert_dir)), images)
    with pytest.raises(DataError, match="pick a text backbone"):
        FeatureCache(tmp_path).get(tiny_image_backbone, text_data)


def test_the_key_format_is_pinned(text_data):
    """Changing what goes into a key silently invalidates every user's cache, so the format is pinned here: a
    deliberate change bumps FORMAT_VERSION and this test together."""
    import hashlib
    from types import SimpleNamespace

    import torch

    from warmstart.features import FORMAT_VERSION

    def key_of(how, **kw):
        kind = kw.pop("kind", "weights")
        fields = dict(fingerprint=lambda: "fp", preprocess_config=lambda: {"b": 2, "a": 1})
        if "feature_kind" in kw:
            fields["feature_kind"] = kw.pop("feature_kind")
        bb = SimpleNamespace(
            device=torch.device(kw.pop("device", "cpu")),
            low_precision_kind=lambda precision, n_rows: kind,
            **fields,
        )
        return FeatureCache("unused").key(bb, text_data, how)

    def expected(how):
        parts = [f"v{FORMAT_VERSION}", "fp", text_data.fingerprint(), '{"a": 1, "b": 2}', how]
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=20).hexdigest()

    assert FORMAT_VERSION == 1
    assert key_of("fp32") == expected("fp32")
    assert key_of("bf16") == expected("bf16-weights")
    assert key_of("bf16", kind="autocast") == expected("bf16")
    assert key_of("fp32", kind="autocast") == expected("fp32")
    assert key_of("fp32", device="meta") == expected("fp32@meta")
    assert key_of("bf16", device="meta") == expected("bf16-weights@meta")
    # a backbone that computes its features its own way (a static one's fp16 lookup) says so after the precision
    assert key_of("fp32", feature_kind="fp16-lookup") == expected("fp32+fp16-lookup")
    assert key_of("bf16", feature_kind="fp16-lookup", device="meta") == expected(
        "bf16-weights+fp16-lookup@meta"
    )


def test_a_probe_keeps_features_of_datasets_but_not_of_bare_inputs(tiny_bert_dir, text_data, tmp_path):
    """`warmstart serve` and `predict` on a few texts hand a probe bare lists, request by request: read from
    the cache if there, never written (a server would otherwise leave a file per request); Datasets (a study's
    test rows) are kept."""
    from warmstart.techniques import get_technique

    est = get_technique("probe", backbone=str(tiny_bert_dir), cache_dir=str(tmp_path), progress=False)
    est.fit(text_data)
    entries = sorted(tmp_path.rglob("*.npy"))
    assert len(entries) == 1  # the training rows
    texts = ["a new request", "and another one"]
    first = est.predict_proba(texts)
    np.testing.assert_allclose(est.predict_proba(texts), first)
    assert sorted(tmp_path.rglob("*.npy")) == entries
    test = Dataset(texts, None, "text", "test rows")
    np.testing.assert_allclose(est.predict_proba(test), first, atol=1e-6)
    assert len(sorted(tmp_path.rglob("*.npy"))) == 2
    np.testing.assert_allclose(
        est.predict_proba(text_data), est.predict_proba(list(text_data.inputs)), atol=1e-6
    )
    assert est.cache_.hits >= 1  # the training rows' entry is read, whichever way they come
