"""The two channels of a data directory as `Split`s: where each image's bytes are, its labels.

`load_split` reads any of the three content types (images + `.lst`, RecordIO, augmented
manifest) into one form; `DecodedImages` is the torch Dataset that decodes and resizes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.data.config import DataConfig, manifest_path
from trainer.data.images import decode, resize_shorter
from trainer.data.lst import read_lst
from trainer.data.manifest import read_manifest
from trainer.data.recordio import RecordReader
from trainer.errors import DataError
from trainer.notices import notice

__all__ = ["DecodedImages", "FileBytes", "RecordBytes", "Split", "load_split"]


class FileBytes:
    """Image bytes from files. Paths are kept as one array (not an object per image) with, for
    error messages, where each was listed (`sources[k]`, line `lines[i]`). A missing or unreadable
    file is found when it is read, not by a pass over every file before training."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        sources: Sequence[Path] = (),
        source_of: Sequence[int] = (),
        lines: Sequence[int] = (),
    ) -> None:
        self.paths = np.array([os.fsencode(p) for p in paths], dtype=bytes)
        self.sources = list(sources)
        self.source_of = np.asarray(source_of, dtype=np.int32)
        self.lines = np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> Path:
        return Path(os.fsdecode(self.paths[i]))

    def name(self, i: int) -> str:
        return str(self.path(i))

    def where(self, i: int) -> str:
        """Where image i was listed (`file, line N`), or its path when not from a list."""
        if not len(self.lines):
            return self.name(i)
        return f"{self.sources[int(self.source_of[i])]}, line {int(self.lines[i])}"

    def __call__(self, i: int) -> bytes:
        path = self.path(i)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{self.where(i)}: image {path} not found") from None
        except OSError as exc:
            raise DataError(f"{self.where(i)}: cannot read the image {path} ({exc})") from None


class RecordBytes:
    """Image bytes from the records of one or more `.rec` files (header and labels stripped)."""

    def __init__(self, readers: Sequence[RecordReader]) -> None:
        self.readers = list(readers)
        self.starts = np.cumsum([0] + [len(r) for r in self.readers])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[RecordReader, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.readers[k], i - int(self.starts[k])

    def name(self, i: int) -> str:
        reader, n = self._locate(i)
        return f"{reader.path}, record {n}"

    where = name

    def __call__(self, i: int) -> bytes:
        reader, n = self._locate(i)
        return reader.read_image(n).image


@dataclass
class Split:
    """One channel: `source(i)` gives image i's encoded bytes, `labels[i]` its label(s)."""

    channel: str
    source: FileBytes | RecordBytes
    labels: torch.Tensor  # int64 (N,) or float32 (N, num_classes)

    def __len__(self) -> int:
        return len(self.labels)


def _label_tensor(
    rows: Sequence[tuple[float, ...]],
    where: Callable[[int], str],
    *,
    num_classes: int,
    multi_label: bool,
) -> torch.Tensor:
    """Check every row's labels against num_classes and stack them; errors name the row
    (`where(i)`)."""
    if multi_label:
        for i, row in enumerate(rows):
            if len(row) != num_classes:
                raise DataError(
                    f"{where(i)}: {len(row)} label value(s), but multi_label=1 needs one 0/1 value "
                    f"per class (num_classes={num_classes})"
                )
            bad = [v for v in row if v not in (0.0, 1.0)]
            if bad:
                raise DataError(f"{where(i)}: multi-hot labels must be 0 or 1, got {bad[0]:g}")
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), num_classes)
    for i, row in enumerate(rows):
        if len(row) != 1:
            raise DataError(
                f"{where(i)}: {len(row)} label values, but multi_label=0 needs exactly one "
                "(set multi_label=1 for multi-hot rows)"
            )
        if not row[0].is_integer() or not 0 <= row[0] < num_classes:
            raise DataError(
                f"{where(i)}: label {row[0]:g} is outside [0, num_classes={num_classes}) "
                "(classes are numbered 0, 1, ... num_classes-1)"
            )
    return torch.tensor([int(r[0]) for r in rows], dtype=torch.int64)


