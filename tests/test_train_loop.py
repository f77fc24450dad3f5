"""The training loop on its own, with a linear model on fixed vectors so each test runs in milliseconds: the
schedule's values, step counts with gradient accumulation, clipping, the loss, early stopping and best-epoch
restore, checkpoints (what they hold, when they are written, resuming from them), and the batch order. The
techniques' conformance suite (test_techniques.py) runs the same loop through real backbones."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from warmstart.backbones.base import BatchSource
from warmstart.techniques.train import (
    CHECKPOINT_VERSION,
    Checkpointer,
    Hooks,
    Interrupted,
    LoopConfig,
    LoopState,
    batch_units,
    epoch_batches,
    load_trainable_state,
    lr_factor,
    train,
    trainable_state,
)

from .conftest import ctrl_c_at_step, python_sigint


class Vectors(BatchSource):
    def __init__(self, x: torch.Tensor, lengths=None):
        self.x, self.lengths = x, lengths

    def __len__(self) -> int:
        return len(self.x)

    def collate(self, indices):
        return {"x": self.x[torch.as_tensor(indices)]}


class Linear(nn.Module):
    def __init__(self, d=4, c=2):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(d, c)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.fc(x)


def _data(n=24, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long()
    return Vectors(x), y


def _cfg(**kw):
    base = dict(epochs=2, batch_size=4, warmup_ratio=0.0, schedule="constant", patience=None, progress=False)
    return LoopConfig(**{**base, **kw})


def _groups(model, lr=0.05):
    return [{"params": list(model.parameters()), "lr": lr, "weight_decay": 0.0}]


def test_lr_factor_values():
    assert lr_factor(0, 10, 2, "cosine") == pytest.approx(1 / 3)
    assert lr_factor(1, 10, 2, "cosine") == pytest.approx(2 / 3)
    assert lr_factor(2, 10, 2, "cosine") == pytest.approx(1.0)
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(10, 10, 2, "cosine") == pytest.approx(0.0)
    assert lr_factor(12, 10, 2, "cosine") == pytest.approx(0.0)  # past the end stays at the end
    assert lr_factor(6, 10, 2, "linear") == pytest.approx(0.5)
    assert lr_factor(4, 10, 2, "linear") == pytest.approx(0.75)
    assert lr_factor(9, 10, 0, "linear") == pytest.approx(0.1)
    assert lr_factor(9, 10, 2, "constant") == 1.0 and lr_factor(0, 10, 0, "constant") == 1.0
    assert lr_factor(3, 3, 3, "cosine") == 1.0  # everything was warmup
    assert lr_factor(0, 10, 0, "cosine") == 1.0


def test_steps_per_epoch_and_total_steps_with_accumulation():
    assert LoopConfig(batch_size=4, grad_accum=1).steps_per_epoch(24) == 6
    assert LoopConfig(batch_size=4, grad_accum=2).steps_per_epoch(24) == 3
    assert LoopConfig(batch_size=5, grad_accum=2).steps_per_epoch(24) == 3  # 5 batches, the last step has one
    assert LoopConfig(batch_size=5, grad_accum=1).steps_per_epoch(26) == 6
    src, y = _data()
    model = Linear()
    state = train(model, _groups(model), src, y, _cfg(epochs=3, grad_accum=2))
    assert state.step == 9 and state.epoch == 3 and state.batch == 0 and len(state.history) == 3
    assert [h["step"] for h in state.history] == [3, 6, 9] and [h["epoch"] for h in state.history] == [
        1,
        2,
        3,
    ]
    assert model.calls.item() == 18  # one forward per batch: 6 batches x 3 epochs
    assert state.flops > 0 and state.flops_per_unit == pytest.approx(state.flops / (24 * 4 * 3))


def test_accumulated_steps_equal_one_big_batch():
    """Two micro-batches of 4 accumulated into one step move the weights as one batch of 8 does."""
    src, y = _data(n=8)
    a, b = Linear(), Linear()
    order = [np.arange(8)]
    halves = [np.arange(4), np.arange(4, 8)]
    train(
        a,
        _groups(a),
        src,
        y,
        _cfg(epochs=1, batch_size=8, max_grad_norm=None),
        hooks=Hooks(batches=lambda e: order),
    )
    train(
        b,
        _groups(b),
        src,
        y,
        _cfg(epochs=1, batch_size=4, grad_accum=2, max_grad_norm=None),
        hooks=Hooks(batches=lambda e: halves),
    )
    torch.testing.assert_close(a.fc.weight, b.fc.weight, rtol=1e-5, atol=1e-6)
    c = Linear()
    train(
        c,
        _groups(c),
        src,
        y,
        _cfg(epochs=1, batch_size=4, max_grad_norm=None),
        hooks=Hooks(batches=lambda e: halves),
    )
    assert not torch.allclose(a.fc.weight, c.fc.weight)  # two steps are not one


def test_one_step_matches_adamw_by_hand_with_clipping():
    src, y = _data(n=4)
    model, ref = Linear(), Linear()
    lr = 0.1
    train(model, _groups(model, lr), src, y, _cfg(epochs=1, batch_size=4, max_grad_norm=0.01))
    loss = nn.functional.cross_entropy(ref(src.x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.01)
    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=0.0)
    opt.step()
    torch.testing.assert_close(model.fc.weight, ref.fc.weight)
    torch.testing.assert_close(model.fc.bias, ref.fc.bias)


def test_the_history_records_the_mean_training_loss_and_validation_metrics():
    src, y = _data(n=8)
    model = Linear()
    losses = []

    def loss(out, t):
        value = nn.functional.cross_entropy(out, t)
        losses.append(value.item())
        return value

    evals = iter([{"accuracy": 0.5, "macro_f1": 0.4}, {"accuracy": 0.75, "macro_f1": 0.7}])
    hooks = Hooks(loss=loss, evaluate=lambda: next(evals))
    state = train(model, _groups(model), src, y, _cfg(epochs=2, batch_size=4, patience=2), hooks=hooks)
    h = state.history
    assert h[0]["train_loss"] == pytest.approx(np.mean(losses[:2]), abs=1e-6)
    assert h[1]["train_loss"] == pytest.approx(np.mean(losses[2:]), abs=1e-6)
    assert h[0]["val_accuracy"] == 0.5 and h[1]["val_macro_f1"] == 0.7
    assert set(h[0]) == {"epoch", "step", "train_loss", "val_accuracy", "val_macro_f1"}
    assert state.best_epoch == 2 and state.best_metric == 0.75 and state.bad_epochs == 0
    assert state.seconds > 0


def test_extra_loss_is_added_to_every_step():
    src, y = _data(n=8)
    a, b = Linear(), Linear()
    train(a, _groups(a), src, y, _cfg(epochs=1))
    pull = Hooks(extra_loss=lambda: 10.0 * (b.fc.weight**2).sum())
    train(b, _groups(b), src, y, _cfg(epochs=1), hooks=pull)
    assert b.fc.weight.norm() < a.fc.weight.norm()


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_early_stopping_counts_bad_epochs_and_restores_the_best(metric):
    src, y = _data(n=8)
    model = Linear()
    curve = iter([0.5, 0.9, 0.9, 0.6, 0.95])
    snapshots = []

    def evaluate():
        snapshots.append(model.fc.weight.detach().clone())
        v = next(curve)
        return {"accuracy": v, "macro_f1": v}

    state = train(
        model,
        _groups(model),
        src,
        y,
        _cfg(epochs=5, patience=2, metric=metric),
        hooks=Hooks(evaluate=evaluate),
    )
    # 0.9 at epoch 2; epoch 3 ties (not an improvement), epoch 4 is worse: two bad epochs stop the run
    assert len(state.history) == 4 and state.stopped_early and state.bad_epochs == 2
    assert state.best_epoch == 2 and state.best_metric == 0.9
    torch.testing.assert_close(model.fc.weight, snapshots[1])
    assert not model.training


def test_a_tie_of_the_metric_goes_to_the_lower_validation_loss():
    """Accuracy 0.5, 0.9, 0.9, 0.6, 0.6 with the loss falling at the tie: epoch 3 is the best (its weights come
    back) and the count of bad epochs starts again there, so patience 2 lets all five epochs run."""
    src, y = _data(n=8)
    model = Linear()
    curve = iter([(0.5, 1.0), (0.9, 0.8), (0.9, 0.6), (0.6, 0.9), (0.6, 0.95)])
    snapshots = []

    def evaluate():
        snapshots.append(model.fc.weight.detach().clone())
        acc, loss = next(curve)
        return {"accuracy": acc, "macro_f1": acc, "loss": loss}

    state = train(model, _groups(model), src, y, _cfg(epochs=5, patience=2), hooks=Hooks(evaluate=evaluate))
    assert (state.best_epoch, state.best_metric, state.best_loss) == (3, 0.9, 0.6)
    assert len(state.history) == 5 and state.stopped_early and state.history[2]["val_loss"] == 0.6
    torch.testing.assert_close(model.fc.weight, snapshots[2])


@pytest.mark.parametrize(
    ("metric", "value", "loss", "best", "best_loss", "expected"),
    [
        ("accuracy", 0.5, 0.1, None, None, True),  # the first epoch
        ("accuracy", 0.9, 0.9, 0.8, 0.1, True),  # higher is better, whatever the loss
        ("accuracy", 0.7, 0.01, 0.8, 0.1, False),
        ("macro_f1", 0.8, 0.09, 0.8, 0.1, True),  # a tie: the lower loss wins
        ("macro_f1", 0.8, 0.1, 0.8, 0.1, False),  # a tie at the same loss is no gain
        ("accuracy", 0.8, 0.2, 0.8, 0.1, False),
        ("accuracy", 0.8, None, 0.8, 0.1, False),  # no loss reported: a tie is no gain
        ("accuracy", 0.8, 0.05, 0.8, None, False),  # a best epoch without a loss (an older checkpoint)
        ("loss", 0.3, None, 0.4, None, True),  # lower is better
        ("loss", 0.5, None, 0.4, None, False),
        ("loss", 0.4, None, 0.4, None, False),
    ],
)
def test_improved(metric, value, loss, best, best_loss, expected):
    from warmstart.techniques.train import improved

    assert improved(metric, value, loss, best, best_loss) is expected


def test_patience_none_never_stops_and_without_evaluate_the_last_weights_stay():
    """Without patience (the default) validation is recorded and nothing else: the best epoch (the first here)
    is neither tracked nor restored, every epoch runs and the last one's weights stay."""
    src, y = _data(n=8)
    model = Linear()
    curve = iter([0.9, 0.1, 0.1, 0.1])
    state = train(
        model, _groups(model), src, y, _cfg(epochs=4), hooks=Hooks(evaluate=lambda: {"accuracy": next(curve)})
    )
    assert len(state.history) == 4 and not state.stopped_early and state.bad_epochs == 0
    assert state.best_epoch is None and [h["val_accuracy"] for h in state.history] == [0.9, 0.1, 0.1, 0.1]
    same = Linear()
    train(same, _groups(same), src, y, _cfg(epochs=4))  # the same run without validation
    torch.testing.assert_close(model.fc.weight, same.fc.weight)
    plain = Linear()
    state = train(plain, _groups(plain), src, y, _cfg(epochs=2))
    assert state.best_epoch is None and state.best_metric is None and "val_accuracy" not in state.history[0]


