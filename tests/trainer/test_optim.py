"""Optimizers get only their own hyperparameters; the epoch-step schedule steps per iteration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.hyperparameters import OPTIMIZER_NAMES, parse_hyperparameters
from trainer.optim import (
    OPTIMIZERS,
    build_optimizer,
    build_scheduler,
    iterations_per_epoch,
    learning_rate_at,
    parameter_groups,
)


def hp_with(**values: object):
    return parse_hyperparameters(
        {"num_classes": 3, "num_training_samples": 1000, "mini_batch_size": 100, **values}
    )


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3)
    )


def test_table_holds_exactly_the_contracts_optimizers() -> None:
    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES)


def test_weight_decay_goes_to_weights_and_bn_scales_not_to_biases_or_shifts() -> None:
    model = tiny()
    decay, no_decay = parameter_groups(model, 0.01)
    conv, bn, _, fc = model
    assert {id(p) for p in decay["params"]} == {id(conv.weight), id(bn.weight), id(fc.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(bn.bias), id(fc.bias)}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)


@pytest.mark.parametrize("name", ["sgd", "nag"])
def test_sgd_and_nag_take_momentum_and_weight_decay(name: str) -> None:
    opt = build_optimizer(
        tiny(), hp_with(optimizer=name, momentum=0.8, weight_decay=0.05, learning_rate=0.2)
    )
    assert isinstance(opt, torch.optim.SGD)
    decay, no_decay = opt.param_groups
    assert (decay["lr"], decay["momentum"], decay["weight_decay"]) == (0.2, 0.8, 0.05)
    assert no_decay["weight_decay"] == 0.0
    assert decay["nesterov"] is (name == "nag")


def test_adam_takes_betas_and_eps_and_ignores_momentum_and_weight_decay() -> None:
    opt = build_optimizer(
        tiny(),
        hp_with(
            optimizer="adam", beta_1=0.8, beta_2=0.95, eps=1e-6, momentum=0.5, weight_decay=0.1
        ),
    )
    assert isinstance(opt, torch.optim.Adam)
    for group in opt.param_groups:
        assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.95), 1e-6, 0.0)


def test_rmsprop_takes_gamma_and_eps_and_ignores_momentum_and_weight_decay() -> None:
    opt = build_optimizer(
        tiny(),
        hp_with(
            optimizer="rmsprop", gamma=0.7, eps=1e-5, momentum=0.5, weight_decay=0.1, beta_1=0.1
        ),
    )
    assert isinstance(opt, torch.optim.RMSprop)
    for group in opt.param_groups:
        assert (group["alpha"], group["eps"], group["weight_decay"], group["momentum"]) == (
            0.7,
            1e-5,
            0.0,
            0,
        )


def test_epoch_size_is_mxnets_samples_over_batch_over_workers() -> None:
    assert iterations_per_epoch(hp_with()) == 10
    assert iterations_per_epoch(hp_with(num_training_samples=1099)) == 10
    assert iterations_per_epoch(hp_with(), world_size=2) == 5
    assert iterations_per_epoch(hp_with(num_training_samples=50)) == 1


def test_rate_drops_by_the_factor_after_each_listed_epoch() -> None:
    hp = hp_with(learning_rate=0.4, lr_scheduler_step="2,4", lr_scheduler_factor=0.5)
    # 10 iterations per epoch: epochs 1-2 are updates 0..19, epochs 3-4 are 20..39.
    expected = {0: 0.4, 19: 0.4, 20: 0.2, 39: 0.2, 40: 0.1, 500: 0.1}
    assert {i: learning_rate_at(hp, i) for i in expected} == pytest.approx(expected)
    assert learning_rate_at(hp, 10, world_size=2) == pytest.approx(0.2)


def test_scheduler_stepped_per_iteration_follows_learning_rate_at() -> None:
    hp = hp_with(learning_rate=0.4, lr_scheduler_step="1,3", lr_scheduler_factor=0.1)
    opt = build_optimizer(tiny(), hp)
    scheduler = build_scheduler(opt, hp)
    seen = []
    for _ in range(45):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert seen == pytest.approx([learning_rate_at(hp, i) for i in range(45)])
    assert seen[9] == pytest.approx(0.4) and seen[10] == pytest.approx(0.04)
    assert seen[30] == pytest.approx(0.004)


def test_no_steps_keeps_the_rate_constant() -> None:
    hp = hp_with(learning_rate=0.3)
    assert {learning_rate_at(hp, i) for i in (0, 10, 10_000)} == {0.3}
