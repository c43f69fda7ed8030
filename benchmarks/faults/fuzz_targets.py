"""The four fuzz targets of issue 17's campaign (`benchmarks/bench_faults.py --part fuzz`).

Each target is a Hypothesis strategy of inputs and a `run(case)` that feeds one input to the
product and says what came of it as an `Outcome`:

- `accepted`: the product took the input, and what it made of it was checked (a round trip, or
  the labels and images against the original records);
- `clean error`: one of the project's own errors, whose message names what the target promises
  (the field, the YAML line, the file and record, the archive);
- `unclear error`: the project's own error, but its message does not name that;
- `wrong result`: accepted, but what came out is not what went in (a record's label that is not
  the one stored with its image, hyperparameters that do not round-trip, code that ran);
- `traceback`: any other exception (a bug: the CLI would print a traceback).

`hang` and `crash` are added by the sandbox that runs the cases in a worker process
(`benchmarks/faults/sandbox.py`). Changes that the input format cannot detect (RecordIO and tar.gz
members have no checksum over a record's label, JPEG none over its pixels) are accepted and
counted as notes, not failures.

The bases are real files: MXNet im2rec's records from `tests/assets/recordio/`, and a
`model.tar.gz` written by `write_model_archive`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import re
import tarfile
import tempfile
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"

ACCEPTED = "accepted"
CLEAN = "clean error"
UNCLEAR = "unclear error"
WRONG = "wrong result"
TRACEBACK = "traceback"
HANG = "hang"
CRASH = "crash"
KINDS = (ACCEPTED, CLEAN, UNCLEAR, WRONG, TRACEBACK, HANG, CRASH)
FAILURES = (UNCLEAR, WRONG, TRACEBACK, HANG, CRASH)


@dataclass(frozen=True)
class Outcome:
    """What one input came to; `notes` name changes the format cannot detect."""

    kind: str
    detail: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """A fuzz target: `cases()` is the Hypothesis strategy, `run(case)` feeds one to the product."""

    name: str
    title: str
    cases: Callable[[], st.SearchStrategy[Any]]
    run: Callable[[Any], Outcome]
    describe: Callable[[Any], str] = repr


def _traceback(exc: BaseException) -> Outcome:
    lines = traceback.format_exception(exc)
    return Outcome(TRACEBACK, "".join(lines[-6:]).strip())


def _scratch() -> Path:
    """A folder for the files of one case (TMPDIR in the sandbox's worker)."""
    return Path(tempfile.gettempdir())


# ------------------------------------------------------------------ 1. parse_hyperparameters


def _hp_good_values() -> dict[str, st.SearchStrategy[str]]:
    from trainer.hyperparameters import (
        AUGMENTATION_TYPES,
        CIFAR_DEPTHS,
        IMAGENET_DEPTHS,
        KV_STORES,
        OPTIMIZER_NAMES,
        PRECISIONS,
        SPECS,
    )

    unit = st.floats(0, 1).map(str)
    positive = st.integers(1, 400).map(str)
    good: dict[str, st.SearchStrategy[str]] = {}
    for name, spec in SPECS.items():
        if "[0, 1]" in spec.allowed:
            good[name] = unit
        elif spec.allowed == "0 or 1":
            good[name] = st.sampled_from(["0", "1"])
        else:
            good[name] = positive
    good.update(
        augmentation_type=st.sampled_from(AUGMENTATION_TYPES),
        optimizer=st.sampled_from(OPTIMIZER_NAMES),
        kv_store=st.sampled_from(KV_STORES),
        precision_dtype=st.sampled_from(PRECISIONS),
        num_layers=st.sampled_from(IMAGENET_DEPTHS + CIFAR_DEPTHS).map(str),
        image_shape=st.sampled_from(["3,32,32", "3,224,224", "1,28,28", " 3, 64 ,64 "]),
        early_stopping=st.sampled_from(["True", "False", "true", "0", "1"]),
        lr_scheduler_step=st.lists(st.integers(1, 60), max_size=4).map(
            lambda v: ",".join(map(str, sorted(set(v))))
        ),
        top_k=st.integers(2, 6).map(str),
        checkpoint_frequency=st.integers(1, 5).map(str),
    )
    return good


_HOSTILE_WORDS = [
    "",
    " ",
    "None",
    "null",
    "nan",
    "-nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-1e400",
    "1e308",
    "1e-4",
    "1.0e-4",
    "0x10",
    "0b1",
    "1_000",
    "+5",
    " 7 ",
    "3.0",
    "-0",
    "1/2",
    "１２",
    "١٢",
    "9" * 5000,
    "0." + "1" * 400,
    "[1, 2]",
    "{}",
    "3,32",
    "3,32,32,32",
    "3,,32,32",
    ",",
    "10,5",
    "5,5",
    "-1,2",
    "True",
    "FALSE",
    "yes",
    "1.5",
    "\x00",
    "\n",
    "'",
    "sgd\n",
    "adam ",
]


@functools.cache
def _hp_strategy() -> st.SearchStrategy[dict[str, str]]:
    from trainer.hyperparameters import SPECS

    good = _hp_good_values()
    hostile = st.one_of(
        st.sampled_from(_HOSTILE_WORDS),
        st.integers().map(str),
        st.floats().map(repr),
        st.text(max_size=30),
        st.lists(st.integers(-3, 300).map(str), max_size=4).map(",".join),
    )
    junk_names = st.one_of(
        st.sampled_from(
            [
                "",
                " ",
                "learning-rate",
                "Learning_Rate",
                "epoch",
                "num_classes ",
                "__class__",
                "_tuning_objective_metric",
                "sagemaker_program",
                "image_shape\x00",
                "ñum_classes",
            ]
        ),
        st.text(max_size=20),
    )
    value_for = {name: st.one_of(good[name], good[name], hostile) for name in SPECS}
    typical = st.fixed_dictionaries(
        {n: value_for[n] for n in ("num_classes", "num_training_samples")},
        optional={n: value_for[n] for n in SPECS if not SPECS[n].required},
    )
    all_good = st.fixed_dictionaries(
        {n: good[n] for n in ("num_classes", "num_training_samples")},
        optional={n: good[n] for n in SPECS if not SPECS[n].required},
    )
    extra = st.dictionaries(
        st.one_of(st.sampled_from(list(SPECS)), junk_names), hostile, max_size=4
    )
    return st.one_of(
        all_good,
        typical,
        st.tuples(typical, extra).map(lambda pair: {**pair[0], **pair[1]}),
        st.dictionaries(st.one_of(st.sampled_from(list(SPECS)), junk_names), hostile, max_size=10),
    )


def run_hyperparameters(values: Mapping[str, str]) -> Outcome:
    """`parse_hyperparameters(values)`: `Hyperparameters` that round-trip through their string
    form, or `HyperparameterError` whose every problem names a field."""
    from trainer.errors import HyperparameterError
    from trainer.hyperparameters import SPECS, parse_hyperparameters

    try:
        hp = parse_hyperparameters(values)
    except HyperparameterError as exc:
        for problem in exc.problems:
            named = any(n in problem for n in SPECS) or any(f"'{k}'" in problem for k in values)
            if not named:
                return Outcome(UNCLEAR, f"names no field: {problem!r}")
        return Outcome(CLEAN)
    except Exception as exc:  # noqa: BLE001 - what the campaign counts
        return _traceback(exc)
    try:
        again = parse_hyperparameters(hp.to_strings())
    except Exception as exc:  # noqa: BLE001
        return Outcome(WRONG, f"accepted, but its string form is refused: {exc}")
    if again != hp:
        return Outcome(WRONG, f"string form does not round-trip: {hp} -> {again}")
    return Outcome(ACCEPTED)


# ------------------------------------------------------------------ 2. the search-space loader

_SPACE_KEYS = [
    "study",
    "data",
    "objective",
    "fixed",
    "search",
    "sampler",
    "pruner",
    "limits",
    "resources",
    "warm_start",
    "tracking",
    "name",
    "directory",
    "seed",
    "path",
    "content_type",
    "metric",
    "mode",
    "type",
    "low",
    "high",
    "scaling",
    "step",
    "values",
    "when",
    "options",
    "grace_period",
    "reduction_factor",
    "max_t",
    "max_trials",
    "max_parallel",
    "max_retries",
    "cpu",
    "gpu",
    "studies",
    "points",
    "enabled",
    "tracking_uri",
    "num_classes",
    "learning_rate",
    "momentum",
    "optimizer",
    "epochs",
    "top_k",
    "image_shape",
    "lr_scheduler_step",
    "mini_batch_size",
]
_SPACE_WORDS = [
    "continuous",
    "integer",
    "categorical",
    "log",
    "reverse_log",
    "auto",
    "linear",
    "sgd",
    "adam",
    "tpe",
    "random",
    "grid",
    "asha",
    "none",
    "max",
    "min",
    "3,32,32",
    "1e-4",
    "1.0e-4",
    "6,8",
    "validation:accuracy",
    "validation:top_k_accuracy_3",
    "data",
    ".",
    "..",
    "/nonexistent",
    "recordio",
    "image",
    "",
    "yes",
    "~",
]
_SPACE_TEXT_EDITS = [
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "'",
    '"',
    "&a ",
    "*a",
    "\t",
    "  ",
    "\n",
    "#",
    "!!float ",
    "!!python/object/apply:os.system ['true']",
    "? ",
    "%YAML 1.2\n---\n",
    "<<: ",
    "|",
    ">",
    "@",
    "\x00",
    "\ufeff",
    "...\n",
    "---\n",
    ",",
]


def _base_space() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    doc["study"]["directory"] = "studies"
    doc["data"] = {"path": "data", "content_type": "recordio"}
    doc["fixed"]["top_k"] = 3
    doc["warm_start"] = {"points": [{"optimizer": "sgd", "learning_rate": 0.01}]}
    return doc  # type: ignore[no-any-return]


def _space_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 300),
        st.integers(),
        st.floats(),
        st.sampled_from(_SPACE_WORDS),
        st.text(max_size=12),
        st.dates(),
    )


