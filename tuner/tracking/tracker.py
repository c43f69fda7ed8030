"""MLflow records of studies and training runs.

One experiment per study name; one parent run per study (search-space YAML, sampler/pruner/limits,
best value and hyperparameters, leaderboard CSV, plots, the best model, registered with an alias);
one nested child run per trial (every hyperparameter of the contract as params, per-epoch metrics
with `step=epoch` under the trainer's names, status finished / pruned at epoch N / failed with the
error, wall time and images/s, the Ray trial id as a tag). Metrics are logged from the driver, one
`log_batch` per trial and epoch, by a background thread (`tuner.tracking.recorder.Recorder`), so a
slow or absent tracking server never slows a trial; what cannot be recorded is spooled to
`STUDY_DIR/mlflow-spool/` and recorded when the server is back, or by `tune results --sync`.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tuner import layout
from tuner.layout import write_text_atomic
from tuner.tracking.recorder import (
    EXPERIMENT_TAGS,
    Recorder,
    TrackingUnavailableError,
    sync_spool,
)

if TYPE_CHECKING:
    from trainer.hyperparameters import Hyperparameters
    from trainer.loop import FitResult
    from tuner.summary import StudySummary

__all__ = [
    "StudyTracker",
    "TrackingUnavailableError",
    "absolute_tracking_uri",
    "live_tracker",
    "record_training_run",
    "resolve_tracking_uri",
    "sync_spool",
]

DEFAULT_DATABASE = "mlflow.db"
STUDY_KEY = "study"

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
# Fail in seconds, not minutes, against a server that is down (MLflow's default retries for ~4 min);
# what fails is spooled and retried by the recorder anyway. Values set by the user win.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

_LIVE: dict[str, StudyTracker] = {}


def live_tracker(study_key: str) -> StudyTracker | None:
    """The tracker recording the study `study_key` in this process (used by the Ray callback)."""
    return _LIVE.get(study_key)


def absolute_tracking_uri(uri: str, base: Path | None = None) -> str:
    """`uri` with a relative sqlite path made absolute against `base` (default: the working dir).

    Ray runs trials with the trial directory as working directory, so a relative
    `sqlite:///mlflow.db` would mean a different database in every process.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        relative = uri[len(prefix) :]
        return prefix + str(((base or Path.cwd()) / relative).resolve())
    return uri


def resolve_tracking_uri(configured: str | None, study_dir: Path) -> str:
    """The store a study records to: the YAML's `tracking_uri`, else `MLFLOW_TRACKING_URI`, else
    `sqlite:///<studies root>/mlflow.db` (beside the study directories: one UI for all)."""
    chosen = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return absolute_tracking_uri(chosen)
    return f"sqlite:///{(Path(study_dir).resolve().parent / DEFAULT_DATABASE)}"


def _artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a sqlite store go next to the database (MLflow's default is `./mlruns` of
    whatever the working directory is); a server chooses its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///") :])
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment_name)
    return (database.parent / "mlartifacts" / safe).as_uri()


def _fail_fast_over_http(tracking_uri: str) -> None:
    if urlparse(tracking_uri).scheme in ("http", "https"):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)


def _warm_imports() -> None:
    """Import what `finish_study` needs (torch for the model, matplotlib and Optuna's plots) while
    the study runs, on a thread that is otherwise idle, instead of at the end of the study."""
    for module in (
        "tuner.tracking.model",
        "trainer.predict",
        "tuner.tracking.plots",
        "optuna.visualization.matplotlib",
    ):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001, S112 - finish_study imports again and reports
            continue


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_metric(name: str, value: Any) -> bool:
    return name not in _RAY_KEYS and isinstance(value, int | float) and not isinstance(value, bool)


