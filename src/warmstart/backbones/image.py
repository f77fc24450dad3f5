"""What every image backbone shares: one preprocessing recipe, decoded batches, and ``encode``.

``ImagePreprocess`` is the single description of how an image becomes a model input; training, feature
extraction, the ONNX export (whose graph takes the geometry's 0-255 pixels and normalises inside) and the server
all use it. Its ``geometry`` (resize, then centre-crop) needs only NumPy and Pillow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import Backbone, BatchSource, collated_batches
from .encode_tuning import CopyCache, inference_copy
from .image_tuning import ImageEncodeSettings, low_precision_forward
from .image_tuning import choose as choose_image_settings

RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}  # Pillow's codes


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize, centre-crop, rescale and normalise, as the model's authors preprocess.

    ``resize`` is ``(height, width)`` to resize to exactly, or an int for the shorter edge (aspect kept);
    ``crop`` is the centre crop's ``(height, width)`` or None. Pixel values are multiplied by ``rescale`` and then
    normalised per channel: ``(x * rescale - mean) / std``.

    Example:
        >>> pre = ImagePreprocess(resize=(4, 4), crop=None, mean=(0.5,) * 3, std=(0.5,) * 3, rescale=1 / 255)
        >>> pre.to_tensor(np.full((8, 6, 3), 255, np.uint8)).shape
        torch.Size([3, 4, 4])
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float = 1 / 255
    resample: str = "bilinear"

    @property
    def fixed_size(self) -> bool:
        """Whether every image comes out at one size (a crop, or a resize to exact height and width)."""
        return self.crop is not None or not isinstance(self.resize, int)

    @property
    def output_size(self) -> tuple[int, int]:
        if not self.fixed_size:
            raise ValueError("a shorter-edge resize without a crop has no fixed output size")
        return tuple(self.crop if self.crop is not None else self.resize)

    def geometry(self, image: np.ndarray) -> np.ndarray:
        """An (H, W, 3) uint8 image resized and cropped to the model's input size, still uint8; an (H, W, 1)
        grayscale one stays one channel (Pillow resizes each channel alike)."""
        from PIL import Image

        h, w = image.shape[:2]
        if isinstance(self.resize, int):
            scale = self.resize / min(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
        else:
            size = tuple(self.resize)
        if (h, w) != size:
            gray = image.shape[-1] == 1
            im = Image.fromarray(np.ascontiguousarray(image[..., 0] if gray else image, dtype=np.uint8))
            image = np.asarray(im.resize((size[1], size[0]), RESAMPLE[self.resample]))
            image = image[..., None] if gray else image
        if self.crop is not None:
            ch, cw = self.crop
            h, w = image.shape[:2]
            if h < ch or w < cw:  # pad like the reference processors do, so the crop always fits
                pad = ((max(0, (ch - h + 1) // 2),) * 2, (max(0, (cw - w + 1) // 2),) * 2, (0, 0))
                image = np.pad(image, pad)
                h, w = image.shape[:2]
            top, left = (h - ch) // 2, (w - cw) // 2
            image = image[top : top + ch, left : left + cw]
        return image

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) 0-255 pixels to model input."""
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
        return (pixels * self.rescale - mean) / std

    def batch(self, images: Any) -> torch.Tensor:
        """Images (each ``(H, W, 3)``, or ``(H, W, 1)`` grayscale) through ``geometry``, as one normalised
        ``(n, 3, h, w)`` float batch; the same numbers as ``to_tensor`` one image at a time, normalised once for
        the batch. Needs a fixed output size."""
        h, w = self.output_size
        pixels = np.empty((len(images), h, w, 3), dtype=np.uint8)
        for j, image in enumerate(images):
            pixels[j] = self.geometry(image)
        return self.from_pixels(pixels)

    def from_pixels(self, pixels: np.ndarray) -> torch.Tensor:
        """``(n, h, w, 3)`` uint8 pixels after ``geometry`` to a normalised ``(n, 3, h, w)`` float batch."""
        chw = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        return self.normalise(chw.to(torch.float32, memory_format=torch.contiguous_format))  # one copy

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """One (H, W, 3) uint8 image to a normalised (3, h, w) float tensor."""
        arr = self.geometry(image)
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        return self.normalise(torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resize"] = self.resize if isinstance(self.resize, int) else list(self.resize)
        d["crop"] = list(self.crop) if self.crop is not None else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ImagePreprocess:
        resize = d["resize"] if isinstance(d["resize"], int) else tuple(d["resize"])
        crop = tuple(d["crop"]) if d.get("crop") else None
        return cls(
            resize,
            crop,
            tuple(d["mean"]),
            tuple(d["std"]),
            float(d["rescale"]),
            d.get("resample", "bilinear"),
        )


class ImageBackbone(Backbone):
    """An image backbone: ``image_preprocess`` says how images become ``pixels``; the subclass computes
    ``forward_features(pixels)``."""

    modality = "image"
    last_encode_settings: ImageEncodeSettings | None = None

    @property
    def image_preprocess(self) -> ImagePreprocess:
        raise NotImplementedError

    # -- low precision on a CPU: autocast or a bf16 copy of the weights, measured per CPU (image_tuning.py) ------
    def low_precision_kind(self, precision: str, n_images: int) -> str:
        """How ``encode`` computes ``n_images`` at ``precision`` here: ``autocast`` or ``weights`` (part of the
        feature-cache key); measures this CPU first where ``image_tuning.choose`` says so."""
        return self.encode_settings(precision, n_images).cast

    def encode_settings(self, precision: str, n_images: int) -> ImageEncodeSettings:
        """The batch size (and for bf16/fp16 the cast) for an encode on a CPU, measured there
        (``image_tuning.choose``; in fp32 the cast is recorded as ``autocast``, a no-op); on a GPU autocast at
        64 images per batch."""
        from ..runtime import resolve

        rt = resolve(self.device, precision)
        if rt.device.type != "cpu":
            return ImageEncodeSettings()
        return choose_image_settings(self, rt.precision, rt.amp_dtype or torch.float32, n_images)

    def low_precision_module(self, dtype: torch.dtype) -> torch.nn.Module:
        """A frozen ``dtype`` copy of ``module``, made once and again whenever a weight changes."""
        cache = self.__dict__.get("_low_copies")
        if cache is None:
            cache = self._low_copies = CopyCache()
        return cache.get(self.module, dtype, lambda: inference_copy(self.module, dtype, None, "standard"))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_low_copies", None)  # weak references do not pickle; the copy is remade on first use
        return state

    def _on_moved(self) -> None:
        self.__dict__.pop("_low_copies", None)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One (H, W, 3) uint8 image to a normalised (3, h, w) float tensor."""
        return self.image_preprocess.to_tensor(image)

    # -- the exported graph (export.py): 0-255 pixels at the model's size in, normalised inside, features out ------
    def _pixel_stats(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.image_preprocess
        mean = torch.tensor(pre.mean, device=device).view(3, 1, 1) / pre.rescale
        return mean, torch.tensor(pre.std, device=device).view(3, 1, 1) / pre.rescale

    def export_example(self) -> tuple[tuple[torch.Tensor, ...], list[str], dict]:
        """Example graph inputs, their names and dynamic axes, for ``torch.onnx.export``."""
        h, w = self.image_preprocess.output_size
        return (torch.full((2, 3, h, w), 127.0),), ["pixels"], {"pixels": {0: "batch"}}

    def graph_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features from the exported graph's raw 0-255 pixels (the normalisation is part of the graph)."""
        mean, std = self._pixel_stats(pixels.device)
        return self.forward_features(pixels=(pixels - mean) / std)

    def graph_args(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """A collated batch (``batch_source`` normalises) as the exported graph's raw pixels."""
        mean, std = self._pixel_stats(batch["pixels"].device)
        return (batch["pixels"] * std + mean,)

    def export_preprocessing(self, folder: Path) -> dict:
        """The preprocessing record beside an exported graph (preprocess.json): the geometry and pixel range."""
        h, w = self.image_preprocess.output_size
        return {
            "modality": "image",
            "inputs": ["pixels"],
            "size": int(h) if h == w else [int(h), int(w)],
            "geometry": self.image_preprocess.to_dict(),
            "color": "RGB",
            "range": "0-255 float32, (batch, 3, height, width) after the geometry's resize and crop; "
            "normalisation is inside the graph",
        }

    def batch_source(self, data: Any) -> ImageBatchSource:
        from ..data import Dataset

        return ImageBatchSource(self, data if isinstance(data, Dataset) else Dataset(data, None, "image"))

    def training_source(self, data: Any, progress: bool = True) -> BatchSource:
        """The batches a training run reads every epoch: every image decoded, resized and cropped once and kept
        in memory as uint8 at the model's input size (``CachedImageSource``), unless that would take more
        than ``WARMSTART_IMAGE_CACHE_MB`` (4096) or the preprocessing has no fixed output size; then decoded
        per batch (``ImageBatchSource``), with a note saying so."""
        import os
        import sys

        from ..data import Dataset

        ds = data if isinstance(data, Dataset) else Dataset(data, None, "image")
        pre = self.image_preprocess
        if not pre.fixed_size:
            return ImageBatchSource(self, ds)
        h, w = pre.output_size
        limit_mb = float(os.environ.get("WARMSTART_IMAGE_CACHE_MB", "4096"))
        need_mb = len(ds) * h * w * 3 / 2**20
        if need_mb > limit_mb:
            print(
                f"note: {len(ds):,} training images at {h}x{w} need {need_mb:,.0f} MB in memory, over "
                f"WARMSTART_IMAGE_CACHE_MB={limit_mb:,.0f}; decoding them again every epoch instead.",
                file=sys.stderr,
            )
            return ImageBatchSource(self, ds)
        return CachedImageSource(pre, ds, progress=progress)

    def encode(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        progress: bool = True,
        precision: str = "fp32",
        num_workers: int | str = "auto",
    ) -> np.ndarray:
        """Features of ``inputs``, images decoded ``batch_size`` at a time (default 64; in bf16/fp16 on a CPU,
        as measured there, with autocast or a low-precision copy of the weights: ``encode_settings``), in
        ``num_workers`` worker processes where that pays (``collated_batches``). What it used is kept in
        ``last_encode_settings``."""
        from tqdm.auto import tqdm

        from ..data import Dataset
        from ..runtime import resolve, to_numpy

        ds = inputs if isinstance(inputs, Dataset) else Dataset(inputs, None, "image")
        rt = resolve(self.device, precision)
        settings = self.encode_settings(rt.precision, len(ds))
        if batch_size is not None:
            settings = replace(settings, batch_size=int(batch_size), source=f"{settings.source}+argument")
        self.last_encode_settings = settings
        n, bs = len(ds), settings.batch_size
        out = np.empty((n, self.num_features), dtype=np.float32)
        self.module.eval()
        forward = (
            low_precision_forward(self, rt.amp_dtype, settings.cast)
            if rt.amp_dtype is not None
            else self.forward_features
        )
        batches = [np.arange(start, min(start + bs, n)) for start in range(0, n, bs)]
        collated = collated_batches(ImageBatchSource(self, ds), batches, rt.device, num_workers)
        bar = tqdm(
            total=n,
            desc=f"encoding with {self.name}",
            unit="image",
            disable=not progress or n < 256,
            leave=False,
        )
        with torch.inference_mode():
            for idx, batch in zip(batches, collated, strict=True):
                out[idx] = to_numpy(forward(rt.to_device(batch)["pixels"]))
                bar.update(len(idx))
        bar.close()
        return out


class ImageBatchSource(BatchSource):
    """Images decoded and preprocessed when a batch is collated, so a large set never sits in memory as floats."""

    decodes = True

    def __init__(self, backbone: ImageBackbone, data: Any) -> None:
        self.backbone, self.data = backbone, data

    def __len__(self) -> int:
        return len(self.data)

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        from ..data import image_at

        pre = self.backbone.image_preprocess
        if not pre.fixed_size:  # images of several sizes: each through on its own
            return {
                "pixels": torch.stack(
                    [self.backbone.preprocess(image_at(self.data, int(i))) for i in indices]
                )
            }
        return {"pixels": pre.batch([image_at(self.data, int(i), keep_gray=True) for i in indices])}


class CachedImageSource(BatchSource):
    """Images decoded, resized and cropped once, at construction, and held as one uint8 ``(N, H, W, 3)`` array;
    a batch is a slice of it, normalised (channels-last in memory, as it is stored). The batches equal
    ``ImageBatchSource``'s."""

    def __init__(self, pre: ImagePreprocess, data: Any, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        from ..data import image_at

        self.pre = pre
        h, w = pre.output_size
        self.pixels = np.empty((len(data), h, w, 3), dtype=np.uint8)
        for i in tqdm(
            range(len(data)),
            desc="decoding images",
            unit="image",
            disable=not progress or len(data) < 256,
            leave=False,
        ):
            self.pixels[i] = pre.geometry(image_at(data, i, keep_gray=True))

    def __len__(self) -> int:
        return len(self.pixels)

    def collate(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return {"pixels": self.pre.from_pixels(self.pixels[np.asarray(indices)])}