def _space_values() -> st.SearchStrategy[Any]:
    scalar = _space_scalars()
    return st.one_of(
        scalar,
        st.lists(scalar, max_size=4),
        st.dictionaries(st.sampled_from(_SPACE_KEYS), scalar, max_size=3),
    )


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*prefix, i))
            out += _paths(value, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def _space_cases(draw: st.DrawFn) -> str:
    doc = _base_space()
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_paths(doc) or [()]))
        if not path:
            break
        parent = _parent(doc, path)
        op = draw(st.sampled_from(["set", "set", "delete", "add", "rename"]))
        if op == "set":
            parent[path[-1]] = draw(_space_values())
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = draw(st.one_of(st.sampled_from(_SPACE_KEYS), _space_scalars()))
            value = draw(_space_values()) if op == "add" else parent.pop(path[-1])
            with contextlib.suppress(TypeError):  # an unhashable key
                parent[key] = value
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when built with it
    text = yaml.dump(
        doc, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=None
    )
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(_SPACE_TEXT_EDITS)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 6)) :]
    return text


_LINE = re.compile(r"^space\.yaml:(\d+): ")
_NO_LINE = re.compile(r"^space\.yaml: (\S+): ")


def run_space(text: str) -> Outcome:
    """`load_space` on `text` as `space.yaml` (with an existing `data/` beside it): a
    `SearchSpace`, or `SearchSpaceError` whose problems each carry the YAML line when the YAML
    has one for that path."""
    from tuner.errors import SearchSpaceError
    from tuner.space import load_space
    from tuner.space.yaml_loader import load_yaml

    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        path = folder / "space.yaml"
        path.write_text(text)
        try:
            load_space(path)
        except SearchSpaceError as exc:
            return _space_error(exc.problems, text, path, load_yaml)
        except Exception as exc:  # noqa: BLE001
            return _traceback(exc)
    return Outcome(ACCEPTED)


