"""Image augmentation for training, and test-time augmentation for prediction, on batches of model inputs.

Augmentation runs on the training device inside the loop, on the collated (normalised) pixels, with kornia's
transforms. Every random draw comes from torch's generators, which the loop seeds and stores in its checkpoints,
so an augmented run is reproducible and resumes exactly. Policies, from light to strong:

- ``none``: the images as preprocessed;
- ``light``: a random resized crop (``crop_scale`` to 1 of the area) and a horizontal flip (unless ``hflip`` is
  off: digits and text change their class when mirrored);
- ``trivial``: ``light`` plus TrivialAugment (Mueller and Hutter, 2021): one operation per image, drawn uniformly
  from twelve (rotation, shear, translation, contrast, solarize, ...) at a uniformly drawn strength.

Mixup and CutMix (each applied to a batch with its probability) blend pairs of images and their labels; the
targets then become class probabilities, which the loop's cross-entropy takes as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ParameterError

POLICIES = ("none", "light", "trivial")


def _kornia():
    try:
        import kornia.augmentation as K
        from kornia.augmentation.auto import TrivialAugment
    except ImportError as e:  # a dependency, so only a broken install lands here
        raise ParameterError(
            "image augmentation needs kornia: `pip install kornia`, or fit with augment='none'."
        ) from e
    return K, TrivialAugment


@dataclass(frozen=True)
class AugmentConfig:
    """What to do to each training batch of images."""

    policy: str = "trivial"
    hflip: bool = True
    crop_scale: float = 0.6  # smallest share of the image area a random resized crop keeps
    mixup: float = 0.0  # probability that a batch is mixed up
    cutmix: float = 0.0  # probability that a batch is cut-mixed (drawn after mixup: never both)

    @property
    def active(self) -> bool:
        return self.policy != "none" or self.mixup > 0 or self.cutmix > 0


class BatchAugmenter:
    """``(pixels, targets) -> (pixels, targets)`` for one training batch of normalised ``pixels``.

    ``mean``, ``std`` and ``rescale`` are the preprocessing's (``ImagePreprocess``): the pixels are taken back to
    [0, 1] for kornia and normalised again afterwards. ``targets`` are class indices; after mixup or CutMix they
    are ``(N, n_classes)`` probabilities.
    """

    def __init__(self, cfg: AugmentConfig, mean, std, rescale: float, n_classes: int) -> None:
        if cfg.policy not in POLICIES:
            raise ParameterError(f"augment={cfg.policy!r}: choose one of {', '.join(POLICIES)}.")
        self.cfg, self.n_classes = cfg, n_classes
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.unit = (
            255.0 * rescale
        )  # a 0-255 pixel times rescale is x * std + mean; divided by this, in [0, 1]
        K, TrivialAugment = _kornia() if cfg.active else (None, None)
        self._K = K
        self._geometric: dict[tuple[int, int], list] = {}  # by image size
        self.trivial = TrivialAugment() if cfg.policy == "trivial" else None
        self.mixup = K.RandomMixUpV2(data_keys=["input", "class"], p=1.0) if cfg.mixup else None
        self.cutmix = (
            K.RandomCutMixV2(data_keys=["input", "class"], p=1.0, use_correct_lambda=True)
            if cfg.cutmix
            else None
        )

    def geometric(self, size: tuple[int, int]) -> list:
        """The random resized crop (back to ``size``) and flip of the ``light`` policy; none for ``none``."""
        if self.cfg.policy == "none":
            return []
        if size not in self._geometric:
            K = self._K
            ops = [K.RandomResizedCrop(size=size, scale=(self.cfg.crop_scale, 1.0))]
            if self.cfg.hflip:
                ops.append(K.RandomHorizontalFlip())
            self._geometric[size] = ops
        return self._geometric[size]

    def to_unit(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() * self.std.to(pixels.device) + self.mean.to(pixels.device)) / self.unit

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.unit - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, pixels: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.active:
            return pixels, targets
        x = self.to_unit(pixels).clamp_(0.0, 1.0)
        for op in self.geometric(tuple(x.shape[-2:])):
            x = op(x)
        if self.trivial is not None:  # TrivialAugment draws one operation per call: call it per image
            x = torch.cat([self.trivial(row[None]) for row in x])
        x, targets = self._mix(x, targets)
        return self.from_unit(x).to(pixels.dtype), targets

    def _mix(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup (probability ``mixup``) or else CutMix (probability ``cutmix``): ``(mixed images,
        probabilities)``, or ``(x, targets)`` untouched when neither is drawn."""
        draw = torch.rand(()).item() if (self.cfg.mixup or self.cfg.cutmix) else 1.0
        if self.mixup is not None and draw < self.cfg.mixup:
            mixed, lab = self.mixup(x, targets)  # out = (1 - lam) * x_a + lam * x_b; lab rows: (a, b, lam)
            return mixed, self._soft(lab[:, 0], lab[:, 1], 1.0 - lab[:, 2])
        if self.cutmix is not None and draw < self.cfg.mixup + self.cfg.cutmix:
            mixed, lab = self.cutmix(x, targets)  # lab (1, N, 3): (a, b, share of a's pixels)
            lab = lab[0]
            return mixed, self._soft(lab[:, 0], lab[:, 1], lab[:, 2])
        return x, targets

    def _soft(self, a: torch.Tensor, b: torch.Tensor, share_a: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.n_classes, device=share_a.device)
        share_a = share_a.float()[:, None]
        return eye[a.long()] * share_a + eye[b.long()] * (1.0 - share_a)


def tta_views(pixels: torch.Tensor, hflip: bool, zoom: float = 1.15) -> list[torch.Tensor]:
    """Test-time views of a batch of normalised images: the image, a centre crop of it zoomed by ``zoom``
    (resized back to the input size), and the horizontal mirror of both when ``hflip``."""
    h, w = pixels.shape[-2:]
    ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = pixels[..., top : top + ch, left : left + cw]
    zoomed = torch.nn.functional.interpolate(crop.float(), size=(h, w), mode="bilinear", align_corners=False)
    views = [pixels, zoomed.to(pixels.dtype)]
    if hflip:
        views += [v.flip(-1) for v in views]
    return views
