"""Domain alignment while fine-tuning, against unlabelled rows of the test domain: Deep CORAL (Sun and Saenko
2016) and DANN (Ganin et al. 2016); and BatchNorm statistics re-estimated on a domain's rows
(``recalibrate_batchnorm``; AdaBN: ``adabn_copy``).

Each optimizer step also passes a batch of unlabelled target rows through the backbone, and the loss gains the
distance between the two batches' feature statistics: the squared differences of their covariances and of their
means, on features standardised as the head sees them (so the penalty does not depend on the backbone's feature
scale). The target rows are drawn with torch's random generator, which checkpoints save and restore, so a resumed
run draws what the uninterrupted one would have.

DANN instead trains a small domain critic to tell the two batches' features apart, through a gradient reversal
layer: the critic learns to separate the domains while the backbone receives the opposite gradient and learns
features the critic cannot separate. The reversal's strength rises over the epochs as in the paper
(``dann_coefficient``), so the first epochs, whose critic is still random, move the backbone less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

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
    pair, remove = _paired_features(model, target, batch_size, rt)

    def loss() -> torch.Tensor:
        value = weight * coral_distance(*pair())
        return value + previous() if previous is not None else value

    return loss, remove


def _paired_features(
    model: nn.Module, target: Any, batch_size: int, rt: Any
) -> tuple[Callable[[], tuple[torch.Tensor, torch.Tensor]], Callable[[], None]]:
    """What both alignments compare: a function returning the features of the batch ``model.head`` last saw
    and those of ``batch_size`` random rows of ``target``, both standardised as the head standardises them; and
    the function that removes the hook it puts on the head to see them."""
    seen: dict[str, torch.Tensor] = {}

    def remember(_module: nn.Module, args: tuple) -> None:
        seen["features"] = args[0]

    handle = model.head.register_forward_pre_hook(remember)

    def standardised(f: torch.Tensor) -> torch.Tensor:
        return (f.float() - model.head.mean) / model.head.scale

    def pair() -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(target), (min(batch_size, len(target)),)).numpy()
        batch = rt.to_device(target.collate(rows))
        with rt.autocast():
            ft = model.backbone.forward_features(**batch)
        return standardised(seen["features"]), standardised(ft)

    return pair, handle.remove


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """``x`` unchanged going forward; going back, the gradient times ``-coeff`` (DANN's reversal layer).

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> (3 * reverse_gradient(x, 0.5)).sum().backward()
        >>> x.grad.tolist()
        [-1.5, -1.5]
    """
    return _ReverseGradient.apply(x, coeff)


def dann_coefficient(epoch: int, epochs: int) -> float:
    """The reversal's strength in ``epoch`` (0-based) of ``epochs``: ``2 / (1 + exp(-10 p)) - 1`` at the
    epoch's midpoint ``p`` (Ganin et al. 2016 set it per step; per epoch, a resumed run sets it again
    exactly). It rises towards 1: from 0.55 in the first of 4 epochs, from 0.10 in the first of 25.

    Example:
        >>> [round(dann_coefficient(e, 4), 2) for e in range(4)]
        [0.55, 0.95, 1.0, 1.0]
        >>> round(dann_coefficient(0, 25), 2)
        0.1
    """
    p = (epoch + 0.5) / max(epochs, 1)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


class DomainCritic(nn.Module):
    """DANN's domain classifier: one hidden layer of ``hidden`` ReLU units, one logit (target domain vs labelled
    rows' domain) per row of standardised features."""

    def __init__(self, width: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


def dann_hook(
    model: nn.Module,
    critic: DomainCritic,
    target: Any,
    batch_size: int,
    weight: float,
    epochs: int,
    rt: Any,
    previous: Callable | None = None,
    previous_epoch: Callable | None = None,
) -> tuple[Callable[[], torch.Tensor], Callable[[int], None], Callable[[], None]]:
    """DANN for the training loop: an ``extra_loss`` (the critic's binary cross-entropy on the features of the
    batch the head last saw, labelled 0, and of ``batch_size`` random rows of ``target``, labelled 1, both
    standardised as the head sees them and passed through ``reverse_gradient`` at ``weight`` times
    ``dann_coefficient``), plus ``previous()``; an ``on_epoch_start`` that sets that coefficient (and calls
    ``previous_epoch``); and the function that removes the hook on ``model.head``. ``critic``'s parameters must
    be in the optimizer: it learns to tell the domains apart while the backbone learns the reverse."""
    state = {"coeff": weight * dann_coefficient(0, epochs)}
    pair, remove = _paired_features(model, target, batch_size, rt)

    def loss() -> torch.Tensor:
        zs, zt = pair()
        z = reverse_gradient(torch.cat([zs, zt]), state["coeff"])
        domain = torch.cat([torch.zeros(len(zs), device=z.device), torch.ones(len(zt), device=z.device)])
        value = F.binary_cross_entropy_with_logits(critic(z), domain)
        return value + previous() if previous is not None else value

    def on_epoch_start(epoch: int) -> None:
        state["coeff"] = weight * dann_coefficient(epoch, epochs)
        if previous_epoch is not None:
            previous_epoch(epoch)

    return loss, on_epoch_start, remove


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
    keep: Sequence[nn.Module] = (),
) -> None:
    """Recompute the BatchNorm running statistics of ``model`` as exact averages over (up to ``max_rows``)
    training rows, running ``forward(**batch)``; the layers in ``keep`` normalise with their own statistics
    and keep them. A no-op for models without BatchNorm (or nothing else to re-estimate).

    Training uses batch statistics, but inference uses running averages updated with a small momentum (0.01 for
    the TF-ported EfficientNet) that still remember the pretraining data after hundreds of steps. Done before
    training (as in AdaBN, Li et al. 2016) the head is standardised on features that match what training sees;
    done after it (and before each validation), evaluation matches training.
    """
    bns = [m for m in batchnorms(model) if not any(m is k for k in keep)]
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