def _space_error(problems: list[str], text: str, path: Path, load_yaml: Any) -> Outcome:
    if len(problems) == 1 and "YAML syntax error" in problems[0]:
        if " line " not in problems[0]:
            return Outcome(UNCLEAR, f"syntax error without a line: {problems[0]!r}")
        return Outcome(CLEAN)
    lineless = [p for p in problems if p.startswith("space.yaml") and not _LINE.match(p)]
    if not lineless:
        return Outcome(CLEAN)
    _, lines = load_yaml(text, path)  # it parsed when load_space read it
    known = {".".join(k) for k in lines if k}
    for problem in lineless:
        found = _NO_LINE.match(problem)
        where = found.group(1) if found else ""
        if any(where == k or where.startswith(k + ".") for k in known):
            return Outcome(UNCLEAR, f"no line, though the YAML has {where}: {problem!r}")
    return Outcome(CLEAN)


# ------------------------------------------------------------------ 3. RecordIO


@dataclass(frozen=True)
class RecordBase:
    """The first records of a real im2rec file: their bytes, offsets and (labels, image) each."""

    name: str
    multi_label: bool
    rec: bytes
    offsets: tuple[int, ...]
    records: tuple[tuple[tuple[float, ...], bytes], ...]

    def idx_text(self) -> str:
        return "".join(f"{i}\t{o}\n" for i, o in enumerate(self.offsets))


