"""The search-efficiency arithmetic of benchmarks/bench_tuner.py, on hand-made learning curves."""

from __future__ import annotations

import random

from benchmarks.bench_tuner import (
    _asha_replay_epochs,
    _epochs_to_reach,
    _expected_random_epochs,
)


def _row(history: list[float]) -> dict[str, object]:
    return {"epochs": len(history), "history": history, "best": max(history)}


def test_expected_random_epochs_is_the_mean_first_position_over_all_orders() -> None:
    pool = [_row([0.1] * 9), _row([0.5] * 9), _row([0.2] * 9)]
    # one of three reaches 0.5: it comes first, second or third, 9 epochs each -> 18 on average
    assert _expected_random_epochs(pool, 0.5) == 18.0
    assert _expected_random_epochs(pool, 0.9) is None


def test_epochs_to_reach_counts_every_epoch_run_until_the_first_trial_that_reaches() -> None:
    rows = [_row([0.1, 0.2]), _row([0.1]), _row([0.3, 0.6, 0.5]), _row([0.9])]
    assert _epochs_to_reach(rows, 0.6) == 6
    assert _epochs_to_reach(rows, 0.95) is None


def test_asha_replay_never_stops_trials_that_tie() -> None:
    pool = [_row([0.4] * 9) for _ in range(5)]
    assert _asha_replay_epochs(pool, 0.4, orders=20) == 9.0


def test_asha_replay_stops_trials_behind_at_a_rung_and_saves_epochs() -> None:
    # one good configuration ahead at every epoch; the rest below it and different from each other
    rng = random.Random(0)
    pool = [_row([0.5 + 0.01 * e for e in range(9)])]
    pool += [_row([rng.uniform(0.1, 0.3)] * 9) for _ in range(15)]
    replayed = _asha_replay_epochs(pool, 0.58, orders=50)
    expected = _expected_random_epochs(pool, 0.58)
    assert replayed is not None and expected == 9 * 17 / 2
    # the replay draws from 3 copies of the pool, so without stopping it would cost 9 * 49 / 4
    assert replayed < 0.8 * expected
