"""Domain alignment: Deep CORAL (Sun and Saenko 2016) against unlabelled rows of the test domain while fine-tuning,
and BatchNorm statistics re-estimated on a domain's rows (``recalibrate_batchnorm``; AdaBN: ``adabn_copy``).

Each optimizer step also passes a batch of unlabelled target rows through the backbone, and the loss gains the
distance between the two batches' feature statistics: the squared differences of their covariances and of their
means, on features standardised as the head sees them (so the penalty does not depend on the backbone's feature
scale). The target rows are drawn with torch's random generator, which checkpoints save and restore, so a resumed
run draws what the uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError

if TYPE_CHECKING:
    from ..backbones.base import BatchSource
    from ..runtime import Runtime


def coral_distance(zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the covariances of ``zs`` and ``zt`` (rows are examples), plus that of their
    means: zero when both batches have the same first and second moments.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g)
        >>> bool(coral_distance(a, b) < coral_distance(a, 3 * b + 1))
        True
    """
    zs, zt = zs.float(), zt.float()
    ms, mt = zs.mean(0), zt.mean(0)
    cs = (zs - ms).T @ (zs - ms) / max(len(zs) - 1, 1)
    ct = (zt - mt).T @ (zt - mt) / max(len(zt) - 1, 1)
    return ((cs - ct) ** 2).mean() + ((ms - mt) ** 2).mean()


def coral_hook(
    model: nn.Module, target: Any, batch_size: int, weight: float, rt: Any, previous: Callable | None = None
) -> tuple[Callable[[], torch.Tensor], Callable[[], None]]:
    """An ``extra_loss`` for the training loop: ``weight`` times the CORAL distance between the features of the
    batch the head last saw and those of ``batch_size`` random rows of ``target`` (a ``BatchSource``), plus
    ``previous()`` (another extra loss, such as L2-SP's) when given; and the function that removes the hook it
    puts on ``model.head`` (call it after training). ``model`` is a ``tuned.Classifier``."""
    seen: dict[str, torch.Tensor] = {}

    def remember(_module: nn.Module, args: tuple) -> None:
        seen["features"] = args[0]

    handle = model.head.register_forward_pre_hook(remember)

    def standardised(f: torch.Tensor) -> torch.Tensor:
        return (f.float() - model.head.mean) / model.head.scale

    def loss() -> torch.Tensor:
        rows = torch.randint(len(target), (min(batch_size, len(target)),)).numpy()
        batch = rt.to_device(target.collate(rows))
        with rt.autocast():
            ft = model.backbone.forward_features(**batch)
        value = weight * coral_distance(standardised(seen["features"]), standardised(ft))
        return value + previous() if previous is not None else value

    return loss, handle.remove


def batchnorms(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``module`` that keep running statistics (what AdaBN re-estimates)."""
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def adabn_copy(base: Any, rows: Any, batch_size: int, rt: Any, progress: bool = False) -> Any:
    """A copy of the backbone ``base`` whose BatchNorm statistics are averages over every row of ``rows``, a
    ``Dataset`` (AdaBN, Li et al. 2016; sample it first: each image is decoded once and kept for the pass);
    its fingerprint follows the new statistics, so its features have their own feature-cache entries.
    Refused for backbones without BatchNorm."""
    import copy

    if not batchnorms(base.module):
        raise ParameterError(
            f"{base.name}: no BatchNorm layers, so there are no statistics to re-estimate; AdaBN is for image "
            f"CNNs with BatchNorm (EfficientNet-Lite, ResNet). Transformers normalise each row on its own."
        )
    bb = copy.deepcopy(base)
    bb.to(rt.device)
    source = bb.training_source(rows, progress=progress)
    recalibrate_batchnorm(bb.module, bb.forward_features, source, batch_size, rt, max_rows=len(rows))
    bb.invalidate_fingerprint()
    return bb


def recalibrate_batchnorm(
    model: nn.Module,
    forward: Any,
    source: BatchSource,
    batch_size: int,
    rt: Runtime | None = None,
    max_rows: int = 2048,
) -> None:
    """Recompute the BatchNorm running statistics of ``model`` as exact averages over (up to ``max_rows``)
    training rows, running ``forward(**batch)``. A no-op for models without BatchNorm.

    Training uses batch statistics, but inference uses running averages updated with a small momentum (0.01 for
    the TF-ported EfficientNet) that still remember the pretraining data after hundreds of steps. Done before
    training (as in AdaBN, Li et al. 2016) the head is standardised on features that match what training sees;
    done after it (and before each validation), evaluation matches training.
    """
    bns = batchnorms(model)
    if not bns or len(source) == 0:
        return
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    rows = np.arange(min(len(source), max_rows))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = source.collate(rows[start : start + batch_size])
            forward(**(rt.to_device(batch) if rt is not None else batch))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
        m.eval()
