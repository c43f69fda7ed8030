"""MXNet RecordIO (`.rec` + `.idx`), read and written without mxnet, byte for byte as MXNet does.

A record is `magic (uint32 0xced7230a) | lrec (uint32: cflag << 29 | length) | payload | zero
padding to 4 bytes`. Like dmlc-core's writer, a payload that contains the magic at a 4-byte
aligned position is split there into parts (cflag 1 = first, 2 = middle, 3 = last) and the reader
joins them with the magic put back. An *image* payload (what `im2rec` writes) starts with the
header `uint32 flag | float32 label | uint64 id | uint64 id2`; when `flag > 0` it is followed by
`flag` float32 labels (multi-label, `im2rec --pack-label`), then the encoded image.
The `.idx` file holds `key<TAB>byte offset` per record.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from trainer.errors import DataError

__all__ = [
    "MAGIC",
    "ImageRecord",
    "RecordReader",
    "RecordWriter",
    "pack_image_record",
    "read_index",
    "split_records",
    "unpack_image_record",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2: MXNet's IRHeader
_LREC = struct.Struct("<II")
_MAX_LEN = (1 << 29) - 1


@dataclass(frozen=True)
class ImageRecord:
    """A decoded image payload: its label(s), ids and the encoded image bytes."""

    labels: tuple[float, ...]
    id: int
    id2: int
    image: bytes


def pack_image_record(
    labels: float | Sequence[float], image: bytes, *, id: int, id2: int = 0
) -> bytes:
    """The payload `im2rec` writes: one label in the header, or `flag` labels after it."""
    if isinstance(labels, int | float):
        return _HEADER.pack(0, float(labels), id, id2) + image
    values = np.asarray(labels, dtype="<f4")
    return _HEADER.pack(len(values), 0.0, id, id2) + values.tobytes() + image


def unpack_image_record(payload: bytes, *, where: str = "record") -> ImageRecord:
    """Split an image payload into header, labels and image; `where` names it in errors."""
    if len(payload) < _HEADER.size:
        raise DataError(
            f"{where}: {len(payload)} bytes is shorter than the {_HEADER.size}-byte image header"
        )
    flag, label, id_, id2 = _HEADER.unpack_from(payload)
    start = _HEADER.size + 4 * flag
    if flag > 0 and start > len(payload):
        raise DataError(
            f"{where}: the image header says {flag} labels follow, but the record has only "
            f"{len(payload) - _HEADER.size} bytes after the header (garbage or not an image record)"
        )
    if flag > 0:
        labels = tuple(
            float(v) for v in np.frombuffer(payload, dtype="<f4", count=flag, offset=_HEADER.size)
        )
    else:
        labels = (float(label),)
    return ImageRecord(labels, id_, id2, payload[start:])


def _encode_parts(payload: bytes) -> bytes:
    """The on-disk bytes of one record, split at aligned magics exactly as dmlc-core does."""
    size = len(payload)
    if size > _MAX_LEN:
        raise DataError(f"a RecordIO record holds at most {_MAX_LEN} bytes, got {size}")
    out = bytearray()
    start = 0
    for i in range(0, size - size % 4, 4):
        if payload[i : i + 4] == _MAGIC_BYTES:
            out += _LREC.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (i - start))
            out += payload[start:i]
            start = i + 4
    out += _LREC.pack(MAGIC, ((3 if start else 0) << 29) | (size - start))
    out += payload[start:]
    out += b"\0" * (-size % 4)
    return bytes(out)


def _publish(tmp: str, path: Path) -> None:
    """Give a temp file the permissions a normal new file would have, then move it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


