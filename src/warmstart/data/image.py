"""Loading image classification data from class sub-folders or in-memory arrays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .datasets import Dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000; WARMSTART_MAX_IMAGE_PIXELS changes it


def max_image_pixels() -> int:
    """The one pixel limit for every image file warmstart decodes in fit, predict and export (the server has its
    own per-request limit, ``--max-image-pixels``)."""
    import os

    raw = os.environ.get("WARMSTART_MAX_IMAGE_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    if not raw.strip().isdigit() or int(raw) < 1:
        raise DataError(f"WARMSTART_MAX_IMAGE_PIXELS={raw!r}: give a positive whole number of pixels.")
    return int(raw)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """An (H, W, 3) uint8 array from any Pillow mode, scaling 16-bit and float images instead of clipping them."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 257.0  # 0..65535 -> 0..255
        elif img.mode == "I":  # 32-bit integers: 16-bit data read by some plugins, else the value range
            arr = arr / 257.0 if arr.max() > 255 else arr
        elif arr.size and np.nanmax(arr) <= 1.0:  # float images in [0, 1]
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def _open_error(path: str | Path, e: Exception, limit: int) -> DataError:
    """The one message for each way an image file can fail to open or decode."""
    if isinstance(e, FileNotFoundError):
        return DataError(f"{path}: no such image file.")
    if isinstance(e, Image.DecompressionBombError):
        return DataError(
            f"{path}: over the pixel limit of {limit:,} ({e}). Resize the image, or raise the limit with "
            f"WARMSTART_MAX_IMAGE_PIXELS if it is genuine."
        )
    if isinstance(e, UnidentifiedImageError):
        return DataError(
            f"{path}: not a readable image (unknown or corrupt format). Remove it or re-save it as PNG/JPEG."
        )
    return DataError(
        f"{path}: the image is truncated or corrupt ({e}). Re-export it or remove it from the folder."
    )


def _check_size(path: str | Path, img: Image.Image, limit: int) -> None:
    w, h = img.size
    if w * h > limit:
        raise DataError(
            f"{path}: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,}. Resize the image, or "
            f"raise the limit with WARMSTART_MAX_IMAGE_PIXELS."
        )


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to an ``(H, W, 3)`` uint8 array, with an error naming the file if it cannot.
    Images larger than ``max_image_pixels()`` are refused before they are decoded."""
    limit = max_image_pixels()
    try:
        with Image.open(path) as img:
            _check_size(path, img, limit)
            img.load()  # a full decode: a truncated file fails here with its name, never as a wrong array
            return to_rgb8(img)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _open_error(path, e, limit) from e


# formats whose Pillow ``verify`` finds truncation without decoding pixels
_STRUCTURE_CHECKED = {"PNG", "WEBP"}


def _jpeg_complete(path: str | Path) -> bool:
    """Whether a JPEG file ends its last scan with an end-of-image marker. Inside entropy-coded data 0xFF is
    always followed by 0x00 or a restart marker, so FF D9 after the last start-of-scan marks a whole file;
    a thumbnail's own markers come before the main image's scans."""
    with open(path, "rb") as f:
        data = f.read()
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda") >= 0


def check_image(path: str | Path) -> None:
    """Check an image file without decoding its pixels where its format allows: it opens, its size is under the
    pixel limit, and it is whole (PNG and WebP: Pillow's ``verify`` of chunk lengths and checksums; JPEG: an
    end-of-image marker after the last scan). Other formats, and a JPEG that fails the marker test, are decoded
    to be sure. Either way a bad file is reported by name before any work starts, and a good PNG, JPEG or WebP is
    decoded once, when it is used."""
    limit = max_image_pixels()
    try:
        with Image.open(path) as img:
            _check_size(path, img, limit)
            fmt = img.format
            if fmt in _STRUCTURE_CHECKED:
                img.verify()
                return
        if fmt == "JPEG" and _jpeg_complete(path):
            return
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _open_error(path, e, limit) from e
    read_image(path)


def load_image_folder(root: str | Path, *, verify: bool = True) -> Dataset:
    """Load ``root/<class>/<image>`` files; the sub-folder names are the labels.

    With ``verify`` (the default) every file is checked now without decoding its pixels (``check_image``), so an
    unreadable, oversized or visibly damaged file is reported by name before any work starts; pixels are decoded
    once, when they are used.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder. Image data is a folder with one sub-folder per class.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders. Put each class's images in root/<class name>/.")
    paths: list[str] = []
    labels: list[str] = []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [d.name] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    if verify:
        from tqdm.auto import tqdm

        for p in tqdm(paths, desc="checking images", unit="img", disable=len(paths) < 500, leave=False):
            check_image(p)
    return Dataset(paths, labels, "image", str(root), list(paths))


def from_arrays(
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[object] | None = None,
    source: str = "<arrays>",
) -> Dataset:
    """Wrap in-memory images: ``(N, H, W)`` grayscale or ``(N, H, W, C)`` with C in {1, 3, 4}.

    Float arrays must hold values in [0, 1]; they are scaled to uint8.

    Example:
        >>> ds = from_arrays(np.zeros((4, 8, 8), dtype=np.uint8), ["a", "b", "a", "b"])
        >>> len(ds), ds.classes
        (4, ['a', 'b'])
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"{source}: images must have shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {arr.shape}."
        )
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if np.nanmin(arr) < 0 or np.nanmax(arr) > 1 or np.isnan(arr).any():
                raise DataError(
                    f"{source}: float images must hold values in [0, 1] with no NaN; scale them first."
                )
            arr = np.round(arr * 255).astype(np.uint8)
        elif arr.min() < 0 or arr.max() > 255:
            raise DataError(
                f"{source}: integer images must hold values in [0, 255]; got [{arr.min()}, {arr.max()}]."
            )
        else:
            arr = arr.astype(np.uint8)
    labs = None if labels is None else [str(v) for v in labels]
    return Dataset(arr, labs, "image", source)


def image_at(ds: Dataset, i: int, keep_gray: bool = False) -> np.ndarray:
    """Item ``i`` of an image dataset as ``(H, W, 3)`` uint8; with ``keep_gray``, an in-memory grayscale image
    stays ``(H, W, 1)`` (resizing one channel gives each of three equal channels the same pixels, a third of
    the work; ``ImagePreprocess.batch`` spreads it over three)."""
    item = ds.inputs[i]
    if isinstance(item, (str, Path)):
        return read_image(item)
    arr = np.asarray(item)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[-1] == 1:
        if keep_gray:
            return arr
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return arr
