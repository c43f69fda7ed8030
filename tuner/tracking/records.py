"""What the tracker asks the recorder to write: one small frozen dataclass per operation.

Each names its run by a local *key* (`"study"`, `"trial:<ray id>"`, `"train:<id>"`), not by an
MLflow run id, so a record spooled before its run existed can be applied later. `encode` and
`decode` are the spool's line format (`{"op": "log", "key": ..., ...}`, one JSON object per
line, the same as before the records were typed, so an older spool still replays).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CreateRun",
    "EndRun",
    "LogArtifact",
    "LogBatch",
    "LogModel",
    "LogText",
    "Metric",
    "RECORD_TYPES",
    "Record",
    "decode",
    "encode",
    "is_metric",
    "now_ms",
]

# Keys Ray adds to every result; everything else numeric is a metric the trainable reported.
_RAY_KEYS = frozenset(
    {
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "timestamp",
        "time_since_restore",
        "timesteps_total",
        "episodes_total",
        "timesteps_since_restore",
        "iterations_since_restore",
        "done",
        "pid",
        "epoch",
    }
)


@dataclass(frozen=True)
class Metric:
    """One metric value at a step (the epoch; 0 for a run's summary values)."""

    name: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class CreateRun:
    """Create the run of `key` (a child of `parent`'s run), or reopen it if it exists; either way
    `experiment_tags` are set on its experiment (how the MLflow UI shows it)."""

    key: str
    experiment: str
    parent: str | None = None
    artifact_location: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    experiment_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogBatch:
    """Metrics, params and tags of one run; with `step`, logged once per step (a replayed or
    resumed epoch is not logged twice)."""

    key: str
    metrics: tuple[Metric, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    step: int | None = None


@dataclass(frozen=True)
class EndRun:
    """Mark the run ended with `status` (FINISHED, KILLED, FAILED)."""

    key: str
    status: str
    end_time: int | None = None


@dataclass(frozen=True)
class DeleteRun:
    """Delete the run of `key`: a trial the study dropped (Ray did not keep it after a kill)."""

    key: str


@dataclass(frozen=True)
class LogText:
    """A text artifact (the search space, a trial's error)."""

    key: str
    text: str
    file: str


@dataclass(frozen=True)
class LogArtifact:
    """A file artifact, under `dir` of the run's artifacts."""

    key: str
    path: str
    dir: str | None = None


@dataclass(frozen=True)
class LogModel:
    """The model in `archive` (a model.tar.gz) as an MLflow model, registered under
    `registered_model_name` with `alias` moved to it when its `value` beats the alias's."""

    key: str
    archive: str
    registered_model_name: str | None = None
    alias: str = "champion"
    objective: str | None = None
    mode: str = "max"
    value: float | None = None


Record = CreateRun | LogBatch | EndRun | DeleteRun | LogText | LogArtifact | LogModel
RECORD_TYPES = (CreateRun, LogBatch, EndRun, DeleteRun, LogText, LogArtifact, LogModel)

# the spool's operation names
_OPS: dict[str, type[Record]] = {
    "create_run": CreateRun,
    "log": LogBatch,
    "end": EndRun,
    "delete": DeleteRun,
    "text": LogText,
    "artifact": LogArtifact,
    "model": LogModel,
}
_NAMES = {kind: name for name, kind in _OPS.items()}


def op_name(record: Record) -> str:
    """The record's name in the spool (`create_run`, `log`, ...)."""
    return _NAMES[type(record)]


def encode(record: Record) -> str:
    """The record as one spool line (JSON, no newline)."""
    data: dict[str, Any] = {"op": op_name(record), **asdict(record)}
    if isinstance(record, LogBatch):
        data["metrics"] = [[m.name, m.value, m.timestamp, m.step] for m in record.metrics]
    return json.dumps(data)


def decode(line: str) -> Record:
    """A spool line back as its record; `KeyError`/`TypeError` for a line that is not one."""
    data = json.loads(line)
    kind = _OPS[data.pop("op")]
    if kind is LogBatch:
        data["metrics"] = tuple(
            Metric(str(name), float(value), int(ts), int(step))
            for name, value, ts, step in data.get("metrics") or []
        )
        data["params"] = {k: str(v) for k, v in (data.get("params") or {}).items()}
        data["tags"] = {k: str(v) for k, v in (data.get("tags") or {}).items()}
    return kind(**data)


def now_ms() -> int:
    """MLflow's timestamp for now (milliseconds)."""
    return int(time.time() * 1000)


def is_metric(name: str, value: Any) -> bool:
    """Whether a reported `name: value` is a metric of the trainer's (not one of Ray's keys)."""
    return name not in _RAY_KEYS and isinstance(value, int | float) and not isinstance(value, bool)
