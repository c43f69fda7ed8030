"""ASHA on `epoch` (Ray's `ASHAScheduler`), remembering at which epoch it stopped each trial."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from tuner.layout import PrunedLog

__all__ = ["RecordingASHA"]


class RecordingASHA(ASHAScheduler):
    """ASHA (`time_attr="epoch"`) that records every early stop in a `PrunedLog`.

    A trial is never stopped at its own last epoch (`config["epochs"]`, else `default_epochs`): it
    ends by itself there, and stopping it would interrupt `fit` before it writes `model.tar.gz`.
    `max_t` is the space's; stops before it are early stops.

    Ray builds the scheduler once and pickles it into the study (`tuner.pkl`), so on a resume a
    trial that was running comes back to a scheduler that never saw it added: `known` (this
    class's own bookkeeping) adds such a trial on its first result, through ASHA's public
    `on_trial_add`, and leaves ASHA alone for trials it does not hold.
    """

    def __init__(
        self,
        pruned: PrunedLog,
        *,
        default_epochs: int,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
    ) -> None:
        super().__init__(
            time_attr="epoch",
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
        self.pruned, self.default_epochs, self.max_t = pruned, default_epochs, max_t
        self.known: set[str] = set()

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        self.known.add(trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self.known:  # a trial restored by `--resume`
            self.on_trial_add(tune_controller, trial)
        decision: str = super().on_trial_result(tune_controller, trial, result)
        epoch = result.get("epoch")
        if epoch is not None and epoch >= int(trial.config.get("epochs", self.default_epochs)):
            return TrialScheduler.CONTINUE
        if decision == TrialScheduler.STOP and epoch is not None and epoch < self.max_t:
            self.pruned.record(trial.trial_id, int(epoch))
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        if trial.trial_id in self.known:
            self.known.discard(trial.trial_id)
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if trial.trial_id in self.known:
            self.known.discard(trial.trial_id)
            super().on_trial_remove(tune_controller, trial)