def _flat(settings: dict[str, object], prefix: str = "") -> dict[str, str]:
    """`{"sampler": {"name": "tpe"}}` -> `{"sampler.name": "tpe"}`; values as strings."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = str(value)
    return out


@dataclass
class _TrialProgress:
    started: bool = False
    epochs: int = 0
    images_per_second: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0


class StudyTracker:
    """Records one study in MLflow (see the module docstring); never fails the study.

    `hyperparameters_of(trial.config)` gives a trial's full contract in string form;
    `pruned_epoch(trial_id)` gives the epoch ASHA stopped a trial at, or None if it was not pruned.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_name: str,
        study_name: str,
        study_dir: Path,
        objective: str,
        mode: str,
        registered_model_name: str | None,
        alias: str = "champion",
        hyperparameters_of: Callable[[dict[str, Any]], dict[str, str]],
        pruned_epoch: Callable[[str], int | None],
        retry_seconds: float = 15.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.experiment_name = experiment_name
        self.study_name = study_name
        self.study_dir = Path(study_dir).resolve()
        self.objective = objective
        self.mode = mode
        self.registered_model_name = registered_model_name
        self.alias = alias
        self._hyperparameters_of = hyperparameters_of
        self._pruned_epoch = pruned_epoch
        self._retry_seconds = retry_seconds
        self._log = log or (lambda message: print(message, file=sys.stderr))
        self._recorder: Recorder | None = None
        self._trials: dict[str, _TrialProgress] = {}
        self._event_error_reported = False
        _fail_fast_over_http(self.tracking_uri)

    @property
    def study_key(self) -> str:
        return str(self.study_dir)

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError("StudyTracker.start_study must be called first")
        return self._recorder

    # ------------------------------------------------------------------ study

    def start_study(self, *, space_text: str, settings: dict[str, object], resume: bool) -> None:
        """Open (or, on resume, reopen) the study's parent run with the space and settings."""
        self._recorder = Recorder(
            self.tracking_uri, self.study_dir, retry_seconds=self._retry_seconds, log=self._log
        )
        if not resume:
            self._recorder.forget_runs()
        _LIVE[self.study_key] = self
        threading.Thread(target=_warm_imports, name="mlflow-warm-imports", daemon=True).start()
        self.recorder.submit(
            {
                "op": "create_run",
                "key": STUDY_KEY,
                "experiment": self.experiment_name,
                "artifact_location": _artifact_location(self.tracking_uri, self.experiment_name),
                "run_name": self.study_name,
                "start_time": _now_ms(),
                "tags": {
                    "study_name": self.study_name,
                    "tuner.role": "study",
                    "objective": self.objective,
                    "mode": self.mode,
                    "study_dir": str(self.study_dir),
                },
            }
        )
        params = {"objective": self.objective, "mode": self.mode, **_flat(settings)}
        self.recorder.submit({"op": "log", "key": STUDY_KEY, "params": params})
        self.recorder.submit(
            {"op": "text", "key": STUDY_KEY, "text": space_text, "file": "search_space.yaml"}
        )

    def ray_callback(self) -> Any:
        """The `ray.tune.Callback` to pass in `RunConfig(callbacks=[...])`."""
        from tuner.tracking.callback import TrackingCallback

        return TrackingCallback(self.study_key)

    def finish_study(self, summary: StudySummary) -> None:
        """Best value and hyperparameters, leaderboard, plots and best model on the parent run;
        then the parent run ends and everything queued is recorded (or left spooled)."""
        try:
            self._record_summary(summary)
        except Exception as exc:  # noqa: BLE001 - a summary that cannot be recorded fails nothing
            self._log(
                f"mlflow: the study summary could not be recorded: {type(exc).__name__}: {exc}"
            )
        self._end("FINISHED")

    def close(self) -> None:
        """End a study that stopped without `finish_study` (an error, Ctrl-C): the parent run is
        marked KILLED (a resume reopens it) and what is queued is recorded or spooled. Does nothing
        after `finish_study`, so callers can put it in a `finally`."""
        if self._recorder is not None and self.study_key in _LIVE:
            self._end("KILLED")

    def _end(self, status: str) -> None:
        self.recorder.submit(
            {"op": "end", "key": STUDY_KEY, "status": status, "end_time": _now_ms()}
        )
        _LIVE.pop(self.study_key, None)
        self.recorder.close()

    def _record_summary(self, summary: StudySummary) -> None:
        from tuner.tracking.plots import render_study_plots

        submit = self.recorder.submit
        board = summary.leaderboard
        counts = board["status"].value_counts().to_dict() if len(board) else {}
        metrics: dict[str, float] = {
            f"trials_{status}": float(counts.get(status, 0))
            for status in ("finished", "pruned", "failed")
        }
        if summary.best_value is not None and not math.isnan(float(summary.best_value)):
            metrics["best_value"] = float(summary.best_value)
            metrics[summary.objective] = float(summary.best_value)
        now = _now_ms()
        submit(
            {
                "op": "log",
                "key": STUDY_KEY,
                "metrics": [[k, v, now, 0] for k, v in metrics.items()],
                "tags": {"best_trial_id": summary.best_trial_id or ""},
            }
        )
        if summary.best_hyperparameters:
            best = {f"best.{name}": value for name, value in summary.best_hyperparameters.items()}
            submit({"op": "log", "key": STUDY_KEY, "params": best})
        if summary.best_trial_id:
            submit(
                {
                    "op": "log",
                    "key": f"trial:{summary.best_trial_id}",
                    "tags": {"best_trial": "true"},
                }
            )
        out = self.study_dir / layout.TRACKING_DIR  # files logged as artifacts, kept for a sync
        leaderboard = out / layout.LEADERBOARD_FILE
        write_text_atomic(leaderboard, board.to_csv(index=False))
        submit({"op": "artifact", "key": STUDY_KEY, "path": str(leaderboard), "dir": None})
        try:
            started = [
                str(t) for t in summary.leaderboard["trial_id"] if str(t) not in self._trials
            ]
            plots = render_study_plots(summary, out / "plots", order=started + list(self._trials))
        except Exception as exc:  # noqa: BLE001 - plots are a nicety; the records are not
            self._log(f"mlflow: plots could not be drawn: {type(exc).__name__}: {exc}")
            plots = []
        for plot in plots:
            submit({"op": "artifact", "key": STUDY_KEY, "path": str(plot), "dir": "plots"})
        if summary.best_model_path is not None:
            submit(
                {
                    "op": "model",
                    "key": STUDY_KEY,
                    "archive": str(Path(summary.best_model_path).resolve()),
                    "registered_model_name": self.registered_model_name,
                    "alias": self.alias,
                    "objective": summary.objective,
                    "mode": summary.mode,
                    "value": None if summary.best_value is None else float(summary.best_value),
                }
            )

    # ------------------------------------------------------------------ trials (from the callback)

    def handle_event(self, event: str, *args: Any) -> None:
        """Apply one Ray event; a bug here is reported once and never reaches Ray's loop."""
        try:
            _EVENTS[event](self, *args)
        except Exception as exc:  # noqa: BLE001
            if not self._event_error_reported:
                self._event_error_reported = True
                self._log(
                    f"mlflow: a trial event could not be recorded: {type(exc).__name__}: {exc}"
                )

    def _trial_started(self, trial: Any) -> None:
        progress = self._trials.setdefault(trial.trial_id, _TrialProgress())
        if progress.started:
            return
        progress.started = True
        key = f"trial:{trial.trial_id}"
        self.recorder.submit(
            {
                "op": "create_run",
                "key": key,
                "parent": STUDY_KEY,
                "experiment": self.experiment_name,
                "artifact_location": _artifact_location(self.tracking_uri, self.experiment_name),
                "run_name": f"{self.study_name}-{trial.trial_id}",
                "start_time": _now_ms(),
                "tags": {
                    "ray.trial_id": trial.trial_id,
                    "study_name": self.study_name,
                    "tuner.role": "trial",
                },
            }
        )
        self.recorder.submit(
            {"op": "log", "key": key, "params": self._hyperparameters_of(trial.config)}
        )

    def _trial_result(self, trial: Any, result: dict[str, Any]) -> None:
        self._trial_started(trial)
        progress = self._trials[trial.trial_id]
        epoch = int(result.get("epoch", result.get("training_iteration", progress.epochs + 1)))
        now = _now_ms()
        metrics = [
            [name, float(value), now, epoch]
            for name, value in result.items()
            if _is_metric(name, value)
        ]
        progress.epochs = max(progress.epochs, epoch)
        if "train:images_per_second" in result:
            progress.images_per_second.append(float(result["train:images_per_second"]))
        progress.wall_seconds = float(result.get("time_total_s", progress.wall_seconds))
        self.recorder.submit(
            {"op": "log", "key": f"trial:{trial.trial_id}", "metrics": metrics, "step": epoch}
        )

    def _trial_ended(self, trial: Any, error: str | None) -> None:
        self._trial_started(trial)
        progress = self._trials[trial.trial_id]
        key = f"trial:{trial.trial_id}"
        tags: dict[str, str] = {"epochs_run": str(progress.epochs)}
        if error is not None:
            status, tags["trial_status"] = "FAILED", "failed"
            tags["error"] = error.strip()[-4000:]
            self.recorder.submit({"op": "text", "key": key, "text": error, "file": "error.txt"})
        else:
            pruned_at = self._pruned_epoch(trial.trial_id)
            if pruned_at is None:
                status, tags["trial_status"] = "FINISHED", "finished"
            else:
                status, tags["trial_status"] = "KILLED", "pruned"
                tags["pruned_at_epoch"] = str(pruned_at)
        summary: dict[str, float] = {
            "wall_time_seconds": progress.wall_seconds,
            "epochs_run": progress.epochs,
        }
        if progress.images_per_second:
            summary["images_per_second"] = sum(progress.images_per_second) / len(
                progress.images_per_second
            )
        now = _now_ms()
        self.recorder.submit(
            {
                "op": "log",
                "key": key,
                "tags": tags,
                "metrics": [[k, v, now, 0] for k, v in summary.items()],
            }
        )
        self.recorder.submit({"op": "end", "key": key, "status": status, "end_time": now})