def test_epoch_start_hook_sees_every_epoch():
    src, y = _data(n=8)
    model = Linear()
    seen = []
    train(model, _groups(model), src, y, _cfg(epochs=3), hooks=Hooks(on_epoch_start=seen.append))
    assert seen == [0, 1, 2]


def test_epoch_batches_are_a_function_of_seed_and_epoch_and_group_lengths():
    src = Vectors(torch.zeros(100, 1), lengths=np.arange(100))
    a = epoch_batches(src, 10, seed=1, epoch=0)
    assert [b.tolist() for b in a] == [b.tolist() for b in epoch_batches(src, 10, seed=1, epoch=0)]
    assert [b.tolist() for b in a] != [b.tolist() for b in epoch_batches(src, 10, seed=1, epoch=1)]
    assert [b.tolist() for b in a] != [b.tolist() for b in epoch_batches(src, 10, seed=2, epoch=0)]
    assert sorted(np.concatenate(a).tolist()) == list(range(100)) and all(len(b) == 10 for b in a)
    long = Vectors(torch.zeros(2000, 1), lengths=np.arange(2000))
    spread = [np.ptp(b) for b in epoch_batches(long, 10, seed=0, epoch=0)]
    assert np.median(spread) < 2000 / 32  # sorted inside pools of 320 rows: a batch's lengths are close
    plain = Vectors(torch.zeros(23, 1))
    sizes = sorted(len(b) for b in epoch_batches(plain, 5, 0, 0))
    assert sizes == [3, 5, 5, 5, 5]
    unpooled = Vectors(torch.zeros(2000, 1), lengths=np.arange(2000))
    unpooled.pool_by_length = False  # lengths known, grouping declined: batches as random as the shuffle
    spread = [np.ptp(b) for b in epoch_batches(unpooled, 10, seed=0, epoch=0)]
    assert np.median(spread) > 2000 / 4


