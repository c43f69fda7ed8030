"""SageMaker augmented manifests: JSON lines with an image reference and a label attribute."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import DataError

__all__ = ["ManifestEntry", "read_manifest"]


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line: the image file and its labels (one class id, or a multi-hot vector)."""

    path: Path
    labels: tuple[float, ...]
    line: int


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise DataError(f"{where}: label {value!r} is not a class number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: label {value!r} is not a number or a numeric string") from None


def _labels(
    value: Any, *, multi_label: bool, label_format: str, num_classes: int, where: str
) -> tuple[float, ...]:
    if not multi_label:
        if isinstance(value, list):
            if len(value) != 1:
                raise DataError(
                    f"{where}: multi_label=0 needs one label, but got the list {value!r} "
                    "(set multi_label=1 for several labels per image)"
                )
            value = value[0]
        return (_number(value, where),)
    if not isinstance(value, list):
        raise DataError(
            f"{where}: multi_label=1 needs a JSON list ({label_format} format), got {value!r}"
        )
    numbers = [_number(v, where) for v in value]
    if label_format == "multi-hot":
        return tuple(numbers)
    hot = [0.0] * num_classes
    for class_id in numbers:
        if not class_id.is_integer() or not 0 <= class_id < num_classes:
            raise DataError(
                f"{where}: class id {class_id:g} is outside [0, num_classes={num_classes}) "
                "(label_format=class-id lists class ids)"
            )
        hot[int(class_id)] = 1.0
    return tuple(hot)


def _resolve(ref: Any, base: Path, where: str) -> Path:
    if not isinstance(ref, str) or not ref:
        raise DataError(f"{where}: the image reference {ref!r} is not a path")
    if ref.startswith("file://"):
        ref = ref[len("file://") :]
    elif "://" in ref:
        raise DataError(
            f"{where}: {ref!r} is a remote URI; copy the images locally and refer to them by a "
            "local path (absolute, or relative to the manifest's folder)"
        )
    path = Path(ref)
    return path if path.is_absolute() else base / path


def read_manifest(
    path: str | Path,
    *,
    attribute_names: tuple[str, str],
    multi_label: bool,
    label_format: str,
    num_classes: int,
) -> list[ManifestEntry]:
    """Read an augmented manifest; relative image paths are relative to the manifest's folder.

    Each line is a JSON object holding `attribute_names[0]` (the image) and `attribute_names[1]`
    (the label: a class id as number or string, or with `multi_label` a list in `label_format`).
    Raises `DataError` naming the file and line of the first bad line.
    """
    path = Path(path)
    source_key, label_key = attribute_names
    entries: list[ManifestEntry] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in (source_key, label_key) if k not in row]
        if missing:
            raise DataError(
                f"{where}: missing attribute {missing[0]!r} (attribute_names are "
                f"{list(attribute_names)}; this line has {sorted(row)})"
            )
        labels = _labels(
            row[label_key],
            multi_label=multi_label,
            label_format=label_format,
            num_classes=num_classes,
            where=where,
        )
        entries.append(ManifestEntry(_resolve(row[source_key], path.parent, where), labels, number))
    if not entries:
        raise DataError(f"manifest {path} has no lines")
    return entries