@functools.cache
def record_base(name: str) -> RecordBase:
    """`single` (6 records of cifar10-validation.rec) or `multi` (4 of the multi-label one)."""
    from trainer.data.recordio import RecordReader

    stem, count = {"single": ("cifar10", 6), "multi": ("cifar10-multilabel", 4)}[name]
    folder = ASSETS / "recordio" / stem / "validation"
    reader = RecordReader(folder / f"{stem}-validation.rec", folder / f"{stem}-validation.idx")
    end = int(reader.offsets[count])
    rec = (folder / f"{stem}-validation.rec").read_bytes()[:end]
    records = []
    for n in range(count):
        image = reader.read_image(n)
        records.append((image.labels, image.image))
    offsets = tuple(int(o) for o in reader.offsets[:count])
    return RecordBase(name, name == "multi", rec, offsets, tuple(records))


@dataclass(frozen=True, repr=False)
class RecordCase:
    """Mutated `.rec` bytes (and `.idx` text, or none) made from `base` by `mutations`."""

    base: str
    rec: bytes
    idx: str | None
    mutations: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:  # what Hypothesis prints for a failing case: not the bytes
        return f"RecordCase({describe_record_case(self)!r})"


def _mutate(draw: st.DrawFn, data: bytearray, offsets: tuple[int, ...]) -> str:
    """Apply one drawn mutation to `data` in place; returns what it did."""
    op = draw(
        st.sampled_from(["flip", "flip", "header", "set", "cut", "delete", "insert", "splice"])
    )
    size = max(len(data), 1)
    if op == "header":  # a bit of a record's magic, length word or image header
        start = draw(st.sampled_from(offsets))
        at = min(start + draw(st.integers(0, 8 + 24 + 40 - 1)), size - 1)
        bit = draw(st.integers(0, 7))
        if at < len(data):
            data[at] ^= 1 << bit
        return f"flip bit {bit} at {at}"
    at = draw(st.integers(0, size - 1))
    if op == "flip":
        bit = draw(st.integers(0, 7))
        if at < len(data):
            data[at] ^= 1 << bit
        return f"flip bit {bit} at {at}"
    if op == "set":
        new = draw(st.binary(min_size=1, max_size=8))
        data[at : at + len(new)] = new
        return f"set {new.hex()} at {at}"
    if op == "cut":
        del data[at:]
        return f"cut at {at}"
    if op == "delete":
        n = draw(st.integers(1, 64))
        del data[at : at + n]
        return f"delete {n} at {at}"
    if op == "insert":
        new = draw(st.binary(min_size=1, max_size=16))
        data[at:at] = new
        return f"insert {new.hex()} at {at}"
    src = draw(st.sampled_from(offsets)) if draw(st.booleans()) else at  # whole records, or not
    n = draw(st.integers(1, 2400))
    dst = draw(st.sampled_from([*offsets, len(data)])) if draw(st.booleans()) else at
    piece = bytes(data[src : src + n])
    data[dst:dst] = piece
    return f"splice {len(piece)} bytes from {src} to {dst}"


def _mutate_idx(draw: st.DrawFn, text: str) -> tuple[str | None, str]:
    how = draw(st.sampled_from(["same", "same", "none", "offset", "line", "drop", "junk"]))
    lines = text.splitlines(keepends=True)
    if how == "same":
        return text, ".idx as written"
    if how == "none":
        return None, "no .idx"
    i = draw(st.integers(0, len(lines) - 1))
    if how == "offset":
        key, offset = lines[i].split("\t")
        delta = draw(st.sampled_from([-8, -4, -1, 1, 4, 8, 1000, 10**9]))
        lines[i] = f"{key}\t{int(offset) + delta}\n"
    elif how == "line":
        lines[i] = draw(st.text(max_size=12)) + "\n"
    elif how == "drop":
        del lines[i]
    else:
        lines.insert(i, draw(st.sampled_from(["\n", "x\ty\n", "7\n", "0\t0\n", "-1\t-5\n"])))
    return "".join(lines), f".idx {how} at line {i + 1}"