def test_trainable_state_leaves_frozen_parameters_out_and_loading_checks_names():
    model = Linear()
    model.fc.bias.requires_grad_(False)
    state = trainable_state(model)
    assert set(state) == {"fc.weight", "calls"}
    state["fc.weight"].add_(1.0)
    assert not torch.equal(state["fc.weight"], model.fc.weight)  # a copy
    load_trainable_state(model, state)
    torch.testing.assert_close(model.fc.weight.detach(), state["fc.weight"])
    with pytest.raises(RuntimeError, match="lacks: \\['nope'\\]"):
        load_trainable_state(model, {"nope": torch.zeros(1)})
    assert batch_units({"x": torch.zeros(3, 5), "y": torch.zeros(100)}) == 15


def test_checkpoint_holds_the_position_and_a_wrong_key_or_version_is_ignored(tmp_path):
    src, y = _data()
    model = Linear()
    ck = Checkpointer(tmp_path / "ck", "key-1")
    with ctrl_c_at_step(7), pytest.raises(Interrupted, match="interrupted at step 7/12; checkpoint saved in"):
        train(model, _groups(model), src, y, _cfg(), ck, Hooks())
    meta = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert meta["version"] == CHECKPOINT_VERSION and meta["run_key"] == "key-1"
    assert meta["state"]["step"] == 7 and meta["state"]["epoch"] == 1 and meta["state"]["batch"] == 1
    state, tensors = ck.load()
    assert isinstance(state, LoopState) and state.step == 7 and state.loss_count == 1
    assert {"model", "optimizer", "rng"} <= set(tensors) and "fc.weight" in tensors["model"]
    assert Checkpointer(tmp_path / "ck", "key-2").load() is None
    meta["version"] = CHECKPOINT_VERSION - 1
    (tmp_path / "ck" / "state.json").write_text(json.dumps(meta))
    assert ck.load() is None
    (tmp_path / "ck" / "state.json").write_text("{broken")
    assert ck.load() is None
    assert (
        Checkpointer(tmp_path / "none", "k").load() is None
        and Checkpointer(tmp_path / "none", "k").load_best() is None
    )
    ck.clear()
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("at", [1, 5, 6, 7, 11])
def test_resume_takes_only_the_remaining_steps_and_ends_identically(tmp_path, at):
    src, y = _data()
    curve = [0.5, 0.7]  # validation accuracy by epoch

    def run(ck=None, hooks_kw=None):
        model = Linear()
        torch.manual_seed(123)  # the loop must reseed; anything before it must not matter
        epoch = []
        hooks = Hooks(
            on_epoch_start=epoch.append, evaluate=lambda: {"accuracy": curve[epoch[-1]]}, **(hooks_kw or {})
        )
        return model, train(model, _groups(model), src, y, _cfg(), ck, hooks)

    ref_model, ref = run()
    ck = Checkpointer(tmp_path / "ck", "k")
    with ctrl_c_at_step(at), pytest.raises(Interrupted):
        run(ck)
    steps = []
    real = torch.optim.AdamW.step
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1) or real(self, *a, **k))
        model, state = run(ck)
    assert len(steps) == 12 - at  # only the remaining steps were taken
    assert model.calls.item() == ref_model.calls.item()  # the buffer is saved too: batches before + after
    assert state.step == ref.step == 12 and state.history == ref.history
    torch.testing.assert_close(model.fc.weight, ref_model.fc.weight, rtol=0, atol=0)


