"""`kv_store=dist_async`: asynchronous updates through a parameter server on a Ray actor.

The server holds the weights, the contract's optimizer and its learning-rate schedule
(`trainer.optim`). Each worker runs `trainer.loop.fit` on its shard with a
`ParameterServerClient` as its optimizer: after every batch the client pushes the gradients and
takes back the server's weights. The actor applies pushes one at a time in the order they arrive,
from whichever worker sends them, with no barrier between workers, which is what SageMaker's
`dist_async` means ("weights updated whenever gradients arrive from any worker, order not
guaranteed"). BatchNorm running statistics are buffers, not gradients: each worker keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
import torch
from torch import nn
from torch.optim import Optimizer

from trainer.hyperparameters import Hyperparameters
from trainer.models import build_model
from trainer.optim import build_optimizer, build_scheduler

__all__ = ["ParameterServer", "ParameterServerClient", "start_parameter_server"]


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters exchanged with the server, in the model's own order on both sides."""
    return [p for p in model.parameters() if p.requires_grad]


class ParameterServer:
    """The weights, the optimizer and the schedule of a `dist_async` run (one Ray actor).

    The learning-rate schedule steps once per applied push: a push is one batch of
    `mini_batch_size` images, so the schedule's epoch is `num_training_samples / mini_batch_size`
    pushes whatever the number of workers, as in MXNet's server-side updates.
    """

    def __init__(self, hp: Hyperparameters) -> None:
        torch.set_num_threads(1)  # an update is a few element-wise ops; leave the cores to workers
        self.model = build_model(hp)
        self.params = _trainable(self.model)
        self.optimizer = build_optimizer(self.model, hp)
        self.scheduler = build_scheduler(self.optimizer, hp)
        self.started = False
        self.updates: dict[int, int] = {}

    def start(self, weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """Take the first caller's initial weights (every worker builds the same model from the
        same seed or `model/` channel) and return the server's weights."""
        if not self.started:
            with torch.no_grad():
                for param, value in zip(self.params, weights, strict=True):
                    param.copy_(value)
            self.started = True
        return self.weights()

    def push(self, rank: int, gradients: list[torch.Tensor]) -> list[torch.Tensor]:
        """Apply one worker's gradients now (one optimizer and schedule step); return the
        weights after it, which the worker trains its next batch with."""
        for param, gradient in zip(self.params, gradients, strict=True):
            param.grad = gradient
        self.optimizer.step()
        self.scheduler.step()
        self.updates[rank] = self.updates.get(rank, 0) + 1
        return self.weights()

    def weights(self) -> list[torch.Tensor]:
        """The current weights (CPU tensors, in the model's parameter order)."""
        return [p.detach() for p in self.params]

    def update_counts(self) -> dict[int, int]:
        """How many pushes the server applied, per worker rank."""
        return dict(self.updates)


def start_parameter_server(hp: Hyperparameters) -> Any:
    """A `ParameterServer` actor for `hp`. It reserves no CPU slot: it only applies updates,
    and the workers' CPUs are what a Ray cluster's slots are for."""
    return ray.remote(num_cpus=0)(ParameterServer).remote(hp)


class ParameterServerClient(Optimizer):
    """A worker's optimizer under `dist_async`: `step()` pushes this batch's gradients to the
    server and loads the weights it sends back; it never waits for the other workers.

    The local learning rate (set by `fit`'s schedule) is only reported; the server's optimizer
    and schedule make the updates.
    """

    def __init__(self, model: nn.Module, server: Any, rank: int, learning_rate: float) -> None:
        params = _trainable(model)
        super().__init__(params, {"lr": learning_rate})
        self.server, self.rank, self.params = server, rank, params
        self._load(ray.get(server.start.remote([p.detach().cpu() for p in params])))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Push the gradients, pull the weights after the server applied them."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        gradients = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu()
            for p in self.params
        ]
        self._load(ray.get(self.server.push.remote(self.rank, gradients)))
        return loss

    def _load(self, weights: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self.params, weights, strict=True):
                param.copy_(value)
