"""ASHA's epochs, simulated with Ray's own `ASHAScheduler` (no Ray started).

Async ASHA promotes the first trials to reach a rung (nothing recorded there yet to compare with),
so the closed form (`n / rf^k` of the trials reach rung k) underestimates the epochs a study runs;
`simulate_asha` runs a few hundred studies with random trial scores through the scheduler instead.
`tune run` uses it for the study's ETA, `--dry-run` for the forecast.

A trial's score at an epoch is its random quality plus noise of its own. Real learning curves cross:
on the quickstart's recorded curves (benchmarks/blackbox/tables/quickstart.csv, 192 runs) a run's
accuracies at epochs e and 2e rank the runs with Spearman 0.72-0.77, and ASHA stops more trials at
its later rungs than it would if each kept its rank (43.7 epochs against 50.7 for 12 trials with
rungs 1, 2, 4, 8, replayed on the table). The noise is sized to that correlation.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuner.space import SearchSpace

__all__ = [
    "Simulation",
    "asha_settings",
    "expected_epochs_per_trial",
    "rungs",
    "simulate_asha",
    "trial_epochs",
]

_SIMULATIONS = 200
# quality ~ U(0, 1) has variance 1/12; noise of sd 1/6 makes two epochs' scores correlate
# (1/12) / (1/12 + 1/36) = 0.75
_EPOCH_NOISE = 1 / 6


@dataclass(frozen=True)
class Simulation:
    """Simulated studies: epochs each trial ran (mean) and the studies' wall times (seconds)."""

    epochs_per_trial: float
    epochs_total: float
    wall_seconds: list[float]

    @property
    def wall_mean(self) -> float:
        return statistics.fmean(self.wall_seconds)

    def wall_percentile(self, q: float) -> float:
        ordered = sorted(self.wall_seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _SimTrial:
    """What Ray's ASHA reads of a trial."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.config: dict[str, Any] = {}


def simulate_asha(
    *,
    trials: int,
    parallel: int,
    epochs: int,
    asha: tuple[int, int, float] | None,
    epoch_seconds: Callable[[random.Random], float] = lambda rng: 1.0,
    setup_seconds: float = 0.0,
    runs: int = _SIMULATIONS,
    seed: int = 0,
) -> Simulation:
    """Run `runs` studies of `trials` trials of at most `epochs` epochs, `parallel` at a time,
    under Ray's `ASHAScheduler` (`asha` = (max_t, grace_period, reduction_factor); None: no
    pruning). A trial's score is a random quality plus noise at each epoch (see the module's
    docstring); its seconds per epoch are `epoch_seconds(rng)`, plus `setup_seconds` once."""
    from ray.tune.schedulers import ASHAScheduler

    rng = random.Random(seed)
    walls, epoch_counts = [], []
    for _ in range(runs):
        scheduler = None
        if asha is not None:
            max_t, grace, rf = asha
            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric="score",
                mode="max",
                max_t=max_t,
                grace_period=grace,
                reduction_factor=rf,
            )
        wall, total = _one_study(
            scheduler, rng, trials, parallel, epochs, epoch_seconds, setup_seconds
        )
        walls.append(wall)
        epoch_counts.append(total)
    mean_total = statistics.fmean(epoch_counts)
    return Simulation(mean_total / max(1, trials), mean_total, walls)


def _one_study(
    scheduler: Any,
    rng: random.Random,
    trials: int,
    parallel: int,
    epochs: int,
    epoch_seconds: Callable[[random.Random], float],
    setup_seconds: float,
) -> tuple[float, int]:
    """One simulated study: (wall seconds, epochs run)."""
    from ray.tune.schedulers import TrialScheduler

    started, total_epochs, clock = 0, 0, 0.0
    events: list[tuple[float, int, int, float, float]] = []  # (time, id, epoch, s/epoch, score)

    def start(now: float) -> None:
        nonlocal started
        trial = _SimTrial(str(started))
        if scheduler is not None:
            scheduler.on_trial_add(None, trial)
        per_epoch = epoch_seconds(rng)
        score = rng.random()
        heapq.heappush(events, (now + setup_seconds + per_epoch, started, 1, per_epoch, score))
        started += 1

    while started < min(parallel, trials):
        start(0.0)
    while events:
        clock, trial_id, epoch, per_epoch, score = heapq.heappop(events)
        total_epochs += 1
        ended = epoch >= epochs
        trial = _SimTrial(str(trial_id))
        if scheduler is not None and not ended:
            noisy = score + rng.gauss(0.0, _EPOCH_NOISE)
            result = {"epoch": epoch, "score": noisy * epoch / (epoch + 1)}
            ended = scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP
        if ended:
            if scheduler is not None:
                scheduler.on_trial_remove(None, trial)
            if started < trials:
                start(clock)
        else:
            heapq.heappush(events, (clock + per_epoch, trial_id, epoch + 1, per_epoch, score))
    return clock, total_epochs


def asha_settings(space: SearchSpace) -> tuple[int, int, float] | None:
    """(max_t, grace_period, reduction_factor) of the space's ASHA; None without pruning."""
    if space.pruner.name != "asha":
        return None
    return space.max_t, space.pruner.grace_period, space.pruner.reduction_factor


def trial_epochs(space: SearchSpace) -> int:
    """The most epochs a trial runs (the largest it can sample, ASHA's max_t at most)."""
    epochs = space.epochs  # the largest a trial can sample
    return min(epochs, space.max_t) if space.pruner.name == "asha" else epochs


def expected_epochs_per_trial(space: SearchSpace, parallel: int | None = None) -> float:
    """The epochs a trial of `space` runs on average under its pruner (simulated)."""
    sim = simulate_asha(
        trials=space.limits.max_trials,
        parallel=parallel or space.limits.max_parallel,
        epochs=trial_epochs(space),
        asha=asha_settings(space),
        runs=100,
    )
    return sim.epochs_per_trial


def rungs(space: SearchSpace) -> list[int]:
    """ASHA's milestones (the epochs at which trials are compared), as Ray's ASHAScheduler
    computes them: grace_period * reduction_factor**k while at most max_t."""
    if space.pruner.name != "asha":
        return []
    grace, rf = space.pruner.grace_period, space.pruner.reduction_factor
    count = int(math.log(space.max_t / grace) / math.log(rf) + 1)
    return [round(grace * rf**k) for k in range(count)]