def _record_saves(monkeypatch) -> list[int]:
    """The optimizer step of every checkpoint written, in order."""
    saved: list[int] = []
    real = Checkpointer.save
    monkeypatch.setattr(
        Checkpointer, "save", lambda self, m, o, s, *a: saved.append(s.step) or real(self, m, o, s, *a)
    )
    return saved


def test_periodic_checkpoints_follow_every_and_the_time_gap(tmp_path, monkeypatch):
    from warmstart.techniques import train as loop

    src, y = _data()
    saved = _record_saves(monkeypatch)
    cases = [
        # every 4 steps inside an epoch, and at each epoch's end (6, 12)
        (dict(checkpoint_every=4, checkpoint_min_seconds=0), [4, 6, 8, 12]),
        # too soon after the start for a periodic one
        (dict(checkpoint_every=4, checkpoint_min_seconds=3600), []),
        # epoch ends only
        (dict(checkpoint_every=0, checkpoint_min_seconds=0), [6, 12]),
    ]
    for i, (kw, expected) in enumerate(cases):
        saved.clear()
        model = Linear()
        train(model, _groups(model), src, y, _cfg(**kw), Checkpointer(tmp_path / str(i), "k"))
        assert saved == expected, kw
    assert loop.LoopConfig().checkpoint_min_seconds == 30.0 and loop.LoopConfig().checkpoint_every == 50


