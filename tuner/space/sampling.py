"""From validated search parameters to Optuna: distributions, the define-by-run function, samplers.

Optuna has no reverse-logarithmic scaling (SageMaker's `ReverseLogarithmic`, for values close to 1
such as `momentum` or `beta_2`); it is sampled as `1 - x` on a log scale under the Optuna name
`1-NAME`, and turned back into `x` before the trainer sees it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from trainer.hyperparameters import SPECS

__all__ = [
    "SAMPLERS",
    "Dimension",
    "build_sampler",
    "canonical",
    "sampler_option_problems",
    "suggest_config",
]


def canonical(name: str, value: Any) -> Any:
    """A hyperparameter value in the form used for sampling and comparison: the parsed scalar
    (`"1e-4"` -> 0.0001), or the contract's string form for lists and shapes (`"3,32,32"`)."""
    parsed = SPECS[name].parse(value)
    if isinstance(parsed, bool | int | float | str):
        return parsed
    return SPECS[name].render(parsed)


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter as Optuna sees it.

    `when` maps other hyperparameters to the values under which this one is sampled (all must hold).
    """

    name: str
    distribution: BaseDistribution
    reverse: bool = False
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def optuna_name(self) -> str:
        return f"1-{self.name}" if self.reverse else self.name

    def decode(self, value: Any) -> Any:
        """The hyperparameter value for Optuna's `value` of this dimension."""
        return 1.0 - value if self.reverse else value

    def encode(self, value: Any) -> Any:
        """Optuna's value for the hyperparameter value `value` (inverse of `decode`)."""
        return 1.0 - value if self.reverse else value

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """Whether this dimension is sampled given the values chosen (or fixed) so far."""
        return all(values.get(name) in allowed for name, allowed in self.when)


_SUGGEST: dict[type[BaseDistribution], Callable[[optuna.Trial, str, Any], Any]] = {
    FloatDistribution: lambda t, n, d: t.suggest_float(n, d.low, d.high, log=d.log, step=d.step),
    IntDistribution: lambda t, n, d: t.suggest_int(n, d.low, d.high, log=d.log, step=d.step),
    CategoricalDistribution: lambda t, n, d: t.suggest_categorical(n, d.choices),
}


def suggest_config(
    trial: optuna.Trial, dimensions: list[Dimension], fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """The define-by-run function: sample the active dimensions in order (conditions first)."""
    config: dict[str, Any] = {}
    for dim in dimensions:
        if dim.is_active({**fixed, **config}):
            raw = _SUGGEST[type(dim.distribution)](trial, dim.optuna_name, dim.distribution)
            config[dim.name] = dim.decode(raw)
    return config


def _grid(dimensions: list[Dimension]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for dim in dimensions:
        d = dim.distribution
        if isinstance(d, CategoricalDistribution):
            grid[dim.optuna_name] = list(d.choices)
        elif isinstance(d, IntDistribution):
            grid[dim.optuna_name] = list(range(d.low, d.high + 1, d.step))
        elif isinstance(d, FloatDistribution) and d.step is not None:
            n = round((d.high - d.low) / d.step)
            grid[dim.optuna_name] = [d.low + i * d.step for i in range(n + 1)]
    return grid


def _tpe(dims: list[Dimension], seed: int | None, parallel: int, **options: Any) -> Any:
    # multivariate + group model the joint and conditional structure of the space; the constant
    # liar keeps parallel workers from asking for the same point while trials are running.
    defaults: dict[str, Any] = {
        "multivariate": True,
        "group": True,
        "constant_liar": parallel > 1,
        "n_startup_trials": 10,
    }
    return optuna.samplers.TPESampler(seed=seed, **{**defaults, **options})


def _simple(cls: type[optuna.samplers.BaseSampler]) -> Callable[..., Any]:
    def build(dims: list[Dimension], seed: int | None, parallel: int, **options: Any) -> Any:
        return cls(seed=seed, **options)  # type: ignore[call-arg]

    build.__doc__ = cls.__doc__
    return build


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler for ask-and-tell: Optuna's calls `study.stop()` when the grid is exhausted,
    which is an error outside `study.optimize`; the searcher asks `is_exhausted` instead."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def _grid_sampler(dims: list[Dimension], seed: int | None, parallel: int, **options: Any) -> Any:
    return _GridSampler(_grid(dims), seed=seed, **options)


def _brute(dims: list[Dimension], seed: int | None, parallel: int, **options: Any) -> Any:
    return optuna.samplers.BruteForceSampler(seed=seed, **options)


# name -> (builder(dimensions, seed, max_parallel, **options), Optuna class for option checking,
#          package it needs beyond Optuna or None)
SAMPLERS: dict[str, tuple[Callable[..., Any], type, str | None]] = {
    "tpe": (_tpe, optuna.samplers.TPESampler, None),
    "random": (_simple(optuna.samplers.RandomSampler), optuna.samplers.RandomSampler, None),
    "grid": (_grid_sampler, optuna.samplers.GridSampler, None),
    "cmaes": (_simple(optuna.samplers.CmaEsSampler), optuna.samplers.CmaEsSampler, "cmaes"),
    "qmc": (_simple(optuna.samplers.QMCSampler), optuna.samplers.QMCSampler, "scipy"),
    "gp": (_simple(optuna.samplers.GPSampler), optuna.samplers.GPSampler, "scipy"),
    "nsgaii": (_simple(optuna.samplers.NSGAIISampler), optuna.samplers.NSGAIISampler, None),
    "bruteforce": (_brute, optuna.samplers.BruteForceSampler, None),
}

_NOT_OPTIONS = {"self", "seed", "search_space"}


def sampler_option_problems(name: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each option the named sampler's constructor does not take."""
    cls = SAMPLERS[name][1]
    accepted = set(inspect.signature(cls).parameters) - _NOT_OPTIONS
    problems = []
    for key in options:
        if key not in accepted:
            problems.append(
                (
                    key,
                    f"{cls.__name__} takes no option '{key}'; "
                    + (f"it takes {sorted(accepted)}" if accepted else "it takes no options"),
                )
            )
    return problems


def build_sampler(
    name: str,
    dimensions: list[Dimension],
    *,
    seed: int | None,
    max_parallel: int,
    options: Mapping[str, Any],
) -> optuna.samplers.BaseSampler:
    """Construct the Optuna sampler named `name` (a key of `SAMPLERS`)."""
    builder = SAMPLERS[name][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler: optuna.samplers.BaseSampler = builder(dimensions, seed, max_parallel, **options)
    return sampler
