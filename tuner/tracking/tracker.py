"""MLflow records of a study.

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
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import layout
from tuner.layout import write_text_atomic
from tuner.tracking import events
from tuner.tracking.events import TrialEnded, TrialEvent, TrialResult, TrialStarted
from tuner.tracking.recorder import Recorder
from tuner.tracking.records import (
    CreateRun,
    DeleteRun,
    EndRun,
    LogArtifact,
    LogBatch,
    LogModel,
    LogText,
    Metric,
    is_metric,
    now_ms,
)
from tuner.tracking.store import artifact_location, fail_fast_over_http
from tuner.tracking.view import study_view_tags
from tuner.tracking_uri import absolute_tracking_uri

if TYPE_CHECKING:
    from tuner.summary import StudySummary

__all__ = ["StudyTracker", "tracking_callback"]

STUDY_KEY = "study"


def tracking_callback(study_key: str) -> Any:
    """The `ray.tune.Callback` that feeds the tracker of the study `study_key` when one runs in
    this process (and does nothing otherwise); it survives pickling into `tuner.pkl`."""
    from tuner.tracking.callback import TrackingCallback

    return TrackingCallback(study_key)


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
    objective_values: list[float] = field(default_factory=list)


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
        fail_fast_over_http(self.tracking_uri)

    @property
    def study_key(self) -> str:
        return str(self.study_dir)

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            raise RuntimeError("StudyTracker.start_study must be called first")
        return self._recorder

    def _create_run(
        self,
        key: str,
        run_name: str,
        tags: dict[str, str],
        parent: str | None,
        experiment_tags: dict[str, str] | None = None,
    ) -> None:
        self.recorder.submit(
            CreateRun(
                key=key,
                experiment=self.experiment_name,
                parent=parent,
                artifact_location=artifact_location(self.tracking_uri, self.experiment_name),
                run_name=run_name,
                start_time=now_ms(),
                tags=tags,
                experiment_tags=experiment_tags or {},
            )
        )

    # ------------------------------------------------------------------ study

    def start_study(self, *, space_text: str, settings: dict[str, object], resume: bool) -> None:
        """Open (or, on resume, reopen) the study's parent run with the space and settings."""
        self._recorder = Recorder(
            self.tracking_uri, self.study_dir, retry_seconds=self._retry_seconds, log=self._log
        )
        if not resume:
            self._recorder.forget_runs()
        events.register(self.study_key, self)
        threading.Thread(target=_warm_imports, name="mlflow-warm-imports", daemon=True).start()
        tags = {
            "study_name": self.study_name,
            "tuner.role": "study",
            "objective": self.objective,
            "mode": self.mode,
            "study_dir": str(self.study_dir),
        }
        searched = [name for name in str(settings.get("searched") or "").split(",") if name]
        view = study_view_tags(self.objective, self.mode, searched)
        self._create_run(STUDY_KEY, self.study_name, tags, parent=None, experiment_tags=view)
        params = {"objective": self.objective, "mode": self.mode, **_flat(settings)}
        self.recorder.submit(LogBatch(STUDY_KEY, params=params))
        self.recorder.submit(LogText(STUDY_KEY, space_text, "search_space.yaml"))

    def ray_callback(self) -> Any:
        """The `ray.tune.Callback` to pass in `RunConfig(callbacks=[...])`."""
        return tracking_callback(self.study_key)

    def finish_study(self, summary: StudySummary) -> None:
        """Best value and hyperparameters, leaderboard, plots and best model on the parent run;
        then the parent run ends and everything queued is recorded (or left spooled). The runs of
        trials the study dropped (started by a run that was killed before Ray kept them) are
        deleted, so the experiment holds one run per trial of the leaderboard."""
        kept = {f"trial:{t}" for t in summary.leaderboard.get("trial_id", [])}
        for key in self.recorder.store.keys("trial:"):
            if key not in kept:
                self.recorder.submit(DeleteRun(key))
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
        if self._recorder is not None and events.live_tracker(self.study_key) is self:
            self._end("KILLED")

    def _end(self, status: str) -> None:
        self.recorder.submit(EndRun(STUDY_KEY, status, now_ms()))
        events.unregister(self.study_key)
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
        now = now_ms()
        submit(
            LogBatch(
                STUDY_KEY,
                metrics=tuple(Metric(k, v, now, 0) for k, v in metrics.items()),
                tags={"best_trial_id": summary.best_trial_id or ""},
            )
        )
        if summary.best_hyperparameters:
            best = {f"best.{name}": value for name, value in summary.best_hyperparameters.items()}
            submit(LogBatch(STUDY_KEY, params=best))
        if summary.best_trial_id:
            submit(LogBatch(f"trial:{summary.best_trial_id}", tags={"best_trial": "true"}))
        out = self.study_dir / layout.TRACKING_DIR  # files logged as artifacts, kept for a sync
        leaderboard = out / layout.LEADERBOARD_FILE
        write_text_atomic(leaderboard, board.to_csv(index=False))
        submit(LogArtifact(STUDY_KEY, str(leaderboard)))
        try:
            started = [
                str(t) for t in summary.leaderboard["trial_id"] if str(t) not in self._trials
            ]
            plots = render_study_plots(summary, out / "plots", order=started + list(self._trials))
        except Exception as exc:  # noqa: BLE001 - plots are a nicety; the records are not
            self._log(f"mlflow: plots could not be drawn: {type(exc).__name__}: {exc}")
            plots = []
        for plot in plots:
            submit(LogArtifact(STUDY_KEY, str(plot), "plots"))
        if summary.best_model_path is not None:
            submit(
                LogModel(
                    STUDY_KEY,
                    archive=str(Path(summary.best_model_path).resolve()),
                    registered_model_name=self.registered_model_name,
                    alias=self.alias,
                    objective=summary.objective,
                    mode=summary.mode,
                    value=None if summary.best_value is None else float(summary.best_value),
                )
            )

    # ------------------------------------------------------------------ trials (from the callback)

    def record_event(self, event: TrialEvent) -> None:
        """Apply one trial event; a bug here is reported once and never reaches Ray's loop."""
        try:
            match event:
                case TrialStarted():
                    self._trial_started(event.trial_id, event.config)
                case TrialResult():
                    self._trial_result(event)
                case TrialEnded():
                    self._trial_ended(event)
        except Exception as exc:  # noqa: BLE001
            if not self._event_error_reported:
                self._event_error_reported = True
                self._log(
                    f"mlflow: a trial event could not be recorded: {type(exc).__name__}: {exc}"
                )

    def _trial_started(self, trial_id: str, config: dict[str, Any]) -> None:
        progress = self._trials.setdefault(trial_id, _TrialProgress())
        if progress.started:
            return
        progress.started = True
        key = f"trial:{trial_id}"
        tags = {"ray.trial_id": trial_id, "study_name": self.study_name, "tuner.role": "trial"}
        self._create_run(key, layout.trial_dirname(trial_id), tags, parent=STUDY_KEY)
        self.recorder.submit(LogBatch(key, params=self._hyperparameters_of(config)))

    def _trial_result(self, event: TrialResult) -> None:
        self._trial_started(event.trial_id, event.config)
        progress = self._trials[event.trial_id]
        result = event.result
        epoch = int(result.get("epoch", result.get("training_iteration", progress.epochs + 1)))
        now = now_ms()
        metrics = tuple(
            Metric(name, float(value), now, epoch)
            for name, value in result.items()
            if is_metric(name, value)
        )
        progress.epochs = max(progress.epochs, epoch)
        value = result.get(self.objective)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            progress.objective_values.append(float(value))
        if "train:images_per_second" in result:
            progress.images_per_second.append(float(result["train:images_per_second"]))
        progress.wall_seconds = float(result.get("time_total_s", progress.wall_seconds))
        self.recorder.submit(LogBatch(f"trial:{event.trial_id}", metrics=metrics, step=epoch))

    def _trial_ended(self, event: TrialEnded) -> None:
        self._trial_started(event.trial_id, event.config)
        progress = self._trials[event.trial_id]
        key = f"trial:{event.trial_id}"
        tags: dict[str, str] = {"epochs_run": str(progress.epochs)}
        if event.error is not None:
            status, tags["trial_status"] = "FAILED", "failed"
            tags["error"] = event.error.strip()[-4000:]
            self.recorder.submit(LogText(key, event.error, "error.txt"))
        else:
            pruned_at = self._pruned_epoch(event.trial_id)
            if pruned_at is None:
                status, tags["trial_status"] = "FINISHED", "finished"
            else:
                status, tags["trial_status"] = "KILLED", "pruned"
                tags["pruned_at_epoch"] = str(pruned_at)
        summary: dict[str, float] = {
            "wall_time_seconds": progress.wall_seconds,
            "epochs_run": progress.epochs,
        }
        if progress.objective_values:  # the trial's value, as the leaderboard ranks it
            best = max if self.mode == "max" else min
            summary["best_value"] = best(progress.objective_values)
        if progress.images_per_second:
            summary["images_per_second"] = sum(progress.images_per_second) / len(
                progress.images_per_second
            )
        now = now_ms()
        metrics = tuple(Metric(k, v, now, 0) for k, v in summary.items())
        self.recorder.submit(LogBatch(key, metrics=metrics, tags=tags))
        self.recorder.submit(EndRun(key, status, now))
