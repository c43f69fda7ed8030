"""Replay whole studies against a recorded learning-curve table, in simulated time.

A simulated study is the real one with the training replaced by a table lookup:

- the sampler is built by `tuner.space.build_sampler` from the same name and options as the
  `sampler:` section, and asked with the space's own define-by-run function;
- every epoch is reported to Optuna as an intermediate value, an ASHA-stopped trial is told
  `PRUNED` and a finished one its last value, as `StudySearcher` does;
- pruning is Ray's own `ASHAScheduler` (`time_attr="epoch"`, the `pruner:` section's grace period
  and reduction factor, `max_t` the space's epochs), fed results in simulated-time order, with a
  trial never stopped at its own last epoch, as `RecordingASHA` does;
- `max_parallel` workers run trials; an epoch costs its recorded CPU seconds, so trials end and
  new ones are asked for in the order they would on the machine that recorded the table.

A proposed configuration is answered by the recorded curves of its nearest recorded neighbour:
categorical values must match exactly, numeric ones are compared on Optuna's scale normalised to
[0, 1] (log ranges on their logarithm). One of that configuration's seeds is drawn per trial, so
the seed noise of real training stays in.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from benchmarks.blackbox.design import to_unit
from tuner.space import SearchSpace, build_sampler

__all__ = ["Method", "Table", "Trace", "simulate"]


class Table:
    """A recorded table: per configuration, its searched values and (seeds, epochs) curves."""

    def __init__(
        self,
        frame: pd.DataFrame,
        space: SearchSpace,
        metric: str | None = None,
        cost: str = "cpu_seconds",
    ) -> None:
        """`metric` is the space's objective unless given; `cost` is an epoch's cost."""
        self.space = space
        metric = metric or space.objective
        self.epochs = int(frame["epoch"].max())
        names = [d.name for d in space.dimensions]
        configs, curves, costs = [], [], []
        for config_id, rows in frame.groupby("config", sort=True):
            runs = [r for _, r in rows.groupby("seed", sort=True) if len(r) == self.epochs]
            if not runs:
                continue  # still being recorded
            first = rows.iloc[0]
            configs.append(
                {
                    "id": int(config_id),  # type: ignore[call-overload]
                    **{n: _scalar(first[n]) for n in names if not _missing(first[n])},
                }
            )
            curves.append(np.stack([r.sort_values("epoch")[metric].to_numpy() for r in runs]))
            costs.append(np.stack([r.sort_values("epoch")[cost].to_numpy() for r in runs]))
        if not configs:
            raise ValueError("the table holds no complete run")
        self.configs = [{k: v for k, v in c.items() if k != "id"} for c in configs]
        self.ids = [c["id"] for c in configs]
        self.curves, self.costs = curves, costs
        self.seeds = min(len(c) for c in curves)
        sign = 1.0 if space.mode == "max" else -1.0
        # A configuration's quality: its final value averaged over its training seeds
        self.quality = np.array([c[:, -1].mean() for c in curves])
        self.sign = sign
        self._index = self._build_index()

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, **kwargs: Any) -> Table:
        return cls(pd.read_csv(path), space, **kwargs)

    def _key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        key = []
        for dim in self.space.dimensions:
            if dim.name not in config:
                continue
            if isinstance(dim.distribution, CategoricalDistribution):
                key.append((dim.name, config[dim.name]))
            else:
                key.append((dim.name, None))
        return tuple(key)

    def _coords(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [
                to_unit(d, config[d.name])
                for d in self.space.dimensions
                if d.name in config and not isinstance(d.distribution, CategoricalDistribution)
            ]
        )

    def _build_index(self) -> dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, config in enumerate(self.configs):
            groups.setdefault(self._key(config), []).append(i)
        return {
            key: (np.array(rows), np.stack([self._coords(self.configs[i]) for i in rows]))
            for key, rows in groups.items()
        }

    def nearest(self, config: Mapping[str, Any]) -> int:
        """The row of the recorded configuration nearest to `config` in its categorical branch."""
        entry = self._index.get(self._key(config))
        if entry is None:
            raise ValueError(f"the table has no configuration with {dict(self._key(config))}")
        rows, coords = entry
        if coords.shape[1] == 0:
            return int(rows[0])
        distance = ((coords - self._coords(config)) ** 2).sum(axis=1)
        return int(rows[int(np.argmin(distance))])

    def level(self, top: float) -> float:
        """The quality a configuration needs to be in the table's top fraction `top`."""
        ranked = np.sort(self.sign * self.quality)[::-1]
        k = max(1, math.floor(top * len(ranked)))
        return float(self.sign * ranked[k - 1])

    @property
    def best(self) -> float:
        return float(self.quality[np.argmax(self.sign * self.quality)])

    @property
    def worst(self) -> float:
        """The poorest configuration's quality: a study's score before it finished a trial."""
        return float(self.quality[np.argmin(self.sign * self.quality)])