_EVENTS: dict[str, Callable[..., None]] = {
    "trial_started": StudyTracker._trial_started,
    "trial_result": StudyTracker._trial_result,
    "trial_ended": StudyTracker._trial_ended,
}


def record_training_run(
    hp: Hyperparameters,
    result: FitResult,
    *,
    tracking_uri: str,
    experiment_name: str,
    registered_model_name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> str | None:
    """Record one `tune train` run (no parent): params, per-epoch metrics, the model. Returns the
    run id, or None when the store could not be reached (reported; the model is unaffected)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    report = log or (lambda message: print(message, file=sys.stderr))
    uri = absolute_tracking_uri(tracking_uri)
    _fail_fast_over_http(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                experiment_name, _artifact_location(uri, experiment_name), tags=EXPERIMENT_TAGS
            )
        )
        run = client.create_run(
            experiment_id, tags={"tuner.role": "train", "stopped_early": str(result.stopped_early)}
        )
        run_id: str = run.info.run_id
        now = _now_ms()
        metrics = [
            Metric(name, float(value), now, int(row.get("epoch", index + 1)))
            for index, row in enumerate(result.history)
            for name, value in row.items()
            if _is_metric(name, value)
        ]
        rates = [
            float(row["train:images_per_second"])
            for row in result.history
            if "train:images_per_second" in row
        ]
        summary = {
            "best_epoch": float(result.best_epoch),
            "epochs_run": float(len(result.history)),
            "wall_time_seconds": sum(
                float(row.get("epoch_seconds", 0.0)) for row in result.history
            ),
        }
        if rates:
            summary["images_per_second"] = sum(rates) / len(rates)
        metrics += [Metric(name, value, now, 0) for name, value in summary.items()]
        params = [Param(name, value) for name, value in hp.to_strings().items()]
        for start in range(0, max(len(metrics), 1), 1000):
            client.log_batch(
                run_id, metrics=metrics[start : start + 1000], params=params if start == 0 else []
            )
        from tuner.tracking.model import log_model_on_run

        log_model_on_run(
            tracking_uri=uri,
            run_id=run_id,
            archive=Path(result.model_path),
            registered_model_name=registered_model_name,
            objective="validation:accuracy",
            value=result.metrics.get("validation:accuracy"),
            log=report,
        )
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:  # noqa: BLE001 - the model is trained; only its record is missing
        report(
            f"mlflow: the training run could not be recorded at {uri}: {type(exc).__name__}: {exc}"
        )
        return None
    report(f"mlflow: recorded run {run_id} in experiment {experiment_name!r} at {uri}")
    return run_id
