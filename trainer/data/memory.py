"""Training data already in memory (or on the device): `InMemoryLoaders`, for tests, benchmarks
and callers that hold their images as tensors. `fit` takes it like `build_loaders`' `Loaders`
(both are `trainer.loop.TrainingData`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["InMemoryLoaders"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Batches:
    def __init__(
        self, owner: InMemoryLoaders, images: torch.Tensor, labels: torch.Tensor, shuffle: bool
    ) -> None:
        self.owner, self.images, self.labels, self.shuffle = owner, images, labels, shuffle

    def __iter__(self) -> Iterator[Batch]:
        n, size = len(self.labels), self.owner.batch_size
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.owner.seed * 100_003 + self.owner.epoch)
            rank, world_size = _world()  # every worker draws the same order and takes its share
            order = torch.randperm(n, generator=generator)[rank::world_size]
            order, n = order.to(self.images.device), len(order)
            for start in range(0, n - size + 1 if n >= size else n, size):
                index = order[start : start + size]
                yield self.images[index], self.labels[index]
        else:
            for start in range(0, n, size):
                yield self.images[start : start + size], self.labels[start : start + size]


@dataclass
class InMemoryLoaders:
    """Images (uint8 NCHW, 0..255) and labels already in memory (or on the device): training
    batches are reshuffled each epoch as a function of (seed, epoch), incomplete last batch
    dropped, each torch.distributed worker taking its share; validation is in order."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    validation_images: torch.Tensor
    validation_labels: torch.Tensor
    batch_size: int
    seed: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        self.train = _Batches(self, self.train_images, self.train_labels, shuffle=True)
        self.validation = _Batches(self, self.validation_images, self.validation_labels, False)

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def num_validation(self) -> int:
        return len(self.validation_labels)

    @property
    def class_counts(self) -> torch.Tensor | None:
        labels = self.train_labels
        return labels.float().sum(0).cpu() if labels.dim() == 2 else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