def test_best_weights_come_from_the_checkpoint_folder(tmp_path):
    src, y = _data(n=8)
    curve = iter([0.9, 0.1])
    model = Linear()
    snap = []

    def evaluate():
        snap.append(model.fc.weight.detach().clone())
        return {"accuracy": next(curve)}

    ck = Checkpointer(tmp_path / "ck", "k")
    train(model, _groups(model), src, y, _cfg(patience=2), ck, Hooks(evaluate=evaluate))
    assert (tmp_path / "ck" / "best.pt").is_file()
    torch.testing.assert_close(model.fc.weight, snap[0])
    torch.testing.assert_close(ck.load_best()["fc.weight"], snap[0])


def test_interrupt_without_a_checkpointer_says_so():
    src, y = _data(n=8)
    model = Linear()
    with ctrl_c_at_step(1), pytest.raises(Interrupted, match="nowhere \\(checkpointing is off\\)"):
        train(model, _groups(model), src, y, _cfg(), hooks=Hooks())
    assert all(p.grad is None for p in model.parameters())  # a half-accumulated step is dropped


def test_warmup_and_decay_set_the_optimiser_learning_rate(monkeypatch):
    seen = []
    real = torch.optim.AdamW.step

    def step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    src, y = _data()
    model = Linear()
    train(model, _groups(model, lr=1.0), src, y, _cfg(epochs=2, warmup_ratio=0.25, schedule="linear"))
    total, warmup = 12, 3
    assert seen == pytest.approx([lr_factor(s, total, warmup, "linear") for s in range(total)])
    assert seen[0] == pytest.approx(0.25) and seen[-1] == pytest.approx(1 / 9)
    assert math.isclose(max(seen), 1.0)