@dataclass(frozen=True)
class Method:
    """A sampler (Optuna name + options, as in the `sampler:` section) with ASHA or no pruning."""

    name: str
    sampler: str
    options: Mapping[str, Any] = field(default_factory=dict)
    asha: tuple[int, float] | None = None  # (grace_period, reduction_factor)


@dataclass
class Trace:
    """What a simulated study did: after each finished trial, the cumulative epochs trained and
    the quality of the configuration the study would pick (its best finished trial)."""

    epochs: list[int] = field(default_factory=list)
    chosen: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    trials: list[tuple[int, int, int]] = field(default_factory=list)  # (row, seed, epochs run)

    def best_at(self, budgets: np.ndarray, floor: float) -> np.ndarray:
        """The chosen configuration's quality at each budget in epochs (`floor` before any)."""
        idx = np.searchsorted(np.array(self.epochs), budgets, side="right") - 1
        values = np.array(self.chosen + [floor])  # index -1 reads `floor`
        return values[idx]

    def epochs_to(self, level: float, sign: float = 1.0) -> float:
        """Cumulative epochs when the chosen configuration first reached `level` (inf: never)."""
        for epochs, quality in zip(self.epochs, self.chosen, strict=True):
            if sign * quality >= sign * level - 1e-12:
                return float(epochs)
        return math.inf


class _Handle:
    """What Ray's ASHA reads of a trial."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.config: dict[str, Any] = {}


def simulate(
    space: SearchSpace,
    table: Table,
    method: Method,
    *,
    budget: int,
    max_parallel: int,
    seed: int,
    max_trials: int | None = None,
    points: Sequence[Mapping[str, Any]] = (),
    training_seed: int | None = None,
) -> Trace:
    """One study of `method` until `budget` epochs have been trained in all (or `max_trials` have
    ended).

    `points` are enqueued first (the `warm_start.points` of a space); `training_seed` answers every
    trial with that recorded seed instead of a random one (a real study trains all its trials with
    `study.seed`).
    """
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = build_sampler(
            method.sampler,
            list(space.dimensions),
            seed=seed,
            max_parallel=max_parallel,
            options=method.options,
        )
        study = optuna.create_study(
            sampler=sampler, direction="maximize" if space.mode == "max" else "minimize"
        )
    for point in points:
        study.enqueue_trial(space.optuna_params(point), skip_if_exists=True)
    scheduler = None
    if method.asha is not None:
        grace, factor = method.asha
        scheduler = ASHAScheduler(
            time_attr="epoch",
            metric=space.objective,
            mode=space.mode,
            max_t=space.max_t,
            grace_period=grace,
            reduction_factor=factor,
        )
    sign = table.sign
    trace = Trace()
    events: list[tuple[float, int, dict[str, Any]]] = []
    clock, trained, started = 0.0, 0, 0
    best: tuple[float, float] | None = None  # (observed value, quality) of the chosen trial

    def start() -> None:
        nonlocal started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask()
            config = space.suggest(trial)
        row = table.nearest(config)
        runs = len(table.curves[row])
        run = training_seed if training_seed is not None else int(rng.integers(runs))
        handle = _Handle(str(started))
        if scheduler is not None:
            scheduler.on_trial_add(None, handle)  # type: ignore[arg-type]
        state = {"trial": trial, "row": row, "seed": run, "epoch": 0, "handle": handle}
        heapq.heappush(events, (clock + table.costs[row][run, 0], started, state))
        started += 1

    def more() -> bool:
        return trained < budget and (max_trials is None or started < max_trials)

    for _ in range(max_parallel):
        if more():
            start()
    while events and trained < budget:
        clock, order, state = heapq.heappop(events)
        row, run = state["row"], state["seed"]
        state["epoch"] += 1
        epoch, trained = state["epoch"], trained + 1
        value = float(table.curves[row][run, epoch - 1])
        trial = state["trial"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial.report(value, epoch)
        result = {"epoch": epoch, space.objective: value}
        last = epoch >= table.epochs
        decision = TrialScheduler.CONTINUE
        if scheduler is not None:
            decision = scheduler.on_trial_result(None, state["handle"], result)  # type: ignore[arg-type]
        if last:
            if scheduler is not None:
                scheduler.on_trial_complete(None, state["handle"], result)  # type: ignore[arg-type]
            study.tell(trial, value)
            observed = max(sign * v for v in table.curves[row][run, :epoch])
            if best is None or observed > best[0]:
                best = (observed, float(table.quality[row]))
            trace.epochs.append(trained)
            trace.chosen.append(best[1])
            trace.seconds.append(clock)
            trace.trials.append((row, run, epoch))
        elif decision == TrialScheduler.STOP:
            study.tell(trial, None, state=TrialState.PRUNED)
            trace.trials.append((row, run, epoch))
        else:
            heapq.heappush(events, (clock + table.costs[row][run, epoch], order, state))
            continue
        if more():
            start()
    return trace


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
