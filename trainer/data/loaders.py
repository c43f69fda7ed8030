"""`build_loaders`: the train and validation batches the training loop consumes.

Images are decoded once. When the decoded (resized) data set fits `cache_bytes` it is kept in
memory as uint8 and later epochs only crop/augment; otherwise DataLoader workers decode each epoch.
Either way augmentation runs on whole uint8 batches in the calling process, and every random
choice comes from a generator seeded with (seed, epoch), so the batches do not depend on the
number of workers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from trainer.data.config import DataConfig, detect_content_type
from trainer.data.datasets import DecodedImages, Split, load_split
from trainer.data.images import probe, resized_size
from trainer.data.transforms import AUGMENTATIONS, Augmentation, augment_batch
from trainer.errors import DataError
from trainer.hyperparameters import Hyperparameters

__all__ = ["DEFAULT_CACHE_BYTES", "EpochLoader", "Loaders", "build_loaders", "loader_settings"]

DEFAULT_CACHE_BYTES = 4 << 30
_PROBE = 64  # images probed to estimate the decoded size of a data set
_FAR = 0.1  # num_training_samples more than this fraction off the real count gets a warning


def loader_settings(device: torch.device) -> dict[str, object]:
    """DataLoader settings for this machine: one worker per spare core (at most 8), pinned memory
    for CUDA, a deeper prefetch queue. Workers are not persistent: this path is only taken for
    data sets too large to cache, whose epochs dwarf a worker start, and a persistent loader here
    took 5 s to shut down (torch 2.14)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(8, max(0, (cores or 1) - 1))
    settings: dict[str, object] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers:
        settings.update(prefetch_factor=4)
    return settings


class _Checked(Dataset[tuple[int, torch.Tensor | str]]):
    """Decoded images, with a data problem returned as its message (raised by the caller), so
    that a worker's error reaches the user as one clear `DataError` and not a worker traceback."""

    def __init__(self, images: DecodedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | str]:
        try:
            return i, self.images[i]
        except DataError as exc:
            return i, str(exc)


def _collate(items: list[tuple[int, torch.Tensor | str]]) -> list[torch.Tensor]:
    out = []
    for _, item in items:
        if isinstance(item, str):
            raise DataError(item)
        out.append(item)
    return out


@dataclass
class EpochLoader:
    """One channel's batches; iterating once is one epoch. Decoded images come from memory
    (`cache`) or from `dataset` through DataLoader workers."""

    labels: torch.Tensor
    batch_size: int
    shape: tuple[int, int]
    augmentation: Augmentation
    shuffle: bool
    seed: int
    device: torch.device
    cache: torch.Tensor | list[torch.Tensor] | None = None
    dataset: DecodedImages | None = None
    settings: dict[str, object] = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)
    epoch: int = 0
    _loader: DataLoader[tuple[int, torch.Tensor | str]] | None = field(default=None, repr=False)
    _order: list[list[int]] = field(default_factory=list, repr=False)  # read by `_Order`

    def _count(self) -> int:
        world = self.shard[1]
        return len(self.labels) if world == 1 else math.ceil(len(self.labels) / world)

    def __len__(self) -> int:
        return math.ceil(self._count() / self.batch_size)

    def _epoch_order(self, g: torch.Generator) -> torch.Tensor:
        """This epoch's sample order; with `shard=(rank, world)` every `world`-th sample from
        `rank` of the common permutation, padded by wrapping so all ranks run the same steps."""
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        rank, world = self.shard
        if world == 1:
            return order
        padded = torch.cat([order, order[: self._count() * world - n]])
        g.manual_seed(g.initial_seed() + 7919 * (rank + 1))  # different augmentation per rank
        return padded[rank::world]

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 2 + self.shuffle)

    def _batches(self, order: torch.Tensor) -> Iterator[list[torch.Tensor] | torch.Tensor]:
        chunks = order.split(self.batch_size)
        if self.cache is not None:
            for idx in chunks:
                if isinstance(self.cache, torch.Tensor):
                    yield self.cache.index_select(0, idx)
                else:
                    yield [self.cache[i] for i in idx.tolist()]
            return
        assert self.dataset is not None
        if self._loader is None:
            self._loader = DataLoader(
                _Checked(self.dataset),
                batch_sampler=_Order(self),
                collate_fn=_collate,
                **self.settings,  # type: ignore[arg-type]
            )
        self._order = [c.tolist() for c in chunks]
        yield from self._loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        order = self._epoch_order(g)
        starts = range(0, len(order), self.batch_size)
        for start, images in zip(starts, self._batches(order), strict=True):
            idx = order[start : start + self.batch_size]
            batch = augment_batch(images, *self.shape, self.augmentation, g)
            labels = self.labels.index_select(0, idx)
            if self.device.type != "cpu":
                batch = batch.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            yield batch, labels