def test_the_optimiser_sees_the_gradient_of_the_batch_mean_loss(monkeypatch):
    """AdamW hides a wrong loss scale, so the gradient is checked where clipping reads it: for a batch of 8 in
    one step, and for the same 8 rows as 3 accumulated micro-batches of 3, 3 and 2."""
    src, y = _data(n=8)
    ref = Linear()
    nn.functional.cross_entropy(ref(src.x), y).backward()
    expected = torch.cat([p.grad.flatten() for p in ref.parameters()]).norm().item()
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *a, **k):
        params = list(params)
        norms.append(torch.cat([p.grad.flatten() for p in params]).norm().item())
        return real(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    for batches, accum in (([np.arange(8)], 1), ([np.arange(3), np.arange(3, 6), np.arange(6, 8)], 3)):
        norms.clear()
        model = Linear()
        train(
            model,
            _groups(model),
            src,
            y,
            _cfg(epochs=1, batch_size=3, grad_accum=accum, max_grad_norm=1e9),
            hooks=Hooks(batches=lambda e, b=batches: b),
        )
        assert norms == pytest.approx([expected], rel=1e-5), accum


def test_history_loss_is_the_mean_cross_entropy_of_the_epoch():
    src, y = _data(n=8)
    model, ref = Linear(), Linear()
    order = [np.arange(8)]
    state = train(
        model, _groups(model), src, y, _cfg(epochs=1, batch_size=8), hooks=Hooks(batches=lambda e: order)
    )
    assert state.history[0]["train_loss"] == pytest.approx(
        nn.functional.cross_entropy(ref(src.x), y).item(), abs=1e-6
    )


def test_three_micro_batches_are_one_step_and_a_short_last_group_still_steps():
    src, y = _data(n=12)
    a, b = Linear(), Linear()
    whole, thirds = [np.arange(12)], [np.arange(0, 4), np.arange(4, 8), np.arange(8, 12)]
    train(
        a,
        _groups(a),
        src,
        y,
        _cfg(epochs=1, batch_size=12, max_grad_norm=None),
        hooks=Hooks(batches=lambda e: whole),
    )
    cfg = _cfg(epochs=1, batch_size=4, grad_accum=3, max_grad_norm=None)
    state = train(b, _groups(b), src, y, cfg, hooks=Hooks(batches=lambda e: thirds))
    assert state.step == 1
    torch.testing.assert_close(a.fc.weight, b.fc.weight, rtol=1e-5, atol=1e-6)
    src, y = _data(n=25)
    model = Linear()
    state = train(model, _groups(model), src, y, _cfg(epochs=2, batch_size=5, grad_accum=2))
    assert state.step == 6 and [h["step"] for h in state.history] == [3, 6]  # 5 batches: 2 + 2 + 1 per step


def test_the_batches_hook_is_asked_for_each_epoch():
    src, y = _data(n=8)
    asked = []

    def batches(epoch):
        asked.append(epoch)
        return [np.arange(4), np.arange(4, 8)] if epoch == 0 else [np.arange(8)]

    model = Linear()
    state = train(model, _groups(model), src, y, _cfg(epochs=2, batch_size=4), hooks=Hooks(batches=batches))
    assert state.step == 3 and 0 in asked and 1 in asked and [h["step"] for h in state.history] == [2, 3]


def test_lr_factor_with_one_step_of_decay():
    assert lr_factor(2, 2, 1, "linear") == pytest.approx(0.0)  # (step - warmup) / (total - warmup) = 1 / 1
    assert lr_factor(1, 2, 1, "linear") == pytest.approx(1.0)


def test_a_checkpoint_at_the_second_last_batch_is_written(tmp_path, monkeypatch):
    src, y = _data()
    saved = _record_saves(monkeypatch)
    model = Linear()
    cfg = _cfg(checkpoint_every=5, checkpoint_min_seconds=0)
    train(model, _groups(model), src, y, cfg, Checkpointer(tmp_path / "a", "k"))
    assert saved == [5, 6, 10, 12]  # step 5 is the 5th of 6 batches: periodic; 6 and 12 end the epochs


def test_ctrl_c_mid_accumulation_drops_the_half_step(tmp_path):
    src, y = _data(n=8)
    model = Linear()
    calls = []

    def loss(out, t):
        calls.append(1)
        if len(calls) == 2:  # the second micro-batch of the first step
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, t)

    cfg = _cfg(epochs=1, batch_size=4, grad_accum=2)
    with pytest.raises(Interrupted, match="interrupted at step 0/1"):
        train(model, _groups(model), src, y, cfg, Checkpointer(tmp_path / "ck", "k"), Hooks(loss=loss))
    assert all(p.grad is None for p in model.parameters())
    state, _ = Checkpointer(tmp_path / "ck", "k").load()
    assert state.step == 0 and state.batch == 0


