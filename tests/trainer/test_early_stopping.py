"""Early stopping as the page defines it: relative tolerance, min epochs, patience."""

from __future__ import annotations

from trainer.early_stopping import EarlyStopping


def stop_epoch(stopper: EarlyStopping, accuracies: list[float]) -> int | None:
    for epoch, accuracy in enumerate(accuracies, start=1):
        if stopper.update(epoch, accuracy):
            return epoch
    return None


def test_stops_after_patience_epochs_without_improvement() -> None:
    stopper = EarlyStopping(min_epochs=1, patience=2, tolerance=0.0)
    assert stop_epoch(stopper, [0.3, 0.5, 0.5, 0.4, 0.9]) == 4
    assert (stopper.best, stopper.best_epoch) == (0.5, 2)


def test_never_stops_before_min_epochs() -> None:
    stopper = EarlyStopping(min_epochs=6, patience=1, tolerance=0.0)
    assert stop_epoch(stopper, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]) == 6


def test_improvements_reset_the_patience() -> None:
    stopper = EarlyStopping(min_epochs=1, patience=2, tolerance=0.0)
    assert stop_epoch(stopper, [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4]) is None


def test_gain_below_the_relative_tolerance_is_no_improvement() -> None:
    # 0.50 -> 0.52 is a relative gain of 4%.
    strict = EarlyStopping(min_epochs=1, patience=1, tolerance=0.05)
    assert stop_epoch(strict, [0.50, 0.52]) == 2
    assert strict.best == 0.50
    loose = EarlyStopping(min_epochs=1, patience=1, tolerance=0.04)
    assert stop_epoch(loose, [0.50, 0.52]) is None
    assert loose.best == 0.52


def test_any_gain_over_zero_accuracy_counts() -> None:
    stopper = EarlyStopping(min_epochs=1, patience=1, tolerance=0.5)
    assert stop_epoch(stopper, [0.0, 0.01]) is None


def test_state_survives_a_resume() -> None:
    first = EarlyStopping(min_epochs=1, patience=3, tolerance=0.0)
    stop_epoch(first, [0.5, 0.4])
    resumed = EarlyStopping(min_epochs=1, patience=3, tolerance=0.0)
    resumed.load_state_dict(first.state_dict())
    assert not resumed.update(3, 0.4)
    assert resumed.update(4, 0.45)
