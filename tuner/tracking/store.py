"""Applying tracking records to one MLflow store, and the bookkeeping that makes it idempotent.

`TrackingStore.apply(record)` talks to MLflow; the MLflow run id of each key and the epochs
logged per key are kept in `FOLDER/mlflow-runs.json` (`tuner.layout.TrackingRuns`), so a resumed
study reopens its runs and a replayed epoch is not logged twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tuner import layout
from tuner.layout import TrackingRuns
from tuner.tracking.client import open_client
from tuner.tracking.records import (
    CreateRun,
    DeleteRun,
    EndRun,
    LogArtifact,
    LogBatch,
    LogModel,
    LogText,
    Record,
)
from tuner.tracking.view import EXPERIMENT_KIND_TAG

__all__ = [
    "EXPERIMENT_TAGS",
    "RUN_KEY_TAG",
    "TrackingStore",
    "artifact_location",
    "fail_fast_over_http",
    "is_permanent",
]

# Older MLflow UIs open an experiment of this kind on its training-runs table (tracking/view.py).
EXPERIMENT_TAGS = dict(EXPERIMENT_KIND_TAG)

# On every run we create: which bookkeeping (`TrackingRuns.instance`) and key it belongs to.
RUN_KEY_TAG = "tuner.run_key"
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


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


# Fail in seconds, not minutes, against a server that is down (MLflow's default retries for ~4 min);
# what fails is spooled and retried by the recorder anyway. And no "🏃 View run ... / 🧪 View
# experiment ..." pair on stdout as each run ends (MLflow prints it for server stores only): a
# study ends 50 trial runs, and our own output says where the runs are. Values set by the user win.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def fail_fast_over_http(tracking_uri: str) -> None:
    """Short MLflow HTTP retries and timeouts for a tracking server, and no run URLs printed by
    MLflow (unless the user set these variables)."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)


def artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a sqlite store go next to the database (MLflow's default is `./mlruns` of
    whatever the working directory is); a server chooses its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///") :])
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment_name)
    return (database.parent / "mlartifacts" / safe).as_uri()


def is_permanent(exc: Exception) -> bool:
    """Whether `exc` says the record is wrong (not that the store is away)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _PERMANENT_CODES


class TrackingStore:
    """One MLflow store, seen through local keys; `log` reports what MLflow refused or warned."""

    def __init__(self, tracking_uri: str, folder: Path, log: Callable[[str], None]) -> None:
        self.tracking_uri = tracking_uri
        self.folder = Path(folder)
        self._report = log
        self._client: Any = None
        self._experiments: dict[str, str] = {}
        self._state = self._load_state()
        self._save_state()  # names the store, so `sync_spool` knows where spooled records go

    def run_id(self, key: str) -> str | None:
        """The MLflow run id recorded for `key`, or None while it has not reached the store."""
        return self._state.runs.get(key)

    def keys(self, prefix: str = "") -> list[str]:
        """The local keys that have an MLflow run (e.g. `trial:` for every trial's). Called from
        the study's thread while the recorder's thread may add a run, hence the copy."""
        return [key for key in list(self._state.runs) if key.startswith(prefix)]

    def forget_runs(self) -> None:
        """Start new bookkeeping (a study that is not a resume gets new runs)."""
        self._state = TrackingRuns(self.tracking_uri)
        self._save_state()

    def _load_state(self) -> TrackingRuns:
        state = layout.read_tracking_runs(self.folder)
        if state is None or state.tracking_uri != self.tracking_uri:
            return TrackingRuns(self.tracking_uri)  # runs of another store mean nothing here
        return state

    def _save_state(self) -> None:
        layout.write_tracking_runs(self.folder, self._state)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = open_client(self.tracking_uri)
        return self._client

    def apply(self, record: Record) -> None:
        """Write `record` to the store; raises what MLflow raises."""
        match record:
            case CreateRun():
                self._create_run(record)
            case LogBatch():
                self._log_batch(record)
            case DeleteRun():
                self._delete_run(record)
            case EndRun():
                self.client.set_terminated(
                    self._require_run(record.key), status=record.status, end_time=record.end_time
                )
            case LogText():
                self.client.log_text(self._require_run(record.key), record.text, record.file)
            case LogArtifact():
                self.client.log_artifact(self._require_run(record.key), record.path, record.dir)
            case LogModel():
                self._log_model(record)

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

    def _create_run(self, record: CreateRun) -> None:
        experiment_id = self._experiment_id(record.experiment, record.artifact_location)
        for key, value in record.experiment_tags.items():
            self.client.set_experiment_tag(experiment_id, key, value)
        existing = self.run_id(record.key)
        if existing is not None:
            self.client.update_run(existing, status="RUNNING")
            return
        run_key = f"{self._state.instance}/{record.key}"
        # created by a process killed before it saved the run id: reopen that run
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=1
        )
        if found:
            self.client.update_run(found[0].info.run_id, status="RUNNING")
            self._state.runs[record.key] = found[0].info.run_id
            self._save_state()
            return
        tags = {**record.tags, RUN_KEY_TAG: run_key}
        if record.parent:
            tags["mlflow.parentRunId"] = self._require_run(record.parent)
        run = self.client.create_run(
            experiment_id, start_time=record.start_time, tags=tags, run_name=record.run_name
        )
        self._state.runs[record.key] = run.info.run_id
        self._save_state()

    def _delete_run(self, record: DeleteRun) -> None:
        run_id = self.run_id(record.key)
        if run_id is not None:
            self.client.delete_run(run_id)
        self._state.runs.pop(record.key, None)
        self._state.steps.pop(record.key, None)
        self._save_state()

    def _log_batch(self, record: LogBatch) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._require_run(record.key)
        step = record.step
        if step is not None and step in self._state.steps.get(record.key, ()):
            return  # replayed or resumed: this epoch is already recorded
        metrics = [Metric(m.name, float(m.value), m.timestamp, m.step) for m in record.metrics]
        params = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in record.params.items()]
        tags = [RunTag(k, str(v)) for k, v in record.tags.items()]
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
            self._state.steps[record.key] = sorted({*self._state.steps.get(record.key, ()), step})
            self._save_state()

    def _log_model(self, record: LogModel) -> None:
        from tuner.tracking.model import log_model_on_run

        version = log_model_on_run(
            tracking_uri=self.tracking_uri,
            run_id=self._require_run(record.key),
            archive=Path(record.archive),
            registered_model_name=record.registered_model_name,
            alias=record.alias,
            objective=record.objective,
            mode=record.mode,
            value=record.value,
            log=self._report,
        )
        if version is not None:
            self.client.set_tag(self._require_run(record.key), "registered_model_version", version)
