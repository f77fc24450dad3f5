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
    cache.get(get_backbone(str(tiny_bert_dir)), text_data, progress=False)
    assert not list(tmp_path.rglob("*.npy"))
