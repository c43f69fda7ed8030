"""Early stopping on validation accuracy, as the hyperparameter page defines it.

An epoch improves on the best accuracy so far when its accuracy is higher and the relative gain
`(accuracy - best) / best` is not smaller than `early_stopping_tolerance` (any gain counts while
the best is 0). Training stops after an epoch when at least `early_stopping_min_epochs` epochs
have run and the last `early_stopping_patience` epochs brought no improvement.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EarlyStopping"]


@dataclass
class EarlyStopping:
    """Tracks the best validation accuracy; `update` says whether to stop."""

    min_epochs: int
    patience: int
    tolerance: float
    best: float | None = None
    best_epoch: int = 0

    def improves(self, accuracy: float) -> bool:
        """Whether `accuracy` counts as an improvement on the best so far."""
        if self.best is None:
            return True
        if accuracy <= self.best:
            return False
        if self.best == 0:
            return True
        return (accuracy - self.best) / self.best >= self.tolerance

    def update(self, epoch: int, accuracy: float) -> bool:
        """Record `epoch`'s (1-based) validation accuracy; True when training should stop now."""
        if self.improves(accuracy):
            self.best, self.best_epoch = accuracy, epoch
        return epoch >= self.min_epochs and epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict[str, float | int | None]:
        """What `load_state_dict` needs to continue after a resume."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        """Continue from `state_dict()`."""
        best = state["best"]
        self.best = None if best is None else float(best)
        self.best_epoch = int(state["best_epoch"] or 0)
