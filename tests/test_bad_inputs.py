"""Bad inputs a user can give, walked through the command line: each is one line on stderr naming the bad value,
exit status 2, and no traceback. Plus silent misreads that are now errors or fixed, and a bounded fuzz test of the
loaders: any input either loads or raises a WarmstartError."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import make_sentences
from warmstart.artifact import save_artifact
from warmstart.cli import main
from warmstart.errors import WarmstartError


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_bert_dir):
    """A good CSV, an image folder, and a fitted artifact to damage."""
    from warmstart.data import Dataset
    from warmstart.techniques import get_technique

    root = tmp_path_factory.mktemp("bad")
    texts, labels = make_sentences(6)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(root / "good.csv", index=False)
    (root / "dup.csv").write_text("text,text\nhello there,pos\nbye now,neg\n")
    pd.DataFrame({"text": list(range(len(labels))), "label": labels}).to_parquet(root / "ints.parquet")
    for cls in ("a", "b"):
        (root / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * i + (cls == "b") * 120, np.uint8)).save(
                root / "imgs" / cls / f"{i}.png"
            )
    (root / "huge").mkdir()
    (root / "huge" / "a").mkdir()
    Image.new("1", (20000, 20000)).save(root / "huge" / "a" / "big.png")  # a few KB on disk, 400M pixels
    est = get_technique("probe", backbone=str(tiny_bert_dir), progress=False).fit(
        Dataset(texts, labels, "text")
    )
    save_artifact(est, root / "art", embed_backbone=True)
    return root


def _damaged(files, tmp_path, how: str):
    """A copy of the artifact damaged in one way, with its manifest made to agree where that is the point."""
    import shutil

    from warmstart._io import sha256_file

    art = tmp_path / f"art-{how}"
    shutil.copytree(files / "art", art)
    if how == "manifest-list":
        (art / "manifest.json").write_text("[1, 2]")
        return art
    if how == "no-technique":
        meta = json.loads((art / "warmstart.json").read_text())
        del meta["technique"]
        (art / "warmstart.json").write_text(json.dumps(meta))
    elif how == "bad-safetensors":
        (art / "head.safetensors").write_bytes(b"\x00" * 40)
    elif how == "unlisted":
        (art / "evil.py").write_text("import os\n")
        return art
    listed = [p for p in art.rglob("*") if p.is_file() and p.name != "manifest.json"]
    manifest = {str(p.relative_to(art)): sha256_file(p) for p in listed}
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


CASES = {
    # id: (argv with {root} and {art}, a string the message must contain)
    "unknown --param": (["fit", "--data", "{root}/good.csv", "--param", "CC=1", "-o", "{tmp}/o"], "'CC'"),
    "unknown lora param": (
        ["fit", "--data", "{root}/good.csv", "--technique", "lora", "--param", "rank=4", "-o", "{tmp}/o"],
        "'rank'",
    ),
    "unknown encoding": (
        ["fit", "--data", "{root}/good.csv", "--encoding", "nope", "-o", "{tmp}/o"],
        "'nope'",
    ),
    "image_size=abc": (
        ["fit", "--data", "{root}/imgs", "--backbone", "efficientnet-lite0:image_size=abc", "-o", "{tmp}/o"],
        "'abc'",
    ),
    "image_size=0": (
        ["fit", "--data", "{root}/imgs", "--backbone", "efficientnet-lite0:image_size=0", "-o", "{tmp}/o"],
        "Got 0",
    ),
    "image_size=-5": (
        ["fit", "--data", "{root}/imgs", "--backbone", "efficientnet-lite0:image_size=-5", "-o", "{tmp}/o"],
        "Got -5",
    ),
    "20000x20000 image": (["fit", "--data", "{root}/huge", "-o", "{tmp}/o"], "over the pixel limit"),
    "manifest not a dict": (["predict", "{art:manifest-list}", "{root}/good.csv"], "not a manifest"),
    "warmstart.json without technique": (
        ["predict", "{art:no-technique}", "{root}/good.csv"],
        "lacks the technique",
    ),
    "corrupt safetensors": (["predict", "{art:bad-safetensors}", "{root}/good.csv"], "head.safetensors"),
    "unlisted file": (["predict", "{art:unlisted}", "{root}/good.csv"], "evil.py"),
    "duplicate header": (["fit", "--data", "{root}/dup.csv", "-o", "{tmp}/o"], "'text' more than once"),
    "int text column": (["fit", "--data", "{root}/ints.parquet", "-o", "{tmp}/o"], "holds a int"),
    "unknown device": (["fit", "--data", "{root}/good.csv", "--device", "tpu", "-o", "{tmp}/o"], "'tpu'"),
    "zero budget": (
        ["fit", "--data", "{root}/good.csv", "--technique", "auto", "--budget", "0s", "-o", "{tmp}/o"],
        "'0s'",
    ),
    "output is a file": (["fit", "--data", "{root}/good.csv", "-o", "{root}/good.csv"], "is a file"),
    "output under a file": (["fit", "--data", "{root}/good.csv", "-o", "{root}/good.csv/run"], "is a file"),
    "output is the current folder": (["fit", "--data", "{root}/good.csv", "-o", "."], "folder of its own"),
    "predict onto its input": (
        ["predict", "{root}/art", "{root}/good.csv", "-o", "{root}/good.csv"],
        "the input being predicted on",
    ),
    "predict into the artifact": (
        ["predict", "{root}/art", "{root}/good.csv", "-o", "{root}/art/metrics.json"],
        "inside the artifact",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_it(case, files, tmp_path, tiny_bert_dir, capsys, monkeypatch):
    argv, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    args = []
    for a in argv:
        if a.startswith("{art:"):
            args.append(str(_damaged(files, tmp_path, a[5:-1])))
        else:
            args.append(a.format(root=files, tmp=tmp_path))
    if args[0] == "fit" and "--backbone" not in args:
        args += ["--backbone", str(tiny_bert_dir)]
    before = (files / "good.csv").read_bytes()
    assert main(args) == 2, case
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and expected in err, err
    assert (files / "good.csv").read_bytes() == before  # no input was touched


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in: a 0o555 folder, or for root (who may write anywhere) a
    sysfs folder, where even root cannot create files."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import tempfile

        try:
            os.close(tempfile.mkstemp(dir="/sys")[0])
        except OSError:
            return "/sys"
        pytest.skip("running as root with no read-only folder to try")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return str(locked)


def test_a_read_only_output_is_refused_before_any_work(files, tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """fit and predict refuse an --output they cannot write at once, naming it, not after training."""
    from warmstart.techniques import tuned

    locked = _unwritable_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    started = []
    monkeypatch.setattr(tuned.TunedTechnique, "fit", lambda *a, **k: started.append(1))
    argv = [
        "fit",
        "--data",
        str(files / "good.csv"),
        "--backbone",
        str(tiny_bert_dir),
        "--technique",
        "finetune",
    ]
    assert main([*argv, "-o", f"{locked}/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: ")
        and "cannot write in" in err
        and locked in err
        and len(err.splitlines()) == 1
    )
    assert started == []  # refused before the fit started
    assert main(["predict", str(files / "art"), str(files / "good.csv"), "-o", f"{locked}/p.csv"]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from warmstart.data.image import read_image

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    arr = read_image(tmp_path / "deep.png")
    assert arr.dtype == np.uint8 and arr.shape == (64, 64, 3)
    assert (arr == 255).mean() < 0.01 and arr.max() >= 250 and arr.min() == 0  # was: 99.6% clipped to 255
    np.testing.assert_allclose(arr[..., 0].astype(float), ramp / 257.0, atol=0.51)
    Image.fromarray(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16), mode="F").save(
        tmp_path / "f.tif"
    )
    f = read_image(tmp_path / "f.tif")
    assert f.min() == 0 and f.max() == 255


def test_a_tampered_feature_cache_entry_is_recomputed(tiny_bert_dir, text_data):
    from warmstart.backbones import get_backbone
    from warmstart.features import FeatureCache

    bb = get_backbone(str(tiny_bert_dir))
    cache = FeatureCache()
    good = np.array(cache.get(bb, text_data, progress=False))
    path = cache.path(cache.key(bb, text_data))
    np.save(
        path, np.random.default_rng(0).normal(size=good.shape).astype(np.float32)
    )  # same shape, wrong values
    with pytest.warns(UserWarning, match="do not match the checksum"):
        again = np.array(cache.get(bb, text_data, progress=False))
    np.testing.assert_array_equal(again, good)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(
    max_examples=int(os.environ.get("WARMSTART_FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize=os.environ.get("WARMSTART_FUZZ_EXAMPLES") is None,  # CI: the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"]))
def test_text_loader_loads_or_raises_a_warmstart_error(tmp_path, data, suffix):
    from warmstart.data import load_text

    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    try:
        load_text(path)
    except WarmstartError:
        pass


@FUZZ
@given(
    text=st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12), min_size=1, max_size=4
        ),
        min_size=1,
        max_size=6,
    )
)
def test_text_loader_on_csv_shaped_input(tmp_path, text):
    from warmstart.data import load_text

    path = tmp_path / "f.csv"
    path.write_text("\n".join(",".join(row) for row in text), encoding="utf-8")
    try:
        load_text(path)
    except WarmstartError:
        pass


@FUZZ
@given(
    data=st.binary(max_size=300),
    head=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"]),
)
def test_image_reader_reads_or_raises_a_warmstart_error(tmp_path, data, head):
    from warmstart.data.image import read_image

    path = tmp_path / "f.png"
    path.write_bytes(head + data)
    try:
        arr = read_image(path)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] == 3
    except WarmstartError:
        pass