@st.composite
def _record_cases(draw: st.DrawFn) -> RecordCase:
    base = record_base(draw(st.sampled_from(["single", "multi"])))
    data = bytearray(base.rec)
    done = [_mutate(draw, data, base.offsets) for _ in range(draw(st.integers(1, 3)))]
    idx, how = _mutate_idx(draw, base.idx_text())
    return RecordCase(base.name, bytes(data), idx, (*done, how))


_NAMED_RECORD = re.compile(
    r"fuzz\.(rec|idx)\b.*(record \d+|line \d+)|(record \d+|line \d+).*fuzz\."
)


def run_recordio(case: RecordCase) -> Outcome:
    """Read every record of the mutated file with `RecordReader` and through the RecordIO data
    set (`load_split` + `DecodedImages`): a `DataError` naming the file and the record, or
    records whose labels are those stored with their images."""
    from trainer.data import DataConfig
    from trainer.data.datasets import DecodedImages, load_split
    from trainer.data.recordio import RecordReader, unpack_image_record
    from trainer.errors import DataError
    from trainer.notices import Notice

    base = record_base(case.base)
    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        channel = Path(tmp) / "validation"
        channel.mkdir()
        (channel / "fuzz.rec").write_bytes(case.rec)
        if case.idx is not None:
            (channel / "fuzz.idx").write_text(case.idx)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Notice)  # "no .idx beside it": expected here
                split = load_split(
                    DataConfig(Path(tmp), content_type="recordio"),
                    "recordio",
                    "validation",
                    num_classes=10,
                    multi_label=base.multi_label,
                )
            images = DecodedImages(split, channels=3, resize=None, min_size=(32, 32))
            decoded = [images[i] for i in range(len(images))]
            reader = split.source.readers[0]  # type: ignore[union-attr]
            assert isinstance(reader, RecordReader)
            payloads = [reader.read(n) for n in range(len(reader))]
        except DataError as exc:
            message = str(exc)
            if not _NAMED_RECORD.search(message):
                return Outcome(UNCLEAR, f"names no file and record: {message!r}")
            return Outcome(CLEAN)
        except Exception as exc:  # noqa: BLE001
            return _traceback(exc)
    return _compare_records(base, split.labels.tolist(), payloads, decoded, unpack_image_record)


def _compare_records(
    base: RecordBase, labels: list[Any], payloads: list[bytes], decoded: list[Any], unpack: Any
) -> Outcome:
    by_image = {image: lab for lab, image in base.records}
    notes: list[str] = []
    for n, payload in enumerate(payloads):
        record = unpack(payload)
        own = [float(v) for v in record.labels]
        given = labels[n] if base.multi_label else [float(labels[n])]
        if [float(v) for v in given] != own:
            return Outcome(WRONG, f"record {n}: label {given} but its header holds {own}")
        original = by_image.get(record.image)
        if original is None:
            notes.append("image bytes changed and still decoded (JPEG has no checksum)")
        elif list(original) != own:
            notes.append("label changed to another valid label (RecordIO has no checksum)")
        if decoded[n].shape[0] != 3:
            return Outcome(WRONG, f"record {n}: decoded to {tuple(decoded[n].shape)}")
    if len(payloads) < len(base.records):
        notes.append("fewer records than written, no error (a cut or .idx at a record boundary)")
    elif len(payloads) > len(base.records):
        notes.append("more records than written (whole records repeated)")
    return Outcome(ACCEPTED, notes=tuple(sorted(set(notes))))


def describe_record_case(case: RecordCase) -> str:
    return f"{case.base}: {'; '.join(case.mutations)}"


# ------------------------------------------------------------------ 4. the model-archive loader

_ARCHIVE_HP = {
    "num_classes": "3",
    "num_training_samples": "12",
    "num_layers": "20",
    "image_shape": "3,8,8",
    "epochs": "1",
}
MARKER = "fuzz-payload-ran"
ESCAPED = "fuzz-escaped"


