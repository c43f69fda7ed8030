"""Optimizers by name and the epoch-step learning-rate schedule, as the MXNet algorithm has them.

Each optimizer gets only the hyperparameters the contract gives it: `momentum` and
`weight_decay` for sgd/nag, `beta_1`/`beta_2` for adam, `gamma` for rmsprop, `eps` for adam and
rmsprop. As in MXNet, weight decay applies to weights and BatchNorm scales, not to biases or
BatchNorm shifts.

The schedule multiplies the rate by `lr_scheduler_factor` after each epoch of
`lr_scheduler_step`. Like MXNet's `MultiFactorScheduler` it steps per iteration, with an epoch
taken as `num_training_samples // mini_batch_size` iterations (per worker), so the drop happens at
the same update however many batches the data really has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn
from torch.optim import SGD, Adam, Optimizer, RMSprop
from torch.optim.lr_scheduler import LambdaLR

from trainer.hyperparameters import Hyperparameters

__all__ = [
    "OPTIMIZERS",
    "build_optimizer",
    "build_scheduler",
    "current_learning_rate",
    "iterations_per_epoch",
    "learning_rate_at",
    "parameter_groups",
]

ParamGroups = list[dict[str, object]]


def _sgd(groups: ParamGroups, hp: Hyperparameters) -> Optimizer:
    return SGD(groups, lr=hp.learning_rate, momentum=hp.momentum, weight_decay=hp.weight_decay)


def _nag(groups: ParamGroups, hp: Hyperparameters) -> Optimizer:
    return SGD(
        groups,
        lr=hp.learning_rate,
        momentum=hp.momentum,
        weight_decay=hp.weight_decay,
        nesterov=hp.momentum > 0,
    )


def _adam(groups: ParamGroups, hp: Hyperparameters) -> Optimizer:
    return Adam(groups, lr=hp.learning_rate, betas=(hp.beta_1, hp.beta_2), eps=hp.eps)


def _rmsprop(groups: ParamGroups, hp: Hyperparameters) -> Optimizer:
    return RMSprop(groups, lr=hp.learning_rate, alpha=hp.gamma, eps=hp.eps)


# name -> constructor; the names are the contract's `optimizer` values.
OPTIMIZERS: dict[str, Callable[[ParamGroups, Hyperparameters], Optimizer]] = {
    "sgd": _sgd,
    "nag": _nag,
    "adam": _adam,
    "rmsprop": _rmsprop,
}
_DECAYING = {"sgd", "nag"}


def parameter_groups(model: nn.Module, weight_decay: float) -> ParamGroups:
    """Two groups: weights and BatchNorm scales (decayed), biases and BatchNorm shifts (not)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (decay if name == "weight" else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, hp: Hyperparameters) -> Optimizer:
    """`hp.optimizer` over `model`'s parameters, with only the hyperparameters that apply to it."""
    weight_decay = hp.weight_decay if hp.optimizer in _DECAYING else 0.0
    return OPTIMIZERS[hp.optimizer](parameter_groups(model, weight_decay), hp)


def iterations_per_epoch(hp: Hyperparameters, world_size: int = 1) -> int:
    """MXNet's epoch size: `num_training_samples / mini_batch_size / workers`, at least 1."""
    return max(hp.num_training_samples // (hp.mini_batch_size * world_size), 1)


def _factor_at(steps: Iterable[int], factor: float) -> Callable[[int], float]:
    boundaries = sorted(steps)

    def multiplier(iteration: int) -> float:
        # MultiFactorScheduler: update n (1-based) is reduced once per boundary s with n > s.
        return float(factor ** sum(1 for s in boundaries if iteration + 1 > s))

    return multiplier


def _boundaries(hp: Hyperparameters, world_size: int) -> list[int]:
    size = iterations_per_epoch(hp, world_size)
    return [epoch * size for epoch in hp.lr_scheduler_step]


def learning_rate_at(hp: Hyperparameters, iteration: int, world_size: int = 1) -> float:
    """The learning rate of the update with 0-based index `iteration`."""
    multiplier = _factor_at(_boundaries(hp, world_size), hp.lr_scheduler_factor)
    return hp.learning_rate * multiplier(iteration)


def build_scheduler(optimizer: Optimizer, hp: Hyperparameters, world_size: int = 1) -> LambdaLR:
    """A per-iteration scheduler (call `.step()` after every optimizer step)."""
    return LambdaLR(optimizer, _factor_at(_boundaries(hp, world_size), hp.lr_scheduler_factor))


def current_learning_rate(optimizer: Optimizer) -> float:
    """The learning rate the next update will use."""
    return float(optimizer.param_groups[0]["lr"])