def test_ctrl_c_inside_a_step_is_acted_on_at_the_step_boundary(tmp_path):
    src, y = _data()

    def run(ck=None):
        model = Linear()
        return model, train(
            model, _groups(model), src, y, _cfg(), ck, Hooks(evaluate=lambda: {"accuracy": 0.5})
        )

    ref_model, ref = run()
    ck = Checkpointer(tmp_path / "ck", "k")
    with ctrl_c_at_step(5), pytest.raises(Interrupted, match="interrupted at step 5/12"):
        run(ck)
    state, _ = ck.load()
    assert (state.epoch, state.step, state.loss_count) == (0, 5, 5)  # step 5, counted in the epoch's loss
    model, resumed = run(ck)
    assert resumed.history == ref.history  # the logged losses too, not only the weights
    torch.testing.assert_close(model.fc.weight, ref_model.fc.weight, rtol=0, atol=0)


def test_a_second_ctrl_c_stops_at_once_without_writing_a_checkpoint(tmp_path):
    src, y = _data()
    model = Linear()
    ck = Checkpointer(tmp_path / "ck", "k")
    cfg = _cfg(checkpoint_every=0)
    import signal

    with ctrl_c_at_step(2, times=2):
        with pytest.raises(Interrupted, match="stopped at once by a second Ctrl-C"):
            train(model, _groups(model), src, y, cfg, ck, Hooks())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the loop put Python's back
    assert ck.load() is None  # none written mid-step; a rerun starts from the last periodic one (none here)


def test_an_error_while_ctrl_c_is_pending_is_that_interrupt(tmp_path):
    """DataLoader workers exit on SIGINT, so the next batch fails before the loop reaches a step boundary."""
    import signal

    src, y = _data()
    calls = []

    def loss(out, t):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        if len(calls) == 4:
            raise RuntimeError("DataLoader worker (pid 1234) exited unexpectedly")
        return nn.functional.cross_entropy(out, t)

    model = Linear()
    ck = Checkpointer(tmp_path / "ck", "k")
    with python_sigint(), pytest.raises(Interrupted, match="interrupted at step 3/12"):
        train(model, _groups(model), src, y, _cfg(), ck, Hooks(loss=loss))
    assert ck.load()[0].step == 3

    def failing(out, t):
        raise RuntimeError("DataLoader worker (pid 1234) exited unexpectedly")

    other = Linear()
    with pytest.raises(
        RuntimeError, match="exited unexpectedly"
    ):  # without a pending Ctrl-C it stays an error
        train(other, _groups(other), src, y, _cfg(), None, Hooks(loss=failing))


def test_a_resumed_run_says_from_where(tmp_path, capsys):
    src, y = _data()
    ck = Checkpointer(tmp_path / "ck", "k")
    model = Linear()
    with ctrl_c_at_step(7), pytest.raises(Interrupted):
        train(model, _groups(model), src, y, _cfg(), ck, Hooks())
    capsys.readouterr()
    model = Linear()
    train(model, _groups(model), src, y, _cfg(progress=True), ck)
    err = capsys.readouterr().err
    assert f"resuming from step 7/12 (epoch 2), checkpoint in {tmp_path / 'ck'}" in err


def test_fp16_with_its_gradient_scaler_resumes_identically(tmp_path):
    src, y = _data()

    def run(ck=None, hooks=None):
        model = Linear()
        train(model, _groups(model), src, y, _cfg(precision="fp16"), ck, hooks)
        return model

    ref = run()
    ck = Checkpointer(tmp_path / "ck", "k")
    with ctrl_c_at_step(5), pytest.raises(Interrupted):
        run(ck)
    _, tensors = ck.load()
    assert "scaler" in tensors and tensors["scaler"]["scale"] > 0
    resumed = run(ck)
    torch.testing.assert_close(resumed.fc.weight, ref.fc.weight, rtol=0, atol=0)