class RecordWriter:
    """Writes a `.rec` (and its `.idx`) atomically: the files appear only on a clean `close()`."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.rec_path.parent, suffix=".rec.tmp")
        self._file = os.fdopen(fd, "wb")
        self._index: list[str] = []
        self._keys: set[int] = set()

    def write(self, payload: bytes, key: int | None = None) -> int:
        """Append one record; returns its byte offset. `key` goes to the `.idx` (default: count)."""
        key = len(self._index) if key is None else key
        if key in self._keys:
            raise DataError(f"{self.rec_path}: record key {key} written twice")
        self._keys.add(key)
        offset = self._file.tell()
        self._file.write(_encode_parts(payload))
        self._index.append(f"{key}\t{offset}\n")
        return offset

    def close(self) -> None:
        """Finish both files (rename into place)."""
        self._file.close()
        if self.idx_path is not None:
            fd, tmp = tempfile.mkstemp(dir=self.idx_path.parent, suffix=".idx.tmp")
            with os.fdopen(fd, "w") as f:
                f.writelines(self._index)
            _publish(tmp, self.idx_path)
        _publish(self._tmp, self.rec_path)

    def abort(self) -> None:
        """Drop what was written."""
        self._file.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_index(idx_path: str | Path) -> list[tuple[int, int]]:
    """`(key, byte offset)` per line of a `.idx` file."""
    idx_path = Path(idx_path)
    rows: list[tuple[int, int]] = []
    for number, line in enumerate(idx_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            key, offset = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise DataError(
                f"{idx_path}, line {number}: expected key<TAB>byte offset, got {line!r}"
            ) from None
        rows.append((key, offset))
    return rows


def split_records(data: bytes, *, where: str = "body") -> list[bytes]:
    """The payloads of the RecordIO records in `data` (a whole `.rec` or a part of one cut at
    record boundaries, as SageMaker batch transform's `SplitType=RecordIO` sends them), parts
    joined as `RecordReader.read` joins them; `where` names the data in errors."""
    payloads: list[bytes] = []
    current = bytearray()
    pos = 0
    while pos < len(data):
        at = f"{where}, record {len(payloads)} at byte {pos}"
        if len(data) - pos < _LREC.size:
            raise DataError(f"{at}: the data ends inside a record header (truncated)")
        magic, lrec = _LREC.unpack_from(data, pos)
        if magic != MAGIC:
            raise DataError(
                f"{at}: bad magic 0x{magic:08x} (a RecordIO record starts with 0x{MAGIC:08x}); "
                "this is not MXNet RecordIO"
            )
        cflag, length = lrec >> 29, lrec & _MAX_LEN
        start = pos + _LREC.size
        if start + length > len(data):
            raise DataError(
                f"{at}: the record says {length} bytes but only {len(data) - start} follow "
                "(truncated)"
            )
        if (cflag in (0, 1)) == bool(current):
            raise DataError(f"{at}: a record part (flag {cflag}) out of order")
        current += data[start : start + length]
        pos = start + length + (-length % 4)
        if cflag in (0, 3):
            payloads.append(bytes(current))
            current.clear()
        else:
            current += _MAGIC_BYTES
    if current:
        raise DataError(f"{where}: the data ends inside a record split into parts (truncated)")
    return payloads


class RecordReader:
    """Random access to the records of a `.rec` file by byte offset.

    With an `.idx` the offsets are taken from it and nothing else is read up front but the last
    record's header, which must end the file (an index of another or a since-changed file fails
    this, naming the `.idx`); each record's framing is then checked when it is read. Without an
    `.idx` the file is walked once, checking every record's framing. Either way a problem is a
    `DataError` naming the file, the record number and its byte offset. The reader holds no open
    file when pickled, so it can be sent to DataLoader worker processes; each process opens the
    file once and reads with `pread`.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        try:
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise DataError(f"cannot read RecordIO file {self.path}: {exc}") from None
        self._fd: int | None = None
        self._pid = 0
        if self.idx_path is None:
            self.offsets = np.asarray(self._scan(), dtype=np.int64)
        else:
            self.offsets = np.asarray([o for _, o in read_index(self.idx_path)], dtype=np.int64)
            self._check_index()

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            assert self._fd is not None
            os.close(self._fd)

    def _pread(self, length: int, offset: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
            except OSError as exc:
                raise DataError(f"cannot read RecordIO file {self.path}: {exc}") from None
        return os.pread(self._fd, length, offset)

    def _scan(self) -> list[int]:
        offsets: list[int] = []
        size = self.size
        pos = 0
        in_record = False
        while pos < size:
            cflag, length = self._part(len(offsets) - in_record, pos)
            where = f"{self.path}, record {len(offsets) - in_record} at byte {pos}"
            if cflag in (0, 1):
                if in_record:
                    raise DataError(f"{where}: a new record starts inside a split record")
                offsets.append(pos)
            elif not in_record:
                raise DataError(f"{where}: continuation part (flag {cflag}) without a start")
            in_record = cflag in (1, 2)
            pos += 8 + length + (-length % 4)
            if pos > size:
                raise DataError(
                    f"{where}: the record says {length} bytes but the file ends after "
                    f"{size - (pos - length - (-length % 4))} (truncated)"
                )
        if in_record:
            raise DataError(
                f"{self.path}, record {len(offsets) - 1} at byte {offsets[-1]}: the file ends "
                "inside this split record (truncated)"
            )
        return offsets

    def _stale(self, number: int, problem: str) -> DataError:
        return DataError(
            f"{self.idx_path}, line {number + 1}: {problem}; the .idx does not match "
            f"{self.path} (rebuild it, or delete it to read the .rec without an index)"
        )

    def _check_index(self) -> None:
        """O(1) checks that the index belongs to the file: increasing offsets inside it, and the
        last record ending exactly where the file does."""
        offsets = self.offsets
        if len(offsets) == 0:
            if self.size:
                raise self._stale(0, f"the index is empty but {self.path} is not")
            return
        if offsets[0] != 0:
            raise self._stale(0, f"the first record is at byte {offsets[0]}, not 0")
        steps = np.diff(offsets)
        if (steps <= 0).any():
            bad = int(np.argmax(steps <= 0)) + 1
            raise self._stale(bad, f"offset {offsets[bad]} does not follow {offsets[bad - 1]}")
        last = len(offsets) - 1
        if offsets[last] >= self.size:
            raise self._stale(
                last, f"offset {offsets[last]} is past the end of the file ({self.size} bytes)"
            )
        end = self._record_end(last)
        if end != self.size:
            raise DataError(
                f"{self.idx_path} lists {len(offsets)} records, but in {self.path} the last of "
                f"them (record {last}) ends at byte {end} of {self.size}: the .idx does not "
                "belong to this .rec "
                "(rebuild it, or delete it to read the .rec without an index)"
                if end < self.size
                else f"{self.path}, record {last} at byte {offsets[last]}: the record says it "
                f"ends at byte {end} but the file has {self.size} (truncated)"
            )

    def _part(self, number: int, pos: int) -> tuple[int, int]:
        """(cflag, length) of the record part at `pos`, checking its magic."""
        head = self._pread(8, pos)
        where = f"{self.path}, record {number} at byte {pos}"
        if len(head) < 8:
            raise DataError(f"{where}: file ends inside a record header (truncated)")
        magic, lrec = _LREC.unpack(head)
        if magic != MAGIC:
            hint = " or not MXNet RecordIO"
            if self.idx_path is not None and pos == self.offsets[number]:
                hint = (
                    f", or {self.idx_path}, line {number + 1} gives the wrong offset (rebuild the "
                    ".idx, or delete it to read the .rec without an index)"
                )
            raise DataError(
                f"{where}: bad magic 0x{magic:08x} (a RecordIO record starts with "
                f"0x{MAGIC:08x}); the file is corrupt{hint}"
            )
        return lrec >> 29, lrec & _MAX_LEN

    def _record_end(self, number: int) -> int:
        pos = int(self.offsets[number])
        while True:
            cflag, length = self._part(number, pos)
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3) or pos >= self.size:
                return pos

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, number: int) -> bytes:
        """The payload of record `number` (0-based, in file order)."""
        pos = int(self.offsets[number])
        out = bytearray()
        first = True
        while True:
            cflag, length = self._part(number, pos)
            if first and cflag not in (0, 1):
                problem = f"offset {pos} is a continuation part (flag {cflag}), not a record start"
                if self.idx_path is not None:
                    raise self._stale(number, problem)
                raise DataError(f"{self.path}, record {number}: {problem}")
            data = self._pread(length, pos + 8)
            if len(data) < length:
                raise DataError(
                    f"{self.path}, record {number} at byte {pos}: the record says {length} bytes "
                    f"but the file ends after {len(data)} (truncated)"
                )
            out += data
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                return bytes(out)
            out += _MAGIC_BYTES
            first = False

    def read_image(self, number: int) -> ImageRecord:
        """Record `number` as an image record (header, labels, encoded image)."""
        where = f"{self.path}, record {number} at byte {self.offsets[number]}"
        return unpack_image_record(self.read(number), where=where)

    def read_labels(self, number: int) -> tuple[float, ...]:
        """Record `number`'s label(s) from its image header alone (one small read, not the
        image), with the same framing checks as `read`."""
        pos = int(self.offsets[number])
        cflag, length = self._part(number, pos)
        if cflag not in (0, 1):
            return self.read_image(number).labels  # raises the start-of-record problem
        head = self._pread(min(length, _HEADER.size), pos + 8)
        flag = _HEADER.unpack_from(head)[0] if len(head) == _HEADER.size else 0
        need = _HEADER.size + 4 * flag
        if cflag != 0 or len(head) < _HEADER.size or need > length:
            return self.read_image(number).labels  # split or odd records: the full path
        where = f"{self.path}, record {number} at byte {pos}"
        return unpack_image_record(self._pread(need, pos + 8), where=where).labels
