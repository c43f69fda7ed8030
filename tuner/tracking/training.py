"""MLflow record of one `tune train` run: params, per-epoch metrics, the model.

It goes through the same `Recorder` as a study's records: when the store cannot be reached, the
records wait in `OUTPUT/mlflow-spool/` (beside `model.tar.gz`) and `tune results OUTPUT --sync`
records them later.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuner.tracking.recorder import Recorder
from tuner.tracking.records import CreateRun, EndRun, LogBatch, LogModel, Metric, is_metric, now_ms
from tuner.tracking.store import artifact_location, fail_fast_over_http
from tuner.tracking_uri import absolute_tracking_uri

if TYPE_CHECKING:
    from trainer.hyperparameters import Hyperparameters
    from trainer.loop import FitResult

__all__ = ["record_training_run"]


def record_training_run(
    hp: Hyperparameters,
    result: FitResult,
    *,
    tracking_uri: str,
    experiment_name: str,
    registered_model_name: str | None = None,
    folder: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> str | None:
    """Record one training run (no parent): params, per-epoch metrics, summary metrics, the model.

    `folder` keeps the run's tracking files (default: the folder of `result.model_path`). Returns
    the run id, or None when the store could not be reached: then the records are spooled there
    (reported; the model is unaffected)."""
    report = log or (lambda message: print(message, file=sys.stderr))
    uri = absolute_tracking_uri(tracking_uri)
    fail_fast_over_http(uri)
    folder = Path(folder) if folder is not None else Path(result.model_path).resolve().parent
    key = f"train:{uuid.uuid4().hex[:12]}"
    recorder = Recorder(
        uri,
        folder,
        log=report,
        background=False,
        outage="the model is written; what is not recorded is spooled to {spool}",
    )
    submit = recorder.submit
    tags = {"tuner.role": "train", "stopped_early": str(result.stopped_early)}
    location = artifact_location(uri, experiment_name)
    submit(CreateRun(key, experiment_name, artifact_location=location, tags=tags))
    submit(LogBatch(key, params=hp.to_strings()))
    now = now_ms()
    for index, row in enumerate(result.history):
        epoch = int(row.get("epoch", index + 1))
        metrics = tuple(
            Metric(name, float(value), now, epoch)
            for name, value in row.items()
            if is_metric(name, value)
        )
        submit(LogBatch(key, metrics=metrics, step=epoch))
    rates = [
        float(row["train:images_per_second"])
        for row in result.history
        if "train:images_per_second" in row
    ]
    summary = {
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(len(result.history)),
        "wall_time_seconds": sum(float(row.get("epoch_seconds", 0.0)) for row in result.history),
    }
    if rates:
        summary["images_per_second"] = sum(rates) / len(rates)
    submit(LogBatch(key, metrics=tuple(Metric(k, v, now, 0) for k, v in summary.items())))
    submit(
        LogModel(
            key,
            archive=str(Path(result.model_path).resolve()),
            registered_model_name=registered_model_name,
            objective="validation:accuracy",
            value=result.metrics.get("validation:accuracy"),
        )
    )
    submit(EndRun(key, "FINISHED", now_ms()))
    if recorder.close():
        return None
    run_id = recorder.run_id(key)
    report(f"mlflow: recorded run {run_id} in experiment {experiment_name!r} at {uri}")
    return run_id
