"""The Ray Tune callback that feeds a study's `StudyTracker` from the driver.

Ray pickles the `RunConfig` (callbacks included) into the experiment directory and restores it
from there on `Tuner.restore`, so the callback holds only the study's key and looks the live tracker
up in `tuner.tracking`'s registry: a restored study records through the tracker that the resuming
process created, and a study resumed without tracking records nothing.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

__all__ = ["TrackingCallback"]


class TrackingCallback(Callback):  # type: ignore[misc]
    """Forwards trial start/result/complete/error events to the study's tracker (never raises)."""

    def __init__(self, study_key: str) -> None:
        self._study_key = study_key

    def __reduce__(self) -> tuple[type[TrackingCallback], tuple[str]]:
        return (TrackingCallback, (self._study_key,))

    def _forward(self, method: str, *args: Any) -> None:
        from tuner.tracking.tracker import live_tracker

        tracker = live_tracker(self._study_key)
        if tracker is not None:
            tracker.handle_event(method, *args)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward("trial_started", trial)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self._forward("trial_result", trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward("trial_ended", trial, None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._forward("trial_ended", trial, _error_text(trial))


def _error_text(trial: Any) -> str:
    """The trial's error as Ray wrote it (its error file), or a line saying it is unknown."""
    path = getattr(trial, "error_file", None)
    if path:
        try:
            with open(path) as handle:
                return handle.read()
        except OSError:
            pass
    return f"trial {trial.trial_id} failed (Ray wrote no error file)"
