"""The one training loop behind every technique that changes weights.

AdamW with per-group learning rates, linear warmup then cosine/linear decay, gradient accumulation, mixed precision
(bf16 autocast, or fp16 with a gradient scaler) on whatever device the ``Runtime`` names, data parallelism through
torch's ``DistributedDataParallel`` under ``torchrun``, early stopping on a validation metric (best weights
restored), a progress bar with loss and metric, and checkpoints that make a run resumable.

Resuming is exact, not approximate: the batch order of epoch ``e`` is a pure function of ``(seed, e)``, a
checkpoint is only ever taken at an optimizer-step boundary, and it holds the trainable weights, buffers, optimizer
moments, the gradient scaler and torch's RNG states (CPU and CUDA) at that boundary. A run interrupted at step 37 and resumed therefore takes the same
steps 38, 39, ... on the same batches with the same dropout masks as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import runtime
from .._io import atomic_open, atomic_write_json
from ..backbones.base import BatchSource, collated_batches

CHECKPOINT_VERSION = 3  # 2: RNG states of every device and the gradient scaler; 3: losses weighted by rows


@dataclass
class LoopConfig:
    """Everything the loop needs to know; techniques build it from their hyperparameters."""

    epochs: int = 4
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    max_grad_norm: float | None = 1.0
    # epochs without improvement before stopping, the best epoch's weights then restored; None (the default):
    # every epoch runs and the last is kept, validation only measured (docs/techniques.md: on a few dozen
    # validation rows, choosing the epoch cost 2.7 to 12.7 points against training the whole schedule)
    patience: int | None = None
    metric: str = "accuracy"  # accuracy | macro_f1 | loss, on the validation set
    label_smoothing: float = 0.0  # of the default cross-entropy loss
    device: str = "cpu"  # where to train: anything runtime.resolve_device takes
    # processes collating batches: "auto" uses up to 4 where collating decodes images for a GPU, else none
    num_workers: int | str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 with a gradient scaler) | auto
    seed: int = 0
    checkpoint_every: int = 50  # optimizer steps; an epoch end also checkpoints
    # ...but not sooner than this after the last checkpoint: saving weights and optimizer moments costs about
    # half a second per 100 MB, which would dominate short runs, and losing under 30 s to a crash is cheap.
    # Ctrl-C always saves.
    checkpoint_min_seconds: float = 30.0
    progress: bool = True

    def steps_per_epoch(self, n_rows: int) -> int:
        return math.ceil(math.ceil(n_rows / self.batch_size) / self.grad_accum)


@dataclass
class LoopState:
    """Where a run is: what a checkpoint records besides tensors."""

    epoch: int = 0  # the epoch in progress (or the next one, when batch == 0)
    batch: int = 0  # batches of that epoch already consumed
    step: int = 0  # optimizer steps taken in total
    best_metric: float | None = None
    best_loss: float | None = None  # the validation loss of the best epoch, which breaks ties of the metric
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    loss_sum: float = 0.0  # training loss of the epoch in progress, over the steps taken so far
    loss_count: int = 0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # training wall time accumulated over every (resumed) session
    # floating-point operations of the training steps (forward and backward), counted with torch's
    # FlopCounterMode on the first batch and scaled by each later batch's input size (padded tokens or pixels)
    flops: float = 0.0
    flops_per_unit: float | None = None
    rows: int = 0  # training rows (images, texts) the optimizer steps have consumed, counting every epoch


def improved(
    metric: str, value: float, loss: float | None, best: float | None, best_loss: float | None
) -> bool:
    """Whether an epoch's validation ``value`` of ``metric`` beats the best so far (``best``; None: no epoch yet).

    ``loss`` is lower-is-better, the other metrics higher-is-better. A tie of accuracy or macro-F1 goes to the
    epoch with the lower validation ``loss``: on a few dozen validation rows one row moves accuracy by several
    points and equal scores are common, while the loss still tells a model that is surer of the right classes
    from one that is not (where either loss is unknown, a tie is no gain, as before there was one).
    """
    if best is None:
        return True
    if metric == "loss":
        return value < best
    if value != best:
        return value > best
    return loss is not None and best_loss is not None and loss < best_loss


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(source: BatchSource, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled batches for one epoch; text rows are grouped by similar length so that batches pad little.

    Rows are shuffled, cut into pools of 32 batches, sorted by length inside each pool, cut into batches, and the
    batches shuffled again: random enough for SGD, and a batch rarely pads short rows up to a long outlier. A
    source whose padding costs nothing (``pool_by_length`` False) keeps the plain shuffle.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(source))
    if source.lengths is not None and getattr(source, "pool_by_length", True):
        pool = batch_size * 32
        order = np.concatenate(
            [
                chunk[np.argsort(-source.lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, max(1, math.ceil(len(order) / pool)))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class Checkpointer:
    """Atomic checkpoints in one folder: ``state.pt`` (tensors, loaded with ``weights_only=True``) and
    ``state.json`` (loop position and history). The JSON is written last, so it only ever names a complete
    ``state.pt``; ``best.pt`` keeps the best weights seen for early stopping."""

    def __init__(self, folder: Path, run_key: str) -> None:
        self.folder, self.run_key = Path(folder), run_key

    def save(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: LoopState, rng: dict, scaler=None
    ) -> None:
        tensors = {"model": trainable_state(model), "optimizer": optimizer.state_dict(), "rng": rng}
        if scaler is not None:
            tensors["scaler"] = scaler.state_dict()
        with atomic_open(self.folder / "state.pt") as f:
            torch.save(tensors, f)
        atomic_write_json(
            self.folder / "state.json",
            {"version": CHECKPOINT_VERSION, "run_key": self.run_key, "state": asdict(state)},
        )

    def save_best(self, model: nn.Module) -> None:
        with atomic_open(self.folder / "best.pt") as f:
            torch.save(trainable_state(model), f)

    def load(self) -> tuple[LoopState, dict] | None:
        meta_path = self.folder / "state.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("version") != CHECKPOINT_VERSION or meta.get("run_key") != self.run_key:
                return None
            tensors = torch.load(self.folder / "state.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError):  # damaged or unsafe: start over
            return None
        return LoopState(**meta["state"]), tensors

    def save_rank_rng(self, rank: int, step: int, rng: dict) -> None:
        """Another rank's generators at optimizer step ``step``: dropout masks are drawn per rank, so each rank
        resumes from its own generators, not rank 0's (which the state holds). One file per step, so that the
        file of the step ``state.json`` names is never overwritten before ``state.json`` moves on."""
        with atomic_open(self.folder / f"rng-rank{rank}-step{step}.pt") as f:
            torch.save(rng, f)

    def drop_rank_rng(self, rank: int, keep_step: int) -> None:
        for f in self.folder.glob(f"rng-rank{rank}-step*.pt"):
            if f.name != f"rng-rank{rank}-step{keep_step}.pt":
                f.unlink(missing_ok=True)

    def load_rank_rng(self, rank: int, step: int) -> dict | None:
        """The generators rank ``rank`` saved at ``step``; None when it has none for that step."""
        try:
            return torch.load(
                self.folder / f"rng-rank{rank}-step{step}.pt", map_location="cpu", weights_only=True
            )
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError):
            return None

    def load_best(self) -> dict | None:
        path = self.folder / "best.pt"
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def clear(self) -> None:
        from .. import distributed

        distributed.barrier()  # every rank is done with it
        if distributed.is_main():
            shutil.rmtree(self.folder, ignore_errors=True)


def abandoned_checkpoints(root: Path, older_than_hours: float = 24.0) -> list[tuple[Path, float, int]]:
    """Checkpoint folders under ``root`` last written more than ``older_than_hours`` ago, as (folder, age in
    hours, bytes): runs that were interrupted and never resumed. A finished run deletes its own checkpoint."""
    out = []
    now = time.time()
    for folder in sorted(p for p in Path(root).glob("*") if p.is_dir()):
        files = [f for f in folder.rglob("*") if f.is_file()]
        newest = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
        age = (now - newest) / 3600
        if age >= older_than_hours:
            out.append((folder, age, sum(f.stat().st_size for f in files)))
    return out


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that can change in training (any that require grad) plus every buffer (e.g. BN statistics)."""
    return {
        n: t.detach().clone()
        for n, t in model.state_dict(keep_vars=True).items()
        if not isinstance(t, nn.Parameter) or t.requires_grad
    }


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = set(state) - set(model.state_dict())
    if missing:
        raise RuntimeError(f"checkpoint holds tensors this model lacks: {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)


@dataclass
class Hooks:
    """What a technique may add to the loop without rewriting it."""

    extra_loss: Callable[[], torch.Tensor] | None = None  # e.g. the L2-SP penalty
    on_epoch_start: Callable[[int], None] | None = None  # e.g. gradual unfreezing
    evaluate: Callable[[], dict[str, float]] | None = None  # validation metrics; None: no early stopping
    # the loss of a batch, (model outputs, targets of its rows) -> scalar; None: cross-entropy on logits
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # the batches of an epoch, epoch -> row-index arrays; must be a pure function of the epoch (and seed) so
    # that resuming replays them. None: ``epoch_batches`` (shuffled, length-pooled)
    batches: Callable[[int], list[np.ndarray]] | None = None
    # training-time augmentation of a batch on the device, (pixels, class indices) -> (pixels, targets), where
    # targets may become (N, n_classes) probabilities (mixup); its random draws come from torch's generators
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


def batch_units(batch: dict[str, torch.Tensor]) -> int:
    """The size of a collated batch that compute scales with: the elements of its first input, so padded
    tokens of a text batch (padding costs compute too) and pixels of an image batch. (Attention's cost grows
    with the square of the length; at the lengths used here the linear layers dominate.)"""
    return int(next(iter(batch.values())).numel())


class Interrupted(KeyboardInterrupt):
    """Raised when training stops on Ctrl-C; the checkpoint to resume from has been written."""


class ForcedStop(KeyboardInterrupt):
    """A second Ctrl-C: training stops where it is, without a checkpoint (the state may be mid-step)."""


class DeferredInterrupt:
    """While training, Ctrl-C (SIGINT) is acted on at the next step boundary instead of wherever it lands.

    Python raises ``KeyboardInterrupt`` at any bytecode, so a Ctrl-C between an optimizer step and its
    bookkeeping (the step count, the epoch's loss, the epoch's history) wrote a checkpoint that disagreed with
    itself: the resumed run ended with the same weights but another logged loss, or repeated a step. The first
    Ctrl-C is noted and ``check`` raises at the next boundary; a second one stops at once (``pending`` says that
    the first was seen, and no consistent checkpoint is written then). Installed only in the main thread, and
    only over Python's default handler.
    """

    def __init__(self) -> None:
        self.pending = False
        self.previous: Any = None

    def __enter__(self) -> DeferredInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise ForcedStop
        self.pending = True

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def train(
    model: nn.Module,
    param_groups: list[dict[str, Any]],
    source: BatchSource,
    targets: torch.Tensor,
    cfg: LoopConfig,
    checkpointer: Checkpointer | None = None,
    hooks: Hooks | None = None,
) -> LoopState:
    """Train ``model`` (called as ``model(**batch) -> logits``) with cross-entropy, or with ``hooks.loss`` on
    whatever the model returns; return the final loop state.

    With a checkpointer, a matching checkpoint is resumed from, and on Ctrl-C the position at the last
    optimizer step is saved before ``Interrupted`` is raised. With ``hooks.evaluate`` each epoch is validated;
    with ``cfg.patience`` too, training stops after that many epochs without a gain in ``cfg.metric`` and the
    best epoch's weights are restored at the end (without it every epoch runs and the last weights stay).
    """
    return _Loop(model, param_groups, source, targets, cfg, checkpointer, hooks or Hooks()).run()


class _Loop:
    def __init__(self, model, param_groups, source, targets, cfg, checkpointer, hooks) -> None:
        from .. import distributed

        self.rt = runtime.resolve(cfg.device, cfg.precision)
        self.model = model.to(self.rt.device)
        self.source, self.targets = source, targets
        self.cfg, self.checkpointer, self.hooks = cfg, checkpointer, hooks
        for g in param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.optimizer = _adamw(param_groups)
        self.scaler = self.rt.grad_scaler()
        if hooks.batches is None:
            self.total = cfg.epochs * cfg.steps_per_epoch(len(source))
        else:
            self.total = sum(math.ceil(len(hooks.batches(e)) / cfg.grad_accum) for e in range(cfg.epochs))
        self.warmup = round(cfg.warmup_ratio * self.total)
        self.state = LoopState()
        self.best: dict[str, torch.Tensor] | None = None
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.ddp: nn.Module | None = None  # the DistributedDataParallel wrapper, in a multi-process run
        self.ddp_params: list[nn.Parameter] = []

    def run(self) -> LoopState:
        from tqdm.auto import tqdm

        self._resume_or_seed()
        self.rng_at_step = runtime.rng_state()
        self.clock = self.last_checkpoint = time.perf_counter()
        self.bar = tqdm(
            total=self.total,
            initial=self.state.step,
            desc="training",
            unit="step",
            disable=not self.cfg.progress or self.rank != 0,
        )
        self.interrupt = DeferredInterrupt()
        try:
            with self.interrupt:
                while self.state.epoch < self.cfg.epochs and not self.state.stopped_early:
                    self._epoch()
        except (KeyboardInterrupt, Exception) as e:
            # an error while Ctrl-C is pending (DataLoader workers exit on SIGINT) is that interrupt too
            if not isinstance(e, KeyboardInterrupt) and not self.interrupt.pending:
                raise
            self.bar.close()
            if isinstance(e, ForcedStop):
                raise Interrupted(
                    "training stopped at once by a second Ctrl-C; no checkpoint was written now. Run the same "
                    "command again to resume from the last periodic checkpoint."
                ) from e
            self.optimizer.zero_grad(set_to_none=True)  # a half-accumulated step is dropped
            self._checkpoint()
            where = self.checkpointer.folder if self.checkpointer else "nowhere (checkpointing is off)"
            raise Interrupted(
                f"training interrupted at step {self.state.step}/{self.total}; checkpoint saved in {where}. "
                f"Run the same command again to resume."
            ) from e
        self.bar.close()
        self._tick()
        if self.world > 1:
            from .. import distributed

            self.state.flops = distributed.all_reduce_sum(self.state.flops)
            distributed.barrier()  # rank 0 has written best.pt before anyone reads it
        if self.state.best_epoch is not None and self.cfg.patience is not None:
            best = self.checkpointer.load_best() if self.checkpointer else self.best
            if best is not None:
                load_trainable_state(self.model, best)
        self.model.eval()
        return self.state

    def _resume_or_seed(self) -> None:
        resumed = self.checkpointer.load() if self.checkpointer else None
        if resumed is None:
            torch.manual_seed(self.cfg.seed)  # seeds every device's generator
            return
        self.state, tensors = resumed
        if self.hooks.on_epoch_start:  # restore which parameters are trainable before loading their state
            self.hooks.on_epoch_start(self.state.epoch)
        load_trainable_state(self.model, tensors["model"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        if self.scaler is not None and "scaler" in tensors:
            self.scaler.load_state_dict(tensors["scaler"])
        rng = tensors["rng"]
        if self.rank != 0:
            rng = self.checkpointer.load_rank_rng(self.rank, self.state.step)
            if rng is None:
                import warnings

                warnings.warn(
                    f"rank {self.rank} has no generator state for step {self.state.step} in "
                    f"{self.checkpointer.folder}; it resumes with rank 0's, so its dropout masks (and the logged "
                    "loss) differ from an uninterrupted run's",
                    stacklevel=2,
                )
                rng = tensors["rng"]
        runtime.set_rng_state(rng)
        if self.cfg.progress and self.rank == 0:
            import sys

            print(
                f"resuming from step {self.state.step}/{self.total} (epoch {self.state.epoch + 1}), checkpoint in "
                f"{self.checkpointer.folder}",
                file=sys.stderr,
            )

    def _forward_model(self) -> nn.Module:
        """The module to call for a training step: in a multi-process run, a ``DistributedDataParallel``
        wrapper over the parameters trainable now, rebuilt when a hook changes them (gradual unfreezing)."""
        if self.world <= 1:
            return self.model
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if (
            self.ddp is None
            or len(trainable) != len(self.ddp_params)
            or any(a is not b for a, b in zip(trainable, self.ddp_params, strict=True))
        ):
            from torch.nn.parallel import DistributedDataParallel

            dev = self.rt.device
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[dev.index] if dev.type == "cuda" else None,
                # some parameters may see no gradient in a step (a head's rows, the frozen part of a stack)
                find_unused_parameters=True,
                # BatchNorm statistics stay per rank (and are recomputed on the same rows after training)
                broadcast_buffers=False,
            )
            self.ddp_params = trainable
        return self.ddp

    def _epoch(self) -> None:
        cfg, state = self.cfg, self.state
        if self.hooks.on_epoch_start and state.batch == 0:
            self.hooks.on_epoch_start(state.epoch)
        forward = self._forward_model()
        self.model.train()
        if self.hooks.batches is not None:
            batches = self.hooks.batches(state.epoch)
        else:
            batches = epoch_batches(self.source, cfg.batch_size, cfg.seed, state.epoch)
        pending: list[float] = []  # the step's loss so far, by micro-batch; counted once the step is taken
        shares = [self._share(idx) for idx in batches[state.batch :]]
        collated = self._collated([local for local, _ in shares])
        for b, (local, weight), batch in zip(range(state.batch, len(batches)), shares, collated, strict=True):
            steps_now = not ((b + 1) % cfg.grad_accum and b + 1 < len(batches))
            # the micro-batches of this batch's step: the step's gradient is that of their mean loss
            first = b - b % cfg.grad_accum
            step_rows = sum(len(batches[j]) for j in range(first, min(first + cfg.grad_accum, len(batches))))
            share = len(batches[b]) / step_rows
            pending.append(self._micro_step(forward, local, batch, step_rows, weight, share, sync=steps_now))
            if not steps_now:
                continue
            self._optimizer_step(lr_factor(state.step, self.total, self.warmup, cfg.schedule))
            state.step, state.batch, state.rows = state.step + 1, b + 1, state.rows + step_rows
            state.loss_sum, state.loss_count = state.loss_sum + sum(pending), state.loss_count + 1
            pending.clear()
            self.rng_at_step = runtime.rng_state()
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", epoch=state.epoch + 1)
            self.interrupt.check()  # a step boundary: the state and the weights agree
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and b + 1 < len(batches):
                self._checkpoint(periodic=True)
        self._end_epoch(state.loss_sum / state.loss_count if state.loss_count else float("nan"))
        self._checkpoint(periodic=True)
        self.interrupt.check()

    def _share(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's rows of a batch, and the weight of their loss (0 for a stand-in row: every rank must
        take part in the gradient reduction, also when a small batch has no row for it)."""
        if self.world <= 1:
            return idx, 1.0
        local = idx[self.rank :: self.world]
        return (local, 1.0) if len(local) else (idx[:1], 0.0)

    def _collated(self, batches: list[np.ndarray]) -> Any:
        return collated_batches(self.source, batches, self.rt.device, self.cfg.num_workers)

    def _micro_step(
        self,
        forward: nn.Module,
        local: np.ndarray,
        batch: dict[str, torch.Tensor],
        step_rows: int,
        weight: float,
        share: float,
        sync: bool,
    ) -> float:
        """Forward and backward over this rank's share of one batch; returns the batch's part of its step's
        loss. Gradients are synchronised across ranks only on the batch that completes an optimizer step."""
        context = forward.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext()
        with context:
            loss = self._forward_backward(forward, local, batch, step_rows, weight, share)
        value = loss.item()
        if self.world > 1:  # each rank's loss is its share of the batch mean
            from .. import distributed

            value = distributed.all_reduce_sum(value)
        return value

    def _forward_backward(
        self,
        forward: nn.Module,
        idx: np.ndarray,
        batch: dict[str, torch.Tensor],
        step_rows: int,
        weight: float = 1.0,
        share: float = 1.0,
    ) -> torch.Tensor:
        """Loss of the rows ``idx`` and its gradients, as their part of the mean loss over the ``step_rows``
        rows of the optimizer step (every micro-batch of an accumulated step, on every rank), so that
        accumulated micro-batches of any sizes give the gradient of one batch of all their rows. ``share`` is
        this batch's fraction of those rows (for ``extra_loss``, counted once per step). In a distributed run
        ``idx`` is this rank's share of the batch; ``DistributedDataParallel`` averages gradients over ranks,
        so the backward pass is scaled by the world size to sum them instead, as one process would."""
        state = self.state
        batch = self.rt.to_device(batch)
        targets = self.targets[torch.as_tensor(idx)].to(self.rt.device, non_blocking=True)
        if self.hooks.augment is not None:
            batch["pixels"], targets = self.hooks.augment(batch["pixels"], targets)
        units = batch_units(batch) if weight else 0
        counter = None
        if state.flops_per_unit is None and weight:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            counter.__enter__()
        try:
            with self.rt.autocast():
                out = forward(**batch)
            if self.hooks.loss is not None:
                loss = self.hooks.loss(out.float(), targets) * (len(idx) / step_rows)
            else:
                loss = (
                    nn.functional.cross_entropy(
                        out.float(), targets, reduction="sum", label_smoothing=self.cfg.label_smoothing
                    )
                    / step_rows
                )
            loss = loss * weight
            if self.hooks.extra_loss is not None:
                loss = loss + self.hooks.extra_loss() * (share / self.world)
            scaled = loss * self.world
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        finally:
            if counter is not None:
                counter.__exit__(None, None, None)
                state.flops_per_unit = counter.get_total_flops() / max(units, 1)
        if units:
            state.flops += state.flops_per_unit * units
        return loss.detach()

    def _optimizer_step(self, factor: float) -> None:
        """Set the learning rates, clip, step (through the scaler in fp16) and clear the gradients."""
        optimizer, cfg = self.optimizer, self.cfg
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if cfg.max_grad_norm:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _end_epoch(self, train_loss: float) -> None:
        state = self.state
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "train_loss": round(train_loss, 6),
        }
        if self.hooks.evaluate is not None:
            self.model.eval()
            metrics = self.hooks.evaluate()
            record.update({f"val_{k}": round(v, 6) for k, v in metrics.items()})
            if self.cfg.patience is not None:  # early stopping; without it validation is recorded only
                self._track_best(metrics[self.cfg.metric], metrics.get("loss"))
        state.history.append(record)
        state.epoch, state.batch, state.loss_sum, state.loss_count = state.epoch + 1, 0, 0.0, 0
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k not in ("epoch", "step")})

    def _track_best(self, value: float, loss: float | None) -> None:
        """Keep the epoch just ended if it is the best so far, else count it against ``cfg.patience``."""
        state = self.state
        if improved(self.cfg.metric, value, loss, state.best_metric, state.best_loss):
            state.best_metric, state.best_loss = value, loss
            state.best_epoch, state.bad_epochs = state.epoch + 1, 0
            if self.checkpointer:
                if self.rank == 0:  # every rank reads it back at the end
                    self.checkpointer.save_best(self.model)
            else:
                self.best = trainable_state(self.model)
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= self.cfg.patience

    def _tick(self) -> None:
        now = time.perf_counter()
        self.state.seconds += now - self.clock
        self.clock = now

    def _checkpoint(self, periodic: bool = False) -> None:
        self._tick()
        if self.checkpointer is None:
            return
        due = not periodic or time.perf_counter() - self.last_checkpoint >= self.cfg.checkpoint_min_seconds
        if self.world > 1:
            self._checkpoint_ranks(periodic, due)
            return
        if due:
            self.checkpointer.save(self.model, self.optimizer, self.state, self.rng_at_step, self.scaler)
            self.last_checkpoint = time.perf_counter()

    def _checkpoint_ranks(self, periodic: bool, due: bool) -> None:
        """A checkpoint of a multi-process run: rank 0 writes the state, every other rank its own generators.
        A periodic opportunity (reached at the same step by every rank) takes rank 0's ``due`` for all, and the
        ranks meet so that the others' generators are on disk before ``state.json`` names the step, and are
        removed only once it names a newer one. On Ctrl-C the ranks need not meet again: each writes what it has."""
        from .. import distributed

        ckpt, step = self.checkpointer, self.state.step
        if periodic:
            due = distributed.broadcast_flag(due)  # rank 0's clock decides
        if not due:
            return
        if self.rank != 0:
            ckpt.save_rank_rng(self.rank, step, self.rng_at_step)
        if periodic:
            distributed.barrier()
        if self.rank == 0:
            ckpt.save(self.model, self.optimizer, self.state, self.rng_at_step, self.scaler)
        if periodic:
            distributed.barrier()
            if self.rank != 0:
                ckpt.drop_rank_rng(self.rank, keep_step=step)
        self.last_checkpoint = time.perf_counter()


def _adamw(param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW, fused where torch supports it for these tensors (6x faster steps for a 22M-parameter encoder on
    CPU than the default per-tensor loop, measured)."""
    try:
        return torch.optim.AdamW(param_groups, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(param_groups)
