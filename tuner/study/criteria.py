"""When a study stops starting trials: SageMaker's `TuningJobCompletionCriteria`."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CompletionCriteria"]


class CompletionCriteria:
    """Ends the study at `target` or after `patience` finished trials without improvement.

    It ends the study the way SageMaker does: no new trials start (`StudySearcher` asks `met`),
    the running ones finish and write their models.
    """

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
