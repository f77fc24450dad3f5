"""Domain alignment's arithmetic (techniques/domain.py), checked against sums worked out with numpy: the CORAL
distance, the CORAL loss the training loop adds, and BatchNorm statistics re-estimated on a domain's rows."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from warmstart.techniques.domain import (
    DomainCritic,
    coral_distance,
    coral_hook,
    dann_coefficient,
    dann_hook,
    recalibrate_batchnorm,
)
from warmstart.techniques.head import LinearHead


def _coral(a: np.ndarray, b: np.ndarray) -> float:
    cov = [np.cov(x, rowvar=False, ddof=1) if len(x) > 1 else np.zeros((x.shape[1],) * 2) for x in (a, b)]
    return float(((cov[0] - cov[1]) ** 2).mean() + ((a.mean(0) - b.mean(0)) ** 2).mean())


def test_coral_distance_is_the_mean_squared_gap_of_covariances_plus_that_of_means():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), 2 * rng.normal(size=(5, 3)) + 1
    got = float(coral_distance(torch.tensor(a), torch.tensor(b)))
    assert got == pytest.approx(_coral(a, b), rel=1e-5)
    assert float(coral_distance(torch.tensor(b), torch.tensor(a))) == pytest.approx(got, rel=1e-5)
    # two rows (covariance over one degree of freedom) and one row (no covariance: the means alone)
    for n in (2, 1):
        got = float(coral_distance(torch.tensor(a[:n]), torch.tensor(b[:n])))
        assert got == pytest.approx(_coral(a[:n], b[:n]), rel=1e-5)
    assert float(coral_distance(torch.tensor(a), torch.tensor(a))) == pytest.approx(0.0, abs=1e-9)


class _Rows:
    """A BatchSource of ready tensors."""

    def __init__(self, X: torch.Tensor) -> None:
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def collate(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {"x": self.X[torch.as_tensor(np.asarray(rows))]}


_RT = SimpleNamespace(to_device=lambda batch: batch, autocast=contextlib.nullcontext)


def _standardising_model() -> tuple[LinearHead, SimpleNamespace]:
    """A head that standardises its 3 inputs by a known mean and scale, behind an identity backbone."""
    head = LinearHead(3, 2)
    head.mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    head.scale.copy_(torch.tensor([2.0, 0.5, 4.0]))
    return head, SimpleNamespace(head=head, backbone=SimpleNamespace(forward_features=lambda x: x))


def test_coral_hook_compares_the_batch_the_head_saw_with_random_target_rows_as_the_head_standardises_them():
    rng = np.random.default_rng(1)
    head, model = _standardising_model()
    S = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
    T = torch.tensor(3 * rng.normal(size=(9, 3)) + 2, dtype=torch.float32)
    loss, remove = coral_hook(model, _Rows(T), 5, 0.7, _RT, previous=lambda: torch.tensor(0.25))
    head(S)  # the training step's forward pass: the hook remembers these features
    torch.manual_seed(3)
    rows = torch.randint(len(T), (5,)).numpy()  # the rows the loss will draw
    torch.manual_seed(3)
    got = float(loss())

    def std(x: torch.Tensor) -> np.ndarray:
        return ((x - head.mean) / head.scale).double().numpy()

    assert got == pytest.approx(0.7 * _coral(std(S), std(T[rows])) + 0.25, rel=1e-5)
    remove()
    assert not head._forward_pre_hooks
    alone, _ = coral_hook(model, _Rows(T), 5, 0.7, _RT)
    head(S)
    torch.manual_seed(3)
    assert float(alone()) == pytest.approx(got - 0.25, rel=1e-5)


def test_dann_hook_trains_the_critic_on_both_domains_and_reverses_its_gradient_into_the_features():
    rng = np.random.default_rng(2)
    head, model = _standardising_model()
    T = torch.tensor(3 * rng.normal(size=(9, 3)) + 2, dtype=torch.float32)
    torch.manual_seed(0)
    critic = DomainCritic(3, hidden=8)
    seen_epochs = []
    loss, on_epoch, remove = dann_hook(
        model,
        critic,
        _Rows(T),
        5,
        0.5,
        4,
        _RT,
        previous=lambda: torch.tensor(0.25),
        previous_epoch=seen_epochs.append,
    )
    S = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32, requires_grad=True)
    on_epoch(2)
    assert seen_epochs == [2]
    head(S)
    torch.manual_seed(3)
    rows = torch.randint(len(T), (5,)).numpy()
    torch.manual_seed(3)
    got = loss()
    zs, zt = (S - head.mean) / head.scale, (T[rows] - head.mean) / head.scale
    z = torch.cat([zs, zt]).detach().requires_grad_(True)
    domain = torch.cat([torch.zeros(6), torch.ones(5)])
    want = torch.nn.functional.binary_cross_entropy_with_logits(critic(z), domain)
    assert got.item() == pytest.approx(want.item() + 0.25, rel=1e-5)
    got.backward()
    want.backward()
    # the features get the critic's gradient reversed and scaled by weight x the epoch's coefficient
    coeff = 0.5 * dann_coefficient(2, 4)
    expected = -coeff * z.grad[:6] / head.scale
    torch.testing.assert_close(S.grad, expected, rtol=1e-4, atol=1e-6)
    # the critic's own gradient is not reversed: a step along it separates the domains better
    with torch.no_grad():
        for p in critic.parameters():
            p -= 0.01 * p.grad
        after = torch.nn.functional.binary_cross_entropy_with_logits(critic(z), domain)
    assert after.item() < want.item()
    remove()
    assert not head._forward_pre_hooks


def test_batchnorm_statistics_become_exact_averages_over_the_rows():
    X = torch.tensor(np.random.default_rng(2).normal(3, 2, size=(12, 3, 2, 2)), dtype=torch.float32)
    bn = nn.BatchNorm2d(3, momentum=0.01)

    def batch_stats(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        flat = rows.transpose(0, 1).reshape(3, -1).double().numpy()
        return flat.mean(1), flat.var(1, ddof=1)

    recalibrate_batchnorm(bn, lambda x: bn(x), _Rows(X), 4)
    # three batches of 4 rows: the running statistics are the mean of the three batches' own
    parts = [batch_stats(X[i : i + 4]) for i in (0, 4, 8)]
    np.testing.assert_allclose(bn.running_mean, np.mean([m for m, _ in parts], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, np.mean([v for _, v in parts], 0), rtol=1e-5)
    assert bn.momentum == 0.01 and not bn.training  # as it was, and ready to predict
    # at most max_rows rows; one row alone still counts; no rows leave the statistics as they are
    recalibrate_batchnorm(bn, lambda x: bn(x), _Rows(X), 4, max_rows=4)
    np.testing.assert_allclose(bn.running_mean, batch_stats(X[:4])[0], rtol=1e-5)
    recalibrate_batchnorm(bn, lambda x: bn(x), _Rows(X[5:6]), 4)
    np.testing.assert_allclose(bn.running_mean, batch_stats(X[5:6])[0], rtol=1e-5)
    before = bn.running_mean.clone()
    recalibrate_batchnorm(bn, lambda x: bn(x), _Rows(X[:0]), 4)
    assert torch.equal(bn.running_mean, before)
