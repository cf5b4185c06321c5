"""The explicit penalties: exact gradients on weights, nothing on biases or norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.regularization import WeightPenalty


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def penalty_gradients(kind: str, strength: float, **options) -> dict[str, torch.Tensor]:
    net = small_net()
    WeightPenalty(kind, strength, **options)(net).backward()
    return ({name: (p.grad if p.grad is not None else torch.zeros_like(p)) for name, p in net.named_parameters()},
            dict(net.named_parameters()))


WEIGHTS = ("0.weight", "3.weight")
OTHERS = ("0.bias", "1.weight", "1.bias", "3.bias")


def test_l1_adds_lambda_sign_w_to_every_weight_and_nothing_else():
    grads, params = penalty_gradients("l1", 0.01)
    for name in WEIGHTS:
        assert torch.allclose(grads[name], 0.01 * params[name].sign())
    for name in OTHERS:
        assert torch.count_nonzero(grads[name]) == 0


def test_l2_adds_2_lambda_w():
    grads, params = penalty_gradients("l2", 0.01)
    for name in WEIGHTS:
        assert torch.allclose(grads[name], 2 * 0.01 * params[name])
    for name in OTHERS:
        assert torch.count_nonzero(grads[name]) == 0


def test_elastic_net_mixes_the_two():
    grads, params = penalty_gradients("elastic_net", 0.01, l1_ratio=0.25)
    for name in WEIGHTS:
        w = params[name]
        assert torch.allclose(grads[name], 0.01 * (0.25 * w.sign() + 0.75 * 2 * w))


def test_biases_and_norm_parameters_only_when_asked():
    grads, params = penalty_gradients("l2", 0.01, include_biases=True, include_norm=True)
    for name in OTHERS:
        assert torch.allclose(grads[name], 2 * 0.01 * params[name])


def test_none_is_inactive_and_bad_values_are_named():
    assert not WeightPenalty("none").active and not WeightPenalty("l2", 0.0).active
    with pytest.raises(ValueError, match="regularization.kind='l3' is not valid; valid: none, l1, l2, elastic_net"):
        WeightPenalty("l3")
    with pytest.raises(ValueError, match="strength must be a number >= 0, got -1"):
        WeightPenalty("l2", -1)