def test_a_checkpoint_that_would_run_code_is_not_loaded(tmp_path):
    """Checkpoints are read with weights_only=True: a pickle that would run code on load is refused."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ck = Checkpointer(tmp_path / "ck", "k")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "state.json").write_text(
        json.dumps({"version": CHECKPOINT_VERSION, "run_key": "k", "state": {}})
    )
    (tmp_path / "ck" / "state.pt").write_bytes(pickle.dumps({"model": Payload()}))
    (tmp_path / "ck" / "best.pt").write_bytes(pickle.dumps({"model": Payload()}))
    assert ck.load() is None  # the run starts over
    with pytest.raises(pickle.UnpicklingError):
        ck.load_best()
    assert not marker.exists()


def test_abandoned_checkpoints_are_those_untouched_for_a_day(tmp_path):
    import os
    import time

    from warmstart.techniques.train import abandoned_checkpoints

    old, new, empty_old = tmp_path / "old", tmp_path / "new", tmp_path / "empty"
    for d in (old, new, empty_old):
        d.mkdir()
    (old / "state.pt").write_bytes(b"x" * 100)
    (old / "sub").mkdir()
    (old / "sub" / "best.pt").write_bytes(b"y" * 50)
    (new / "state.pt").write_bytes(b"z" * 10)
    (tmp_path / "stray.txt").write_text("a file, not a checkpoint folder")
    day = 24 * 3600
    for p in (old / "state.pt", old / "sub" / "best.pt", empty_old):
        os.utime(p, (time.time() - 2 * day, time.time() - 2 * day))
    os.utime(new / "state.pt", (time.time() - 3600, time.time() - 3600))
    found = abandoned_checkpoints(tmp_path)
    assert [(f.name, size) for f, _, size in found] == [("empty", 0), ("old", 150)]
    assert all(47.9 < age < 48.1 for _, age, _ in found)
    assert [f.name for f, _, _ in abandoned_checkpoints(tmp_path, older_than_hours=0.5)] == [
        "empty",
        "new",
        "old",
    ]
    assert abandoned_checkpoints(tmp_path / "missing") == []


def _bare_loop(rank: int, world: int):
    from warmstart.techniques.train import _Loop

    loop = _Loop.__new__(_Loop)  # only the attributes the methods under test read
    loop.rank, loop.world = rank, world
    return loop


def test_each_rank_takes_its_share_of_a_batch_and_a_stand_in_when_it_has_none():
    idx = np.arange(10, 15)
    for rank, rows in ((0, [10, 12, 14]), (1, [11, 13])):
        local, weight = _bare_loop(rank, 2)._share(idx)
        assert local.tolist() == rows and weight == 1.0
    local, weight = _bare_loop(2, 3)._share(np.arange(10, 12))  # two rows, three ranks: rank 2 has none
    assert local.tolist() == [10] and weight == 0.0  # a stand-in row whose loss counts for nothing
    local, weight = _bare_loop(0, 1)._share(idx)
    assert local is idx and weight == 1.0


def test_the_ddp_wrapper_is_built_once_and_rebuilt_when_the_trainable_set_changes(tmp_path):
    import torch.distributed as dist

    from warmstart import runtime

    if not dist.is_available():
        pytest.skip("torch.distributed missing")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        model = Linear()
        loop = _bare_loop(0, 2)  # acts as one of two ranks; the group itself has one process
        loop.model, loop.ddp, loop.ddp_params = model, None, []
        loop.rt = runtime.resolve("cpu", "fp32")
        single = _bare_loop(0, 1)
        single.model = model
        assert single._forward_model() is model  # one process: the model itself
        first = loop._forward_model()
        assert isinstance(first, nn.parallel.DistributedDataParallel) and first.module is model
        assert loop._forward_model() is first  # the same trainable parameters: the same wrapper
        assert loop.ddp_params == list(model.parameters())
        model.fc.bias.requires_grad_(False)
        second = loop._forward_model()
        assert second is not first and loop.ddp_params == [model.fc.weight]
        assert first.find_unused_parameters and not first.broadcast_buffers and first.device_ids is None
        other = Linear()
        loop.model = other  # same count of parameters, different tensors: rebuilt too
        other.fc.bias.requires_grad_(False)
        assert loop._forward_model() is not second
    finally:
        dist.destroy_process_group()
