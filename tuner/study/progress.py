"""What decides when trials and the study stop, and what the user sees meanwhile.

- `RecordingASHA`: Ray's ASHA on `epoch`, remembering at which epoch it stopped each trial.
- `CompletionCriteria`: ends the study at a target objective value or when the best value has not
  improved for N finished trials (SageMaker's `TuningJobCompletionCriteria`). It ends the study
  the way SageMaker does: no new trials start, the running ones finish and write their models.
- `ProgressCallback`: one line per finished, pruned or failed trial, with the best so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from tuner.layout import PrunedLog, TrialFiles

__all__ = ["CompletionCriteria", "ProgressCallback", "RecordingASHA"]


class RecordingASHA(ASHAScheduler):
    """ASHA (`time_attr="epoch"`) that records every early stop in a `PrunedLog`.

    A trial is never stopped at its own last epoch: it ends by itself there, and stopping it would
    interrupt `fit` before it writes `model.tar.gz`.
    """

    def __init__(self, pruned: PrunedLog, epochs: int, **kwargs: Any) -> None:
        super().__init__(time_attr="epoch", **kwargs)
        self.pruned, self.epochs = pruned, epochs

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self._trial_info:  # a trial restored by `--resume`
            self.on_trial_add(tune_controller, trial)
        decision: str = super().on_trial_result(tune_controller, trial, result)
        epoch = result.get("epoch")
        if epoch is not None and epoch >= int(trial.config.get("epochs", self.epochs)):
            return TrialScheduler.CONTINUE
        if decision == TrialScheduler.STOP and epoch is not None and epoch < self._max_t:
            self.pruned.record(trial.trial_id, int(epoch))
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._trial_info.pop(trial.trial_id, None)


class CompletionCriteria:
    """Ends the study at `target` or after `patience` finished trials without improvement."""

    def __init__(self, metric: str, mode: str, target: float | None, patience: int | None) -> None:
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.target, self.patience = target, patience
        self.best = -math.inf
        self.since_best = 0
        self.reason: str | None = None

    def observe(self, result: dict[str, Any]) -> None:
        """Look at one epoch's result for the target value."""
        value = result.get(self.metric)
        if (
            self.target is not None
            and value is not None
            and self.sign * value >= self.sign * self.target
        ):
            self.reason = f"{self.metric} reached the target {self.target} ({value:.4f})"

    def trial_finished(self, value: float | None) -> None:
        """Count one more finished or pruned trial whose best objective was `value`."""
        if value is not None and math.isfinite(value) and self.sign * value > self.best:
            self.best, self.since_best = self.sign * value, 0
            return
        self.since_best += 1
        if self.patience is not None and self.since_best >= self.patience:
            self.reason = f"the best {self.metric} has not improved for {self.since_best} trials"

    @property
    def met(self) -> bool:
        """Whether the study should start no more trials."""
        return self.reason is not None


def _best_of(results: list[dict[str, Any]], metric: str, sign: float) -> float | None:
    values = [r[metric] for r in results if isinstance(r.get(metric), int | float)]
    return max(values, key=lambda v: sign * v) if values else None


class ProgressCallback(Callback):
    """Prints one line per trial that ends, e.g.

    `[5/12] trial 3f2a0c1d pruned at epoch 1/9   validation:accuracy=0.2810  best 0.4410 (9e1b)`
    """

    def __init__(
        self,
        metric: str,
        mode: str,
        max_trials: int,
        max_t: int,
        pruned: PrunedLog,
        stopper: CompletionCriteria,
        log: Callable[[str], None] = print,
    ) -> None:
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.max_trials, self.max_t = max_trials, max_t
        self.pruned, self.stopper, self.log = pruned, stopper, log
        self.done = 0
        self.ended: set[str] = set()  # trials already counted (a resumed study re-ends some)
        self.best: tuple[float, str] | None = None
        self.histories: dict[str, list[dict[str, Any]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["log"] = print
        return state

    def resume_from(self, records: list[Any]) -> None:
        """Count the trials an earlier run of this study already ended (`TrialRecord`s)."""
        for record in records:
            if record.status == "running":
                continue
            self.ended.add(record.trial_id)
            self.done += 1
            value = record.value
            if value is not None and (
                self.best is None or self.sign * value > self.sign * self.best[0]
            ):
                self.best = (value, record.trial_id)
            self.stopper.trial_finished(value)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.stopper.observe(result)
        self.histories.setdefault(trial.trial_id, []).append(
            {k: result[k] for k in ("epoch", self.metric) if k in result}
        )

    def _line(self, trial: Any, what: str) -> str:
        self.done += 1
        return f"[{self.done}/{self.max_trials}] trial {trial.trial_id} {what}"

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        result = trial.last_result or {}
        history = self.histories.get(trial.trial_id) or [result]
        value = _best_of(history, self.metric, self.sign)
        epoch = int(result.get("epoch", 0) or 0)
        pruned_at = self.pruned.epoch(trial.trial_id)
        study_dir = self.pruned.study_dir
        ended = TrialFiles(study_dir, trial.trial_id).has_outcome()
        if pruned_at is None and not ended and epoch < self.max_t:
            # stopped by the study (a limit was reached), not by ASHA: an early stop all the same
            self.pruned.record(trial.trial_id, epoch)
            pruned_at = epoch
        what = (
            f"pruned at epoch {pruned_at}/{self.max_t}"
            if pruned_at is not None
            else f"finished {epoch} epoch{'s' if epoch != 1 else ''}"
        )
        if value is not None and (
            self.best is None or self.sign * value > self.sign * self.best[0]
        ):
            self.best = (value, trial.trial_id)
        self.stopper.trial_finished(value)
        shown = f"{value:.4f}" if value is not None else "n/a"
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else "no best yet"
        self.log(f"{self._line(trial, what):<52} {self.metric}={shown}  {best}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        message = "see its error.txt"
        if trial.error_file:
            try:
                with open(trial.error_file) as f:
                    lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
                message = lines[-1][:300] if lines else message
            except OSError:
                pass
        self.stopper.trial_finished(None)
        self.log(f"{self._line(trial, 'failed')}: {message}")