def _one(folder: Path, pattern: str, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"channel directory {folder} is missing ({what})")
    found = sorted(folder.glob(pattern))
    if not found:
        raise DataError(f"{folder} holds no {pattern} file ({what})")
    return found


def _image_split(root: Path, channel: str, num_classes: int, multi_label: bool) -> Split:
    images = root / channel
    if not images.is_dir():
        raise DataError(
            f"channel directory {images} is missing (the image content type needs "
            f"{channel}/ and {channel}_lst/)"
        )
    lists = _one(root / f"{channel}_lst", "*.lst", f"the .lst of the {channel} images")
    paths: list[str] = []
    rows: list[tuple[float, ...]] = []
    source_of: list[int] = []
    lines: list[int] = []
    for k, lst in enumerate(lists):
        for entry in read_lst(lst):
            paths.append(os.path.join(images, entry.path))
            rows.append(entry.labels)
            source_of.append(k)
            lines.append(entry.line)
    source = FileBytes(paths, sources=lists, source_of=source_of, lines=lines)
    labels = _label_tensor(rows, source.where, num_classes=num_classes, multi_label=multi_label)
    return Split(channel, source, labels)


def _recordio_split(root: Path, channel: str, num_classes: int, multi_label: bool) -> Split:
    readers = []
    for rec in _one(root / channel, "*.rec", f"the RecordIO content type needs {channel}/*.rec"):
        idx = rec.with_suffix(".idx")
        if not idx.is_file():
            notice(
                f"{rec} has no .idx beside it: reading the whole file once to find its records "
                f"(`tune pack` or im2rec write one)"
            )
        readers.append(RecordReader(rec, idx if idx.is_file() else None))
    source = RecordBytes(readers)
    rows = [reader.read_labels(n) for reader in readers for n in range(len(reader))]
    labels = _label_tensor(rows, source.name, num_classes=num_classes, multi_label=multi_label)
    return Split(channel, source, labels)


def _manifest_split(data: DataConfig, channel: str, num_classes: int, multi_label: bool) -> Split:
    path = manifest_path(data.root, channel)
    if path is None:
        raise DataError(
            f"no augmented manifest for the {channel} channel: expected {data.root}/{channel}"
            f".manifest or exactly one *.manifest in {data.root}/{channel}/"
        )
    entries = read_manifest(
        path,
        attribute_names=data.attribute_names,
        multi_label=multi_label,
        label_format=data.label_format,
        num_classes=num_classes,
    )
    source = FileBytes(
        [e.path for e in entries],
        sources=[path],
        source_of=[0] * len(entries),
        lines=[e.line for e in entries],
    )
    labels = _label_tensor(
        [e.labels for e in entries], source.where, num_classes=num_classes, multi_label=multi_label
    )
    return Split(channel, source, labels)


def load_split(
    data: DataConfig, content_type: str, channel: str, *, num_classes: int, multi_label: bool
) -> Split:
    """Read the list/records/manifest of one channel and check every label."""
    if content_type == "augmented-manifest":
        return _manifest_split(data, channel, num_classes, multi_label)
    readers = {"image": _image_split, "recordio": _recordio_split}
    return readers[content_type](data.root, channel, num_classes, multi_label)


class DecodedImages(Dataset[torch.Tensor]):
    """Image i decoded to uint8 CHW with `channels` channels, shorter side scaled to `resize`,
    and checked to be at least `min_size = (height, width)`."""

    def __init__(
        self, split: Split, *, channels: int, resize: int | None, min_size: tuple[int, int]
    ) -> None:
        self.split = split
        self.channels = channels
        self.resize = resize
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> torch.Tensor:
        source = self.split.source
        name = source.name(i)
        img = resize_shorter(decode(source(i), self.channels, name=name), self.resize)
        height, width = img.shape[1:]
        if height < self.min_size[0] or width < self.min_size[1]:
            raise DataError(
                f"{name}: image is {width}x{height} (width x height) after resize, smaller than "
                f"image_shape's {self.min_size[1]}x{self.min_size[0]}; images must be at least "
                "that large (or set resize)"
            )
        return img
