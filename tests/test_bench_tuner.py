"""The search-efficiency arithmetic of benchmarks/bench_tuner.py, on hand-made learning curves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks.bench_tuner import (
    _append,
    _asha_replay_epochs,
    _epochs_to_reach,
    _expected_random_epochs,
    _horizon,
    _print_retrained,
    _read_record,
    _training_seed,
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
    replayed = _asha_replay_epochs(pool, 0.58, orders=50, asha=(1, 3))  # rungs 1, 3
    expected = _expected_random_epochs(pool, 0.58)
    assert replayed is not None and expected == 9 * 17 / 2
    # the replay draws from 3 copies of the pool, so without stopping it would cost 9 * 49 / 4
    assert replayed < 0.8 * expected


def test_the_record_keeps_only_studies_that_trained_with_the_quickstarts_seed(
    tmp_path: Path,
) -> None:
    record = tmp_path / "efficiency.jsonl"
    trials = [_row([0.3, 0.4])]
    quickstart_seed = _training_seed()
    other = quickstart_seed + 1
    # the first protocol wrote no training seed: each study trained with its own seed
    lines = [
        {"arm": "random", "seed": quickstart_seed, "trials": trials},
        {"arm": "tpe+asha", "seed": quickstart_seed, "trials": trials},
        {"arm": "tpe+asha", "seed": other, "trials": trials},
        {"arm": "tpe+asha", "seed": other + 1, "training_seed": other, "trials": trials},
    ]
    record.write_text("".join(json.dumps(line) + "\n" for line in lines))
    _append(record, "tpe+asha", other + 2, trials)
    # a configuration retrained with other seeds measures the noise: kept whatever its seed
    _append(record, "retrain", other, trials, training_seed=other)

    kept = _read_record(record)

    assert sorted(kept) == [
        ("random", quickstart_seed),
        ("retrain", other),
        ("tpe+asha", quickstart_seed),
        ("tpe+asha", other + 2),
    ]
    # a study run now records the quickstart's seed
    assert json.loads(record.read_text().splitlines()[-2])["training_seed"] == quickstart_seed


def test_the_retrained_spread_counts_only_the_pools_best_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    best = {**_row([0.3, 0.5]), "config": {"learning_rate": 0.01}}
    pool = [best, {**_row([0.2, 0.4]), "config": {"learning_rate": 0.1}}]
    retrained = [
        {**_row([0.3, 0.4]), "config": {"learning_rate": 0.01}},
        {**_row([0.2, 0.45]), "config": {"learning_rate": 0.01}},
        {**_row([0.9, 0.9]), "config": {"learning_rate": 0.5}},  # another pool's best: ignored
    ]

    _print_retrained(pool, retrained)

    line = capsys.readouterr().out
    assert "trained with 3 seeds" in line
    assert "0.5000, 0.4000, 0.4500; mean 0.4500, standard deviation 0.0500" in line


def test_a_longer_horizon_moves_the_learning_rate_steps_in_proportion() -> None:
    # the quickstart trains 9 epochs with the rate dropping after epochs 6 and 8
    assert _horizon(27) == {"epochs": 27, "lr_scheduler_step": "18,24"}
    assert _horizon(9) == {} and _horizon(None) == {}