class _Order:
    """Batch sampler that replays the epoch's order chosen by its `EpochLoader`."""

    def __init__(self, owner: EpochLoader) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.owner._order)

    def __len__(self) -> int:
        return len(self.owner)


@dataclass
class Loaders:
    """Train and validation batches (see `build_loaders`)."""

    train: EpochLoader
    validation: EpochLoader
    class_counts: torch.Tensor
    content_type: str

    @property
    def num_train(self) -> int:
        return len(self.train.labels)

    @property
    def num_validation(self) -> int:
        return len(self.validation.labels)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration's order and augmentation those of `epoch`."""
        self.train.epoch = epoch
        self.validation.epoch = epoch


def _estimate_bytes(split: Split, channels: int, resize: int | None) -> int:
    step = max(1, len(split) // _PROBE)
    sample = range(0, len(split), step)
    total = 0
    for i in sample:
        width, height, _ = probe(split.source(i), name=split.source.name(i))
        w, h = resized_size(width, height, resize)
        total += channels * w * h
    return total * len(split) // max(1, len(sample))


def _decode_all(images: DecodedImages, settings: dict[str, object]) -> torch.Tensor | list:
    # Starting worker processes costs more than decoding a small set here (~40k JPEGs/s/core).
    workers = int(settings.get("num_workers", 0)) if len(images) > 4096 else 0  # type: ignore[call-overload]
    loader = DataLoader(_Checked(images), batch_size=256, collate_fn=_collate, num_workers=workers)
    decoded = [im for batch in loader for im in batch]
    if all(im.shape == decoded[0].shape for im in decoded):
        return torch.stack(decoded)
    return decoded


def _check_sizes(images: DecodedImages) -> None:
    """Header-only pass: every image must be at least the crop after resize."""
    source = images.split.source
    height, width = images.min_size
    for i in range(len(source)):
        w, h, _ = probe(source(i), name=source.name(i))
        w, h = resized_size(w, h, images.resize)
        if h < height or w < width:
            raise DataError(
                f"{source.name(i)}: image is {w}x{h} (width x height) after resize, smaller than "
                f"image_shape's {width}x{height}; images must be at least that large "
                "(or set resize)"
            )


def build_loaders(
    hp: Hyperparameters,
    data: DataConfig,
    *,
    seed: int,
    device: torch.device | str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    shard: tuple[int, int] = (0, 1),
) -> Loaders:
    """Read both channels of `data`, check them and return their batch iterables.

    Train batches are shuffled and augmented per `hp.augmentation_type`; validation batches are
    in order and only resized + centre-cropped. Images come as uint8 NCHW of `hp.image_shape`,
    labels as int64 `(N,)`, or float32 multi-hot `(N, num_classes)` with `multi_label=1`.
    Raises `DataError` (naming the file and line/record) for anything wrong that can be found
    before training; warns when `num_training_samples` is far from the real count.
    `shard=(rank, world_size)` gives each data-parallel worker its part of every train epoch
    (same number of batches on every rank); validation stays whole on every rank.
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise DataError(
            f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
        )
    device = torch.device(device or "cpu")
    content_type = detect_content_type(data)
    multi = bool(hp.multi_label)
    splits = {
        channel: load_split(
            data, content_type, channel, num_classes=hp.num_classes, multi_label=multi
        )
        for channel in ("train", "validation")
    }
    train_split = splits["train"]
    if abs(hp.num_training_samples - len(train_split)) > _FAR * len(train_split):
        warnings.warn(
            f"num_training_samples={hp.num_training_samples} but the train channel holds "
            f"{len(train_split)} images; the learning-rate schedule uses num_training_samples",
            UserWarning,
            stacklevel=2,
        )
    settings = loader_settings(device)
    shape = (hp.height, hp.width)
    budget = cache_bytes
    loaders = {}
    for channel, split in splits.items():
        images = DecodedImages(split, channels=hp.channels, resize=hp.resize, min_size=shape)
        size = _estimate_bytes(split, hp.channels, hp.resize)
        train = channel == "train"
        loader = EpochLoader(
            labels=split.labels,
            batch_size=hp.mini_batch_size,
            shape=shape,
            augmentation=AUGMENTATIONS[hp.augmentation_type if train else None],
            shuffle=train,
            seed=seed,
            device=device,
            shard=shard if train else (0, 1),
        )
        if size <= budget:
            budget -= size
            loader.cache = _decode_all(images, settings)
        else:
            _check_sizes(images)
            loader.dataset, loader.settings = images, settings
        loaders[channel] = loader
    labels = train_split.labels
    counts = labels.sum(0).long() if multi else torch.bincount(labels, minlength=hp.num_classes)
    return Loaders(loaders["train"], loaders["validation"], counts, content_type)
