"""MXNet `.lst` files: `index<TAB>label[<TAB>label...]<TAB>relative/path` per line.

This is the list format of SageMaker's image channels (`train_lst/`, `validation_lst/`) and of
MXNet's `im2rec`. Multi-label lists carry one label column per class (multi-hot).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import DataError

__all__ = ["LstEntry", "read_lst", "write_lst"]


@dataclass(frozen=True)
class LstEntry:
    """One row of a `.lst`: its index, its label column(s) and the image path as written."""

    index: int
    labels: tuple[float, ...]
    path: str
    line: int


def _label(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}: label {text!r} is not a number (a .lst row is "
            "index<TAB>label(s)<TAB>relative path)"
        ) from None
    return value


def read_lst(path: str | Path) -> list[LstEntry]:
    """Read a `.lst` file; every row must have the same number of label columns.

    Raises `DataError` naming the file and line for rows that are not
    `index<TAB>label(s)<TAB>path`, for duplicate indices and for inconsistent column counts.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read list file {path}: {exc}") from None
    entries: list[LstEntry] = []
    seen: dict[int, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        cols = raw.rstrip("\r\n").split("\t")
        if len(cols) < 3:
            raise DataError(
                f"{path}, line {number}: expected index<TAB>label(s)<TAB>relative path "
                f"(at least 3 tab-separated columns), but got {len(cols)}: {raw!r}"
            )
        try:
            index = int(float(cols[0]))
        except ValueError:
            raise DataError(
                f"{path}, line {number}: the index {cols[0]!r} is not an integer"
            ) from None
        if index in seen:
            raise DataError(
                f"{path}, line {number}: index {index} already used on line {seen[index]} "
                "(indices must be unique)"
            )
        seen[index] = number
        labels = tuple(_label(c, path, number) for c in cols[1:-1])
        if entries and len(labels) != len(entries[0].labels):
            raise DataError(
                f"{path}, line {number}: {len(labels)} label column(s), but line "
                f"{entries[0].line} has {len(entries[0].labels)}; every row needs the same count"
            )
        entries.append(LstEntry(index, labels, cols[-1], number))
    if not entries:
        raise DataError(f"list file {path} has no rows")
    return entries


def _format_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_lst(path: str | Path, rows: Iterable[tuple[int, Sequence[float], str]]) -> None:
    """Write `(index, labels, relative path)` rows as a `.lst` file, atomically."""
    path = Path(path)
    lines = [
        "\t".join([str(index), *(_format_label(v) for v in labels), rel]) + "\n"
        for index, labels, rel in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