class _Payload:
    """Unpickled (without weights_only), creates MARKER in the current scratch folder."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


@functools.cache
def archive_base() -> dict[str, bytes]:
    """The members of a real `model.tar.gz` (ResNet-20, 3 classes, one checkpoint) by name."""
    import torch

    from trainer.artifacts import atomic_torch_save, write_model_archive
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.models import build_model

    torch.manual_seed(0)
    hp = parse_hyperparameters(_ARCHIVE_HP)
    model = build_model(hp)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "epoch-0001.pt"
        atomic_torch_save(model.state_dict(), checkpoint)
        archive = write_model_archive(
            Path(tmp) / "model.tar.gz",
            hp=hp,
            state_dict=model.state_dict(),
            checkpoints={1: checkpoint},
            info={"best_epoch": 1, "epochs_run": 1},
        )
        with tarfile.open(archive) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


@functools.cache
def archive_base_bytes() -> bytes:
    return _build_tar([(name, "file", data) for name, data in archive_base().items()])


def _build_tar(members: list[tuple[str, str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "dir": tarfile.DIRTYPE,
                "fifo": tarfile.FIFOTYPE,
                "device": tarfile.CHRTYPE,
            }[kind]
            info.linkname = data.decode()
            tar.addfile(info)
    return out.getvalue()


@dataclass(frozen=True, repr=False)
class ArchiveCase:
    """Mutated `model.tar.gz` bytes and which loader reads them."""

    data: bytes
    loader: str  # predict | checkpoint | incremental
    mutations: tuple[str, ...] = ()

    def __repr__(self) -> str:  # what Hypothesis prints for a failing case: not the bytes
        return f"ArchiveCase({describe_archive_case(self)!r})"


def _json_values() -> st.SearchStrategy[Any]:
    scalar = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
    )
    return st.recursive(
        scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=6,
    )


def _hostile_pickle(command: str) -> bytes:
    return pickle.dumps({"conv.weight": _Payload(command)}, protocol=2)


def _zip_with_payload(command: str) -> bytes:
    """A torch zip whose data.pkl is the payload (how a real attack would ship it)."""
    import torch

    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buffer)
    raw = buffer.getvalue()
    old = pickle.dumps({"x": 0}, protocol=2)
    return raw if old not in raw else raw.replace(old, _hostile_pickle(command))


def _member_mutation(draw: st.DrawFn, members: dict[str, tuple[str, bytes]]) -> str:
    names = sorted(members)
    op = draw(
        st.sampled_from(
            ["flip", "flip", "cut", "json", "json", "drop", "payload", "link", "escape", "kind"]
        )
    )
    name = draw(st.sampled_from(names))
    kind, data = members[name]
    if op == "flip" and kind == "file" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
        members[name] = (kind, bytes(buf))
        return f"flip bits in {name}"
    if op == "cut" and kind == "file" and data:
        members[name] = (kind, data[: draw(st.integers(0, len(data) - 1))])
        return f"cut {name}"
    if op == "json":
        target = draw(st.sampled_from(["hyperparameters.json", "model-info.json"]))
        try:
            original = json.loads(members[target][1])
        except (KeyError, ValueError):  # dropped, or mutated before
            original = {}
        if draw(st.booleans()) and isinstance(original, dict) and original:
            key = draw(st.sampled_from(sorted(original)))
            original[key] = draw(_json_values())
            value: Any = original
        else:
            value = draw(_json_values())
        text = json.dumps(value)
        if draw(st.integers(0, 9)) == 0:
            text = text[: len(text) // 2] + "\udcff"
        members[target] = ("file", text.encode("utf-8", "surrogateescape"))
        return f"{target} = {text[:60]}"
    if op == "drop":
        del members[name]
        return f"drop {name}"
    if op == "payload":
        target = draw(st.sampled_from(["model.pt", "checkpoints/epoch-0001.pt"]))
        command = f"touch {MARKER}"
        shipped = draw(st.sampled_from(["pickle", "zip"]))
        data = _hostile_pickle(command) if shipped == "pickle" else _zip_with_payload(command)
        members[target] = ("file", data)
        return f"{target} is a {shipped} payload"
    if op == "link":
        where = draw(st.sampled_from(["/etc/passwd", f"../{ESCAPED}", "model-info.json", name]))
        members[draw(st.sampled_from(names))] = (
            draw(st.sampled_from(["symlink", "hardlink"])),
            where.encode(),
        )
        return f"link to {where}"
    if op == "escape":
        where = draw(st.sampled_from([f"../{ESCAPED}", f"../../{ESCAPED}", f"/tmp/{ESCAPED}"]))
        members[where] = ("file", b"escaped")
        return f"member {where}"
    members[name] = (draw(st.sampled_from(["dir", "fifo", "device"])), b"")
    return f"{name} is not a file"


@st.composite
def _archive_cases(draw: st.DrawFn) -> ArchiveCase:
    loader = draw(st.sampled_from(["predict", "checkpoint", "incremental"]))
    if draw(st.integers(0, 2)) == 0:  # the .tar.gz bytes themselves
        data = bytearray(archive_base_bytes())
        done = []
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["flip", "flip", "cut", "set"]))
            at = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del data[at:]
            else:
                data[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
            done.append(f"gz {op} at {at}")
            if not data:
                break
        return ArchiveCase(bytes(data), loader, tuple(done))
    members = {name: ("file", data) for name, data in archive_base().items()}
    done = [_member_mutation(draw, members) for _ in range(draw(st.integers(1, 3)))]
    entries = [(name, kind, data) for name, (kind, data) in members.items()]
    return ArchiveCase(_build_tar(entries), loader, tuple(done))


@functools.cache
def _base_weights_digest() -> str:
    import torch

    return _digest(torch.load(io.BytesIO(archive_base()["model.pt"]), weights_only=True))


def _digest(state: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().numpy().tobytes())
    return h.hexdigest()


def run_archive(case: ArchiveCase) -> Outcome:
    """Load the mutated archive as `tune predict` (final or checkpoint weights) or incremental
    training do: a model, or one `UserError` naming the archive. Never runs the payload, never
    writes outside the extraction folder."""
    from trainer.artifacts import apply_weights, load_incremental_weights, load_model_archive
    from trainer.errors import UserError
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.models import build_model

    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        folder = Path(tmp)
        model_dir = folder / "model"
        model_dir.mkdir()
        path = model_dir / "model.tar.gz"
        path.write_bytes(case.data)
        cwd = os.getcwd()
        os.chdir(folder)  # where a payload would `touch` its marker
        try:
            if case.loader == "incremental":  # as fit() uses them
                hp = parse_hyperparameters(_ARCHIVE_HP)
                model = build_model(hp)
                apply_weights(model, load_incremental_weights(model_dir, hp), model_dir)
                state = model.state_dict()
            else:
                checkpoint = 1 if case.loader == "checkpoint" else None
                state = load_model_archive(path, checkpoint=checkpoint).model.state_dict()
        except UserError as exc:
            outcome = Outcome(CLEAN)
            # fit() names the model channel (it holds exactly one archive) in apply_weights' error
            named = str(model_dir if case.loader == "incremental" else path)
            if named not in str(exc):
                outcome = Outcome(UNCLEAR, f"does not name the archive: {str(exc)[:300]!r}")
        except Exception as exc:  # noqa: BLE001
            outcome = _traceback(exc)
        else:
            changed = _digest(state) != _base_weights_digest()
            notes = ("weights changed inside an intact archive, loaded",) if changed else ()
            outcome = Outcome(ACCEPTED, notes=notes)
        finally:
            os.chdir(cwd)
        places = (folder.parent, folder.parent.parent, Path("/tmp"))
        escaped = [p / ESCAPED for p in places if (p / ESCAPED).exists()]
        if (folder / MARKER).exists():
            outcome = Outcome(WRONG, "the pickle payload ran")
        elif escaped:
            for p in escaped:
                p.unlink()
            outcome = Outcome(WRONG, f"a member was written outside the folder: {escaped}")
    return outcome


def describe_archive_case(case: ArchiveCase) -> str:
    return f"{case.loader}: {'; '.join(case.mutations)}"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "hyperparameters",
            "parse_hyperparameters on mappings of strings",
            _hp_strategy,
            run_hyperparameters,
        ),
        Target("space", "load_space on mutated search-space YAML", _space_cases, run_space),
        Target(
            "recordio",
            "RecordReader + RecordIO data set on mutated im2rec files",
            _record_cases,
            run_recordio,
            describe_record_case,
        ),
        Target(
            "archive",
            "model.tar.gz loader on mutated archives",
            _archive_cases,
            run_archive,
            describe_archive_case,
        ),
    )
}
