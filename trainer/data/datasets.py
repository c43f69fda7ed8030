"""The two channels of a data directory as `Split`s: where each image's bytes are, its labels.

`load_split` reads any of the three content types (images + `.lst`, RecordIO, augmented
manifest) into one form; `DecodedImages` is the torch Dataset that decodes and resizes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from trainer.data.config import DataConfig, manifest_path
from trainer.data.images import decode, resize_shorter
from trainer.data.lst import read_lst
from trainer.data.manifest import read_manifest
from trainer.data.recordio import RecordReader
from trainer.errors import DataError

__all__ = ["DecodedImages", "FileBytes", "RecordBytes", "Split", "load_split"]


class FileBytes:
    """Image bytes from files."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.paths[i])

    def __call__(self, i: int) -> bytes:
        try:
            return self.paths[i].read_bytes()
        except OSError as exc:
            raise DataError(f"{self.paths[i]}: cannot read the image ({exc})") from None


class RecordBytes:
    """Image bytes from the records of one or more `.rec` files (header and labels stripped)."""

    def __init__(self, readers: Sequence[RecordReader]) -> None:
        self.where = [(r, n) for r in readers for n in range(len(r))]

    def __len__(self) -> int:
        return len(self.where)

    def name(self, i: int) -> str:
        reader, n = self.where[i]
        return f"{reader.path}, record {n}"

    def __call__(self, i: int) -> bytes:
        reader, n = self.where[i]
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
    rows: Sequence[tuple[float, ...]], wheres: Sequence[str], *, num_classes: int, multi_label: bool
) -> torch.Tensor:
    """Check every row's labels against num_classes and stack them; errors name the row."""
    if multi_label:
        for row, where in zip(rows, wheres, strict=True):
            if len(row) != num_classes:
                raise DataError(
                    f"{where}: {len(row)} label value(s), but multi_label=1 needs one 0/1 value "
                    f"per class (num_classes={num_classes})"
                )
            bad = [v for v in row if v not in (0.0, 1.0)]
            if bad:
                raise DataError(f"{where}: multi-hot labels must be 0 or 1, got {bad[0]:g}")
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), num_classes)
    for row, where in zip(rows, wheres, strict=True):
        if len(row) != 1:
            raise DataError(
                f"{where}: {len(row)} label values, but multi_label=0 needs exactly one "
                "(set multi_label=1 for multi-hot rows)"
            )
        if not row[0].is_integer() or not 0 <= row[0] < num_classes:
            raise DataError(
                f"{where}: label {row[0]:g} is outside [0, num_classes={num_classes}) "
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
    paths: list[Path] = []
    rows: list[tuple[float, ...]] = []
    wheres: list[str] = []
    for lst in lists:
        for entry in read_lst(lst):
            path = images / entry.path
            where = f"{lst}, line {entry.line}"
            if not path.is_file():
                raise DataError(f"{where}: image {entry.path!r} not found (looked for {path})")
            paths.append(path)
            rows.append(entry.labels)
            wheres.append(where)
    labels = _label_tensor(rows, wheres, num_classes=num_classes, multi_label=multi_label)
    return Split(channel, FileBytes(paths), labels)


def _recordio_split(root: Path, channel: str, num_classes: int, multi_label: bool) -> Split:
    readers = []
    for rec in _one(root / channel, "*.rec", f"the RecordIO content type needs {channel}/*.rec"):
        idx = rec.with_suffix(".idx")
        readers.append(RecordReader(rec, idx if idx.is_file() else None))
    rows: list[tuple[float, ...]] = []
    wheres: list[str] = []
    for reader in readers:
        for n in range(len(reader)):
            rows.append(reader.read_image(n).labels)
            wheres.append(f"{reader.path}, record {n}")
    labels = _label_tensor(rows, wheres, num_classes=num_classes, multi_label=multi_label)
    return Split(channel, RecordBytes(readers), labels)


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
    wheres = [f"{path}, line {e.line}" for e in entries]
    for entry, where in zip(entries, wheres, strict=True):
        if not entry.path.is_file():
            raise DataError(f"{where}: image {entry.path} not found")
    labels = _label_tensor(
        [e.labels for e in entries], wheres, num_classes=num_classes, multi_label=multi_label
    )
    return Split(channel, FileBytes([e.path for e in entries]), labels)


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
