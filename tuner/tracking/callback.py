"""The Ray Tune callback that feeds a study's tracker from the driver (see `tuner.tracking.events`
for why it holds the study's key only)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from tuner.tracking.events import TrialEnded, TrialEvent, TrialResult, TrialStarted, live_tracker

__all__ = ["TrackingCallback"]


class TrackingCallback(Callback):  # type: ignore[misc]
    """Forwards trial start/result/complete/error events to the study's tracker (never raises)."""

    def __init__(self, study_key: str) -> None:
        self.study_key = study_key

    def __reduce__(self) -> tuple[type[TrackingCallback], tuple[str]]:
        return (TrackingCallback, (self.study_key,))

    def _forward(self, event: TrialEvent) -> None:
        tracker = live_tracker(self.study_key)
        if tracker is not None:
            tracker.record_event(event)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward(TrialStarted(trial.trial_id, dict(trial.config)))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self._forward(TrialResult(trial.trial_id, dict(trial.config), result))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward(TrialEnded(trial.trial_id, dict(trial.config)))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward(TrialEnded(trial.trial_id, dict(trial.config), _error_text(trial)))


def _error_text(trial: Any) -> str:
    """The trial's error as Ray wrote it (its error file), or a line saying it is unknown."""
    path = trial.error_file
    if path:
        try:
            with open(path) as handle:
                return handle.read()
        except OSError:
            pass
    return f"trial {trial.trial_id} failed (Ray wrote no error file)"
