"""Packing a `.lst` and its images into MXNet RecordIO, as MXNet's `tools/im2rec.py` does.

Each row becomes one record, in list order: the image is decoded, converted to RGB, its shorter
side optionally scaled to `resize` (im2rec's integer rule), and re-encoded (JPEG `quality`, or PNG);
the header carries the row's index as `id` and its label (one column) or, for several label
columns, all of them packed after the header (im2rec's `--pack-label`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from trainer.data.images import resized_size
from trainer.data.lst import read_lst
from trainer.data.recordio import RecordWriter, pack_image_record
from trainer.errors import DataError

__all__ = ["ENCODINGS", "PackResult", "pack_images"]

ENCODINGS = {"jpg": "JPEG", "png": "PNG"}


@dataclass(frozen=True)
class PackResult:
    """What `pack_images` wrote."""

    rec_path: Path
    idx_path: Path
    records: int
    bytes: int


def _encode(path: Path, *, resize: int | None, quality: int, encoding: str, where: str) -> bytes:
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{where}: image {path} not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode {path} ({exc})") from None
    if resize is not None:
        rgb = rgb.resize(resized_size(rgb.width, rgb.height, resize), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    options = {"quality": quality} if encoding == "jpg" else {}
    rgb.save(out, format=ENCODINGS[encoding], **options)
    return out.getvalue()


def pack_images(
    lst_path: str | Path,
    image_root: str | Path,
    rec_path: str | Path,
    *,
    resize: int | None = None,
    quality: int = 95,
    encoding: str = "jpg",
    progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Write `rec_path` and the `.idx` next to it from the rows of `lst_path` (paths relative to
    `image_root`). Nothing is left behind if a row fails; the error names the list line."""
    if encoding not in ENCODINGS:
        raise DataError(f"encoding must be one of {', '.join(ENCODINGS)}, but got {encoding!r}")
    if not 1 <= quality <= 100:
        raise DataError(f"quality must be between 1 and 100, but got {quality}")
    if resize is not None and resize < 1:
        raise DataError(f"resize must be a positive number of pixels, but got {resize}")
    lst_path, image_root, rec_path = Path(lst_path), Path(image_root), Path(rec_path)
    entries = read_lst(lst_path)
    idx_path = rec_path.with_suffix(".idx")
    with RecordWriter(rec_path, idx_path) as writer:
        for number, entry in enumerate(entries):
            where = f"{lst_path}, line {entry.line}"
            image = _encode(
                image_root / entry.path,
                resize=resize,
                quality=quality,
                encoding=encoding,
                where=where,
            )
            labels = entry.labels[0] if len(entry.labels) == 1 else entry.labels
            writer.write(pack_image_record(labels, image, id=entry.index), key=entry.index)
            if progress is not None:
                progress(number + 1, len(entries))
    return PackResult(rec_path, idx_path, len(entries), rec_path.stat().st_size)
