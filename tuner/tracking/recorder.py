"""Recording to MLflow that never stops a study: operations are applied off the driver's loop,
and spooled to `STUDY_DIR/mlflow-spool/` while the tracking store cannot be reached.

Every write the tracker makes is a small JSON-serialisable operation (`create_run`, `log`, `end`,
`text`, `artifact`, `model`) naming its run by a local *key* (`"study"`, `"trial:<ray id>"`), not by
an MLflow run id, so an operation spooled before its run existed can be replayed later. The MLflow
run id of each key, and the epochs logged per run, live in `STUDY_DIR/mlflow-runs.json`; that is
what lets a resumed study continue its parent run, and a replay skip epochs already logged.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.errors import UserError
from tuner import layout
from tuner.layout import TrackingRuns, write_text_atomic

__all__ = [
    "EXPERIMENT_TAGS",
    "Recorder",
    "TrackingUnavailableError",
    "sync_spool",
]

# The MLflow UI opens an experiment of this kind on its training-runs table (not the GenAI view).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

# Error codes meaning "this operation is wrong", not "the store is away": such an operation is
# reported and dropped instead of blocking everything spooled behind it.
_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "BAD_REQUEST",
    "INVALID_STATE",
}
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000


class TrackingUnavailableError(UserError):
    """The tracking store could not be reached, so spooled operations stay spooled."""


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _replay_rank(line: str) -> int:
    operation = json.loads(line)
    if operation["op"] != "create_run":
        return 2
    return 1 if operation.get("parent") else 0


def _is_permanent(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _PERMANENT_CODES


class Recorder:
    """Applies tracking operations to one MLflow store, in order, from a background thread.

    `submit` never blocks and never raises. When an operation fails because the store is away, the
    problem is reported once (through `log`), that operation and every later one go to the spool
    file, and every `retry_seconds` the spool is replayed; the first replay that succeeds reports
    that the store is back. `close` drains the queue; what is still spooled stays on disk for
    `sync_spool` (`tune results --sync`).
    """

    def __init__(
        self,
        tracking_uri: str,
        study_dir: Path,
        *,
        retry_seconds: float = 15.0,
        log: Callable[[str], None] | None = None,
        background: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.study_dir = Path(study_dir)
        self.retry_seconds = retry_seconds
        self._report = log or (lambda message: print(message, file=sys.stderr))
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._state = self._load_state()
        self._save_state()  # names the store, so `sync_spool` knows where spooled records go
        self._offline = self.spool_path.exists() and self.spool_path.stat().st_size > 0
        self._last_retry = time.monotonic()
        self._reported_down = False
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._spool_lock = threading.Lock()
        self._in_flight: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._work, name="mlflow-recorder", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ public surface

    @property
    def spool_path(self) -> Path:
        return layout.spool_file(self.study_dir)

    def run_id(self, key: str) -> str | None:
        """The MLflow run id recorded for `key`, or None while it has not reached the store."""
        return self._state.runs.get(key)

    def forget_runs(self) -> None:
        """Start a new study's bookkeeping (a study that is not a resume gets new runs)."""
        self._state = TrackingRuns(self.tracking_uri)
        self._save_state()

    def submit(self, operation: dict[str, Any]) -> None:
        """Queue one operation; applied (or spooled) in order. Never blocks, never raises."""
        if self._thread is None:
            self._handle(operation)
        else:
            self._queue.put(operation)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far was applied or spooled; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put({"op": "_barrier", "event": done})
        return done.wait(timeout)

    def close(self, timeout: float = 120.0) -> int:
        """Drain the queue, try the spool once more, stop the thread; returns operations spooled."""
        if self._thread is not None:
            drained = self.flush(timeout)
            if not drained:
                # the store hangs: keep what is still queued on disk instead of losing it at exit
                self._offline = True
                self._spool(self._take_queued())
            self._queue.put(None)
            self._thread.join(timeout=5.0)
            in_flight = self._in_flight
            if self._thread.is_alive():
                # still inside a call to the store: spool that operation too (replaying it is
                # harmless: runs are created once per key, epochs logged once per step)
                self._in_flight = None
                if in_flight is not None:
                    self._spool([in_flight])
                return self.pending()
            self._thread = None
        if self._offline:
            self._replay_spool()
        pending = self.pending()
        if pending:
            self._report(
                f"mlflow: {pending} tracking operations could not be recorded at "
                f"{self.tracking_uri}; they are kept in {self.spool_path} "
                "(`tune results --sync` records them)"
            )
        return pending

    def _take_queued(self) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        while True:
            try:
                operation = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if operation is not None and operation["op"] == "_barrier":
                operation["event"].set()
            elif operation is not None:
                taken.append(operation)

    def pending(self) -> int:
        """How many operations wait in the spool file."""
        if not self.spool_path.exists():
            return 0
        with self.spool_path.open() as handle:
            return sum(1 for line in handle if line.strip())

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            try:
                operation = self._queue.get(timeout=self.retry_seconds)
            except queue.Empty:
                operation = {"op": "_tick"}
            if operation is None:
                return
            if operation["op"] == "_barrier":
                operation["event"].set()
                continue
            self._handle(operation)

    def _handle(self, operation: dict[str, Any]) -> None:
        if self._offline and time.monotonic() - self._last_retry >= self.retry_seconds:
            self._replay_spool()
        if operation["op"] == "_tick":
            return
        if self._offline:
            self._spool([operation])
            return
        self._in_flight = operation
        try:
            self._apply(operation)
        except Exception as exc:  # noqa: BLE001 - any store failure must leave the study running
            if _is_permanent(exc):
                self._report(f"mlflow: {operation['op']} for {operation.get('key')} refused: {exc}")
                return
            self._went_down(exc)
            if self._in_flight is not None:  # else `close` has spooled it already
                self._spool([operation])
        finally:
            self._in_flight = None

    def _went_down(self, exc: Exception) -> None:
        self._offline = True
        self._last_retry = time.monotonic()
        if not self._reported_down:
            self._reported_down = True
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            self._report(
                f"mlflow: cannot record to {self.tracking_uri} ({first_line[:300]}); the study "
                f"goes on and spools what is not recorded to {self.spool_path.parent}"
            )

    def _spool(self, operations: list[dict[str, Any]]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spool_lock, self.spool_path.open("a") as handle:
            for operation in operations:
                handle.write(json.dumps(operation) + "\n")

    def _replay_spool(self) -> int:
        """Apply spooled operations in order; keep the rest on the first failure."""
        self._last_retry = time.monotonic()
        if not self.spool_path.exists():
            self._offline = False
            return 0
        lines = [line for line in self.spool_path.read_text().splitlines() if line.strip()]
        # parent runs, then child runs, then the rest (each in its order): an operation spooled
        # while its run's creation was still in flight can sit before that creation in the file
        lines.sort(key=_replay_rank)
        done = 0
        for index, line in enumerate(lines):
            try:
                self._apply(json.loads(line))
            except Exception as exc:  # noqa: BLE001
                if _is_permanent(exc):
                    self._report(f"mlflow: spooled operation refused and dropped: {exc}")
                    done += 1
                    continue
                write_text_atomic(self.spool_path, "".join(f"{rest}\n" for rest in lines[index:]))
                return done
            done += 1
        self.spool_path.unlink(missing_ok=True)
        self._offline = False
        if self._reported_down and done:
            self._report(f"mlflow: {self.tracking_uri} is back; {done} spooled operations recorded")
        self._reported_down = False
        return done

    # ------------------------------------------------------------------ state file

    def _load_state(self) -> TrackingRuns:
        state = layout.read_tracking_runs(self.study_dir)
        if state is None or state.tracking_uri != self.tracking_uri:
            return TrackingRuns(self.tracking_uri)  # runs of another store mean nothing here
        return state

    def _save_state(self) -> None:
        layout.write_tracking_runs(self.study_dir, self._state)

    # ------------------------------------------------------------------ applying operations

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def _apply(self, operation: dict[str, Any]) -> None:
        _OPERATIONS[operation["op"]](self, operation)

    def _require_run(self, key: str) -> str:
        run_id = self.run_id(key)
        if run_id is None:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_STATE

            raise MlflowException(
                f"no MLflow run was created for {key!r}", error_code=INVALID_STATE
            )
        return run_id

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        if name not in self._experiments:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                self._experiments[name] = self.client.create_experiment(
                    name, artifact_location=artifact_location, tags=EXPERIMENT_TAGS
                )
            else:
                self._experiments[name] = experiment.experiment_id
        return self._experiments[name]

    def _create_run(self, op: dict[str, Any]) -> None:
        existing = self.run_id(op["key"])
        if existing is not None:
            self.client.update_run(existing, status="RUNNING")
            return
        tags = dict(op.get("tags") or {})
        if op.get("parent"):
            tags["mlflow.parentRunId"] = self._require_run(op["parent"])
        experiment_id = self._experiment_id(op["experiment"], op.get("artifact_location"))
        run = self.client.create_run(
            experiment_id, start_time=op.get("start_time"), tags=tags, run_name=op.get("run_name")
        )
        self._state.runs[op["key"]] = run.info.run_id
        self._save_state()

    def _log_batch(self, op: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._require_run(op["key"])
        step = op.get("step")
        if step is not None and step in self._state.steps.get(op["key"], ()):
            return  # replayed or resumed: this epoch is already recorded
        metrics = [
            Metric(name, float(value), int(ts), int(s))
            for name, value, ts, s in op.get("metrics", [])
        ]
        params = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in (op.get("params") or {}).items()]
        tags = [RunTag(k, str(v)) for k, v in (op.get("tags") or {}).items()]
        metric_chunks = _chunks(metrics, _MAX_METRICS_PER_BATCH)
        param_chunks = _chunks(params, _MAX_PARAMS_PER_BATCH)
        for index in range(max(len(metric_chunks), len(param_chunks))):
            self.client.log_batch(
                run_id,
                metrics=metric_chunks[index] if index < len(metric_chunks) else [],
                params=param_chunks[index] if index < len(param_chunks) else [],
                tags=tags if index == 0 else [],
            )
        if step is not None:
            self._state.steps[op["key"]] = sorted({*self._state.steps.get(op["key"], ()), step})
            self._save_state()

    def _end(self, op: dict[str, Any]) -> None:
        self.client.set_terminated(
            self._require_run(op["key"]), status=op["status"], end_time=op.get("end_time")
        )

    def _text(self, op: dict[str, Any]) -> None:
        self.client.log_text(self._require_run(op["key"]), op["text"], op["file"])

    def _artifact(self, op: dict[str, Any]) -> None:
        self.client.log_artifact(self._require_run(op["key"]), op["path"], op.get("dir"))

    def _model(self, op: dict[str, Any]) -> None:
        from tuner.tracking.model import log_model_on_run

        version = log_model_on_run(
            tracking_uri=self.tracking_uri,
            run_id=self._require_run(op["key"]),
            archive=Path(op["archive"]),
            registered_model_name=op.get("registered_model_name"),
            alias=op.get("alias", "champion"),
            objective=op.get("objective"),
            mode=op.get("mode", "max"),
            value=op.get("value"),
            log=self._report,
        )
        if version is not None:
            self.client.set_tag(self._require_run(op["key"]), "registered_model_version", version)


_OPERATIONS: dict[str, Callable[[Recorder, dict[str, Any]], None]] = {
    "create_run": Recorder._create_run,
    "log": Recorder._log_batch,
    "end": Recorder._end,
    "text": Recorder._text,
    "artifact": Recorder._artifact,
    "model": Recorder._model,
}


def sync_spool(study_dir: Path, tracking_uri: str | None = None) -> int:
    """Record what a study spooled while its tracking store was away (`tune results --sync`).

    `tracking_uri` defaults to the store the study recorded to (in `STUDY_DIR/mlflow-runs.json`).
    Returns how many operations were recorded (0 when nothing was spooled); raises
    `TrackingUnavailableError` when the store still cannot be reached.
    """
    study_dir = Path(study_dir)
    if tracking_uri is None:
        runs = layout.read_tracking_runs(study_dir)
        if runs is None:
            raise TrackingUnavailableError(
                f"{layout.tracking_runs_file(study_dir)} does not exist: {study_dir} was never "
                "tracked, so there is nothing to sync (or pass the tracking URI explicitly)"
            )
        tracking_uri = runs.tracking_uri
    recorder = Recorder(tracking_uri, study_dir, background=False, log=lambda _message: None)
    if recorder.pending() == 0:
        return 0
    done = recorder._replay_spool()
    left = recorder.pending()
    if left:
        raise TrackingUnavailableError(
            f"the tracking store {tracking_uri} is still unreachable: {done} operations recorded, "
            f"{left} remain in {recorder.spool_path}"
        )
    return done
