"""`build_loaders`: the train and validation batches the training loop consumes.

When the decoded (resized) data set fits `cache_bytes` it is decoded once, by every core, into one
uint8 buffer (`ImageStore`) and later epochs only crop/augment; otherwise DataLoader workers decode
each epoch's batches as they are needed (memory bounded by the prefetch queue), checking each
image's size as it is decoded rather than in a pass over every image first. Workers hand over
whole packed batches (see `trainer.data.decoding`), so no file descriptor is held per image.
Either way augmentation runs on whole uint8 batches in the calling process, and every random
choice comes from a generator seeded with (seed, epoch), so the batches do not depend on the
number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from trainer.data.config import DataConfig, detect_content_type
from trainer.data.datasets import DecodedImages, Split, load_split
from trainer.data.decoding import (
    BatchDecoder,
    DecodeStats,
    ImageStore,
    decode_all,
    unpack,
    usable_cores,
    worker_batches,
)
from trainer.data.images import probe, resized_size
from trainer.data.transforms import AUGMENTATIONS, Augmentation, augment_batch
from trainer.errors import DataError
from trainer.hyperparameters import Hyperparameters
from trainer.notices import notice

__all__ = ["DEFAULT_CACHE_BYTES", "EpochLoader", "Loaders", "build_loaders", "loader_settings"]

DEFAULT_CACHE_BYTES = 4 << 30
_PROBE = 64  # images probed to estimate the decoded size of a data set
_FAR = 0.1  # num_training_samples more than this fraction off the real count gets a notice
_STALL_SECONDS = 600.0  # no batch from a live worker for this long: the run ends with an error


def loader_settings(device: torch.device) -> dict[str, object]:
    """DataLoader settings for streamed epochs: one worker per spare core (at most 8; the calling
    process trains), pinned memory for CUDA, two batches queued per worker, and a generous
    `timeout` so that a stalled worker ends the run instead of hanging it. Workers are not
    persistent: this path is only taken for data sets too large to cache, whose epochs dwarf a
    worker start, and a persistent loader here took 5 s to shut down (torch 2.14)."""
    workers = min(8, max(0, usable_cores() - 1))
    settings: dict[str, object] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers:
        settings.update(prefetch_factor=2, timeout=_STALL_SECONDS)
    return settings


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
    cache: ImageStore | None = None
    dataset: DecodedImages | None = None
    settings: dict[str, object] = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)
    epoch: int = 0

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
                yield self.cache.take(idx)
            return
        assert self.dataset is not None
        loader = DataLoader(
            BatchDecoder(self.dataset),
            sampler=[c.tolist() for c in chunks],  # type: ignore[arg-type]
            batch_size=None,
            **self.settings,  # type: ignore[arg-type]
        )
        for pixels, shapes in worker_batches(loader):
            yield unpack(pixels, shapes)

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


@dataclass
class Loaders:
    """Train and validation batches (see `build_loaders`)."""

    train: EpochLoader
    validation: EpochLoader
    class_counts: torch.Tensor
    content_type: str
    decoded: dict[str, DecodeStats] = field(default_factory=dict)
    estimated_bytes: dict[str, int] = field(default_factory=dict)
    cache_bytes: int = DEFAULT_CACHE_BYTES

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

    def describe(self) -> list[str]:
        """What was found, one line per channel: images, classes, cached (with what decoding
        cost) or streamed (with how many worker processes)."""
        lines = [f"data: {self.content_type}"]
        for channel, loader in (("train", self.train), ("validation", self.validation)):
            labels = loader.labels
            classes = int((labels.sum(0) > 0).sum()) if labels.dim() == 2 else len(labels.unique())
            head = f"  {channel}: {len(labels):,} images, {classes} classes, "
            if loader.cache is not None:
                stats = self.decoded[channel]
                lines.append(
                    head + f"cached in memory ({stats.nbytes / 2**20:,.0f} MiB, decoded in "
                    f"{stats.seconds:.1f} s at {stats.images / max(stats.seconds, 1e-9):,.0f} "
                    f"img/s by {stats.processes} process{'es' if stats.processes > 1 else ''})"
                )
            else:
                workers = int(loader.settings.get("num_workers", 0))  # type: ignore[call-overload]
                lines.append(
                    head + f"streamed (about {self.estimated_bytes[channel] / 2**20:,.0f} MiB "
                    f"decoded, over the {self.cache_bytes / 2**20:,.0f} MiB cache; "
                    f"decoded each epoch by {workers or 'the main'} "
                    f"{'worker process' + ('es' if workers > 1 else '') if workers else 'process'})"
                )
        return lines


def _estimate_bytes(split: Split, channels: int, resize: int | None) -> int:
    step = max(1, len(split) // _PROBE)
    sample = range(0, len(split), step)
    total = 0
    for i in sample:
        width, height, _ = probe(split.source(i), name=split.source.name(i))
        w, h = resized_size(width, height, resize)
        total += channels * w * h
    return total * len(split) // max(1, len(sample))


def build_loaders(
    hp: Hyperparameters,
    data: DataConfig,
    *,
    seed: int,
    device: torch.device | str | None = None,
    cache_bytes: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Loaders:
    """Read both channels of `data`, check them and return their batch iterables.

    Train batches are shuffled and augmented per `hp.augmentation_type`; validation batches are
    in order and only resized + centre-cropped. Images come as uint8 NCHW of `hp.image_shape`,
    labels as int64 `(N,)`, or float32 multi-hot `(N, num_classes)` with `multi_label=1`.
    Raises `DataError` (naming the file and line/record) for anything wrong that can be found
    without decoding every image (a streamed image is checked in the epoch that first reads it);
    a `Notice` when `num_training_samples` is far from the real count.
    `cache_bytes` (default: `data.cache_bytes`, else 4 GiB) is the memory for decoded images;
    a channel that does not fit what is left of it is streamed.
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
        notice(
            f"num_training_samples={hp.num_training_samples} but the train channel holds "
            f"{len(train_split)} images; the learning-rate schedule uses num_training_samples"
        )
    settings = loader_settings(device)
    shape = (hp.height, hp.width)
    if cache_bytes is None:
        cache_bytes = DEFAULT_CACHE_BYTES if data.cache_bytes is None else data.cache_bytes
    budget = cache_bytes
    loaders = {}
    stats: dict[str, DecodeStats] = {}
    sizes: dict[str, int] = {}
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
            loader.cache, stats[channel] = decode_all(
                images, workers=usable_cores(), expected_bytes=size, channel=channel
            )
        else:
            loader.dataset, loader.settings = images, settings
        sizes[channel] = size
        loaders[channel] = loader
    labels = train_split.labels
    counts = labels.sum(0).long() if multi else torch.bincount(labels, minlength=hp.num_classes)
    return Loaders(
        loaders["train"], loaders["validation"], counts, content_type, stats, sizes, cache_bytes
    )
