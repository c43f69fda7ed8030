"""The Ray Tune callback that shows a study's progress from the driver.

Like `tuner.tracking`'s callback, it pickles to the study's key only (Ray keeps it in `tuner.pkl`
and gives it back on `Tuner.restore`) and finds this run's `TrialProgress` in `tuner.study.live`.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from tuner.study.live import live_study

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):  # type: ignore[misc]
    """Hands trial results, completions, retries and errors to the live study's `TrialProgress`."""

    def __init__(self, study_key: str) -> None:
        self.study_key = study_key

    def __reduce__(self) -> tuple[type[ProgressCallback], tuple[str]]:
        return (ProgressCallback, (self.study_key,))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        live = live_study(self.study_key)
        if live is not None:
            live.progress.trial_result(trial.trial_id, result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        live = live_study(self.study_key)
        if live is not None:
            live.progress.trial_completed(trial.trial_id, trial.last_result)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        live = live_study(self.study_key)
        if live is not None:
            live.progress.trial_retried(trial.trial_id, trial.num_failures, trial.error_file)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        live = live_study(self.study_key)
        if live is not None:
            live.progress.trial_failed(trial.trial_id, trial.error_file)
