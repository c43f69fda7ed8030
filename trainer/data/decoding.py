"""Decoding many images with DataLoader workers, a few shared-memory handles per *batch*.

A worker that returned one tensor per image would hand each over as its own shared-memory file
descriptor (torch's default sharing on Linux), and a cache built from them would keep one open
per image: `received 0 items of ancdata` or `Too many open files` at a few thousand images under
the common `ulimit -n 1024`. Here a worker decodes a whole batch and packs it into one flat uint8
buffer plus a small shapes tensor, so the descriptors in flight are bounded by the prefetch queue,
not by the data set; the in-memory cache (`ImageStore`) is one buffer with an offset and a shape
per image, neither a descriptor nor a Python object per image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from trainer.data.datasets import DecodedImages
from trainer.errors import DataError
from trainer.progress import Progress

__all__ = [
    "BatchDecoder",
    "DecodeStats",
    "ImageStore",
    "decode_all",
    "pack",
    "unpack",
    "worker_batches",
]

Packed = tuple[torch.Tensor, torch.Tensor, str]  # pixels, shapes, error ("" when none)
_DECODE_BATCH = 256
_SMALL = 4096  # below this, starting worker processes costs more than decoding in-process


def pack(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One flat uint8 buffer holding `images` (CHW) one after another, and their `(n, 3)` shapes."""
    shapes = torch.tensor([tuple(im.shape) for im in images], dtype=torch.int64).reshape(-1, 3)
    if not images:
        return torch.empty(0, dtype=torch.uint8), shapes
    return torch.cat([im.reshape(-1) for im in images]), shapes


def unpack(pixels: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """The images `pack` stored: one NCHW tensor when they share a shape, else a list of views."""
    if len(shapes) and bool((shapes == shapes[0]).all()):
        return pixels.view(len(shapes), *shapes[0].tolist())
    sizes = shapes.prod(1).tolist()
    return [p.view(*s) for p, s in zip(pixels.split(sizes), shapes.tolist(), strict=True)]


class BatchDecoder(Dataset[Packed]):
    """`decoder[indices]` decodes those images and packs them (see `pack`). A data problem comes
    back as its message, raised by the receiving side as a `DataError` naming the image, so it
    reaches the user as one clear line and not as a worker's traceback."""

    def __init__(self, images: DecodedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: Sequence[int]) -> Packed:  # type: ignore[override]
        decoded = []
        for i in indices:
            try:
                decoded.append(self.images[i])
            except DataError as exc:
                return torch.empty(0, dtype=torch.uint8), torch.empty(0, 3), str(exc)
        return (*pack(decoded), "")


def _cause(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    if "Too many open files" in text or "ancdata" in text:
        return f"{text} (raise the limit with `ulimit -n`, or use fewer workers)"
    if "killed by signal" in text or "exited unexpectedly" in text:
        return f"{text} (out of memory? the kernel's OOM killer ends processes with SIGKILL)"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return text


def worker_batches(loader: Iterable[Packed]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`(pixels, shapes)` of each packed batch from `loader`. A data problem in a batch raises
    its `DataError`; a failing or dying worker process raises one `DataError` naming the cause
    (the DataLoader notices a dead worker within seconds)."""
    it = iter(loader)
    while True:
        try:
            pixels, shapes, error = next(it)
        except StopIteration:
            return
        except DataError:
            raise
        except (RuntimeError, OSError, MemoryError) as exc:
            raise DataError(f"loading the data failed in a worker process: {_cause(exc)}") from None
        if error:
            raise DataError(error)
        yield pixels, shapes


@dataclass
class ImageStore:
    """Decoded images in one flat uint8 buffer: image i is `pixels[offsets[i]:offsets[i+1]]`,
    shaped `shapes[i]` (CHW). `dense` is the `(N, C, H, W)` view when all share a shape."""

    pixels: torch.Tensor
    offsets: torch.Tensor
    shapes: torch.Tensor

    def __post_init__(self) -> None:
        shapes = self.shapes
        self.dense: torch.Tensor | None = None
        if len(shapes) and bool((shapes == shapes[0]).all()):
            self.dense = self.pixels[: int(self.offsets[-1])].view(len(shapes), *shapes[0].tolist())

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def take(self, idx: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """The images at `idx`: an NCHW tensor, or a list of CHW views when sizes differ."""
        if self.dense is not None:
            return self.dense.index_select(0, idx)
        starts, shapes = self.offsets[idx].tolist(), self.shapes[idx].tolist()
        return [
            self.pixels[s : s + c * h * w].view(c, h, w)
            for s, (c, h, w) in zip(starts, shapes, strict=True)
        ]


@dataclass(frozen=True)
class DecodeStats:
    """What decoding a channel into memory cost."""

    images: int
    nbytes: int
    seconds: float
    processes: int


def decode_all(
    images: DecodedImages, *, workers: int, expected_bytes: int, channel: str = ""
) -> tuple[ImageStore, DecodeStats]:
    """Decode every image of `images` into an `ImageStore`, with `workers` processes (none for
    small sets), growing the buffer if `expected_bytes` was an underestimate."""
    n = len(images)
    workers = workers if n > _SMALL else 0
    start = time.perf_counter()
    chunks = [list(range(s, min(s + _DECODE_BATCH, n))) for s in range(0, n, _DECODE_BATCH)]
    loader = DataLoader(
        BatchDecoder(images),
        sampler=chunks,  # type: ignore[arg-type]
        batch_size=None,
        num_workers=workers,
        **({"prefetch_factor": 2} if workers else {}),  # type: ignore[arg-type]
    )
    pixels = torch.empty(max(expected_bytes, 1), dtype=torch.uint8)
    offsets = torch.zeros(n + 1, dtype=torch.int64)
    shapes = torch.zeros(n, 3, dtype=torch.int64)
    used = done = 0
    with Progress(n, f"decoding {channel}".strip(), unit="img") as progress:
        for batch_pixels, batch_shapes in worker_batches(loader):
            size = batch_pixels.numel()
            if used + size > pixels.numel():
                grown = torch.empty(max(used + size, pixels.numel() * 3 // 2), dtype=torch.uint8)
                grown[:used] = pixels[:used]
                pixels = grown
            pixels[used : used + size] = batch_pixels
            count = len(batch_shapes)
            shapes[done : done + count] = batch_shapes
            offsets[done + 1 : done + count + 1] = used + batch_shapes.prod(1).cumsum(0)
            used += size
            done += count
            progress.update(count)
    stats = DecodeStats(n, used, time.perf_counter() - start, max(1, workers))
    return ImageStore(pixels, offsets, shapes), stats


def usable_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
