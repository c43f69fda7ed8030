"""Build the small real-data samples committed in the repository from ../shared/data.

    python scripts/make_samples.py [--source /work/shared/data]

Writes (replacing what was there):
- tests/assets/cifar10/             image channels, 300 train + 100 validation (balanced), .lst
- tests/assets/cifar10-multilabel/  image channels, 100 train + 50 validation mosaics, multi-hot
                                    .lst and class-id augmented manifests
- tests/assets/recordio/cifar10/    MXNet-written records copied byte for byte (200 + 50) with
                                    a matching .idx, in the RecordIO channel layout
- tests/assets/recordio/cifar10-multilabel/   the same for packed multi-label records (60 + 20)
- tests/assets/recordio/cifar10-224/ RecordIO channels of 32 train + 16 validation CIFAR-10 images
                                    of 4 classes, upscaled to 224x224 by `tune pack --resize 224`
                                    (the ResNet-50 space's input size; its --dry-run test)
- data/quickstart/                  RecordIO channels of 2000 train + 2000 validation CIFAR-10
                                    images (MXNet-written records, copied verbatim)
Selection is deterministic: evenly spaced rows of each class.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.data.lst import LstEntry, read_lst, write_lst  # noqa: E402
from trainer.data.recordio import RecordReader, RecordWriter  # noqa: E402


def _spread(entries: list[LstEntry], per_class: int) -> list[LstEntry]:
    """`per_class` evenly spaced rows of each single-label class, in file order."""
    by_class: dict[float, list[LstEntry]] = defaultdict(list)
    for e in entries:
        by_class[e.labels[0]].append(e)
    chosen = []
    for rows in by_class.values():
        step = len(rows) / per_class
        chosen += [rows[int(i * step)] for i in range(per_class)]
    return sorted(chosen, key=lambda e: e.line)


def _evenly(entries: list[LstEntry], count: int) -> list[LstEntry]:
    step = len(entries) / count
    return [entries[int(i * step)] for i in range(count)]


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def image_channels(src: Path, dst: Path, picks: dict[str, list[LstEntry]]) -> None:
    """Copy the chosen images and write their .lst (indices renumbered from 0)."""
    for channel, entries in picks.items():
        rows = []
        for new_index, e in enumerate(entries):
            target = dst / channel / e.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / channel / e.path, target)
            rows.append((new_index, e.labels, e.path))
        write_lst(dst / f"{channel}_lst" / f"{channel}.lst", rows)
    if (src / "classes.txt").is_file():
        shutil.copyfile(src / "classes.txt", dst / "classes.txt")


def manifests(src: Path, dst: Path, picks: dict[str, list[LstEntry]]) -> None:
    """Class-id augmented manifests for the chosen multi-label images (as the source has)."""
    for channel, entries in picks.items():
        lines = []
        for e in entries:
            ids = [i for i, v in enumerate(e.labels) if v == 1.0]
            lines.append(json.dumps({"source-ref": f"{channel}/{e.path}", "class": ids}) + "\n")
        (dst / f"{channel}.manifest").write_text("".join(lines))


def record_slice(rec: Path, lst: list[LstEntry], keep: list[LstEntry], dst_dir: Path) -> None:
    """Copy the MXNet-written payloads of `keep` verbatim into a new .rec + .idx (+ .lst).

    The .lst rows of im2rec are the records in order; the copied payloads keep MXNet's header
    (including its id = the .lst index), only the byte offsets in the new .idx change.
    """
    reader = RecordReader(rec, rec.with_suffix(".idx"))
    position = {e.index: n for n, e in enumerate(lst)}
    dst_dir.mkdir(parents=True, exist_ok=True)
    with RecordWriter(dst_dir / rec.name, dst_dir / rec.with_suffix(".idx").name) as writer:
        for e in keep:
            writer.write(reader.read(position[e.index]), key=e.index)
    write_lst(
        dst_dir.parent / rec.with_suffix(".lst").name, [(e.index, e.labels, e.path) for e in keep]
    )


def packed_224(src: Path, dst: Path, classes: int = 4, train: int = 8, validation: int = 4) -> None:
    """The first `classes` classes of `src` (an image-channel folder), `train` / `validation`
    images each, packed at 224x224 with the real `tune pack` (labels stay 0..classes-1)."""
    tune = Path(sys.executable).parent / "tune"
    for channel, per_class in (("train", train), ("validation", validation)):
        rows = [
            e for e in read_lst(src / f"{channel}_lst" / f"{channel}.lst") if e.labels[0] < classes
        ]
        keep = _spread(rows, per_class)
        with tempfile.TemporaryDirectory() as tmp:
            lst = Path(tmp) / f"cifar10-224-{channel}.lst"
            write_lst(lst, [(n, e.labels, e.path) for n, e in enumerate(keep)])
            out = _fresh(dst / channel) / f"cifar10-224-{channel}.rec"
            subprocess.run(
                [
                    str(tune),
                    "pack",
                    "--resize",
                    "224",
                    "--quality",
                    "80",
                    str(lst),
                    str(src / channel),
                    str(out),
                ],
                check=True,
            )
            shutil.copyfile(lst, dst / lst.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    src: Path = args.source
    assets = REPO / "tests" / "assets"

    c10 = src / "cifar10"
    picks = {
        "train": _spread(read_lst(c10 / "train_lst" / "train.lst"), 30),
        "validation": _spread(read_lst(c10 / "validation_lst" / "validation.lst"), 10),
    }
    image_channels(c10, _fresh(assets / "cifar10"), picks)

    packed_224(c10, assets / "recordio" / "cifar10-224")

    ml = src / "cifar10-multilabel"
    picks = {
        "train": _evenly(read_lst(ml / "train_lst" / "train.lst"), 100),
        "validation": _evenly(read_lst(ml / "validation_lst" / "validation.lst"), 50),
    }
    out = _fresh(assets / "cifar10-multilabel")
    image_channels(ml, out, picks)
    manifests(ml, out, picks)

    mx = src / "mxnet-recordio"
    plans = [
        ("cifar10-train", "train", 20, assets / "recordio" / "cifar10", True),
        ("cifar10-validation", "validation", 5, assets / "recordio" / "cifar10", True),
        (
            "cifar10-multilabel-train",
            "train",
            60,
            assets / "recordio" / "cifar10-multilabel",
            False,
        ),
        (
            "cifar10-multilabel-validation",
            "validation",
            20,
            assets / "recordio" / "cifar10-multilabel",
            False,
        ),
        ("cifar10-train", "train", 200, REPO / "data" / "quickstart", True),
        ("cifar10-validation", "validation", 200, REPO / "data" / "quickstart", True),
    ]
    for root in {p[3] for p in plans}:
        for channel in ("train", "validation"):
            _fresh(root / channel)
    for name, channel, count, root, balanced in plans:
        lst = read_lst(mx / f"{name}.lst")
        keep = _spread(lst, count) if balanced else _evenly(lst, count)
        record_slice(mx / f"{name}.rec", lst, keep, root / channel)
    print(f"wrote samples under {assets} and {REPO / 'data' / 'quickstart'}")


if __name__ == "__main__":
    main()
