"""A space-filling design over a search space, and the normalised coordinates the simulator uses.

A configuration's searched values map to the unit cube per dimension as Optuna samples them: a
log-scaled range on its logarithm, a reverse-logarithmic one (`1 - x` on a log scale) likewise, a
categorical by its index. The design is a scrambled Sobol sequence over every dimension of the
space; a conditional dimension takes its coordinate only in the configurations where its
condition holds, so each optimizer branch gets its share (a quarter each for four optimizers) and
its own parameters are spread over their whole ranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tuner.space import Dimension

__all__ = ["from_unit", "sobol_design", "to_unit"]


def from_unit(dim: Dimension, u: float) -> Any:
    """The hyperparameter value at coordinate `u` in [0, 1) of `dim` (Optuna's scale)."""
    d = dim.distribution
    if isinstance(d, CategoricalDistribution):
        return dim.decode(d.choices[min(int(u * len(d.choices)), len(d.choices) - 1)])
    if not isinstance(d, FloatDistribution | IntDistribution):
        raise TypeError(f"{dim.name}: unsupported distribution {d!r}")
    if d.log:
        value = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
    else:
        value = d.low + u * (d.high - d.low)
    if isinstance(d, IntDistribution):
        return dim.decode(min(d.high, d.low + round((value - d.low) / d.step) * d.step))
    if d.step is not None:
        value = d.low + round((value - d.low) / d.step) * d.step
    return dim.decode(min(max(value, d.low), d.high))


def to_unit(dim: Dimension, value: Any) -> float:
    """The coordinate in [0, 1] of a numeric hyperparameter value (inverse of `from_unit`)."""
    d = dim.distribution
    if not isinstance(d, FloatDistribution | IntDistribution):
        raise TypeError(f"{dim.name}: a categorical has no coordinate, it is matched exactly")
    x = float(dim.encode(value))
    if d.log:
        return (math.log(x) - math.log(d.low)) / (math.log(d.high) - math.log(d.low))
    return (x - d.low) / (d.high - d.low) if d.high > d.low else 0.0


def sobol_design(
    dimensions: Sequence[Dimension], base: Mapping[str, Any], n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """`n` configurations (a power of two keeps Sobol's balance) of the active dimensions."""
    from scipy.stats import qmc

    points = qmc.Sobol(d=len(dimensions), scramble=True, seed=seed).random(n)
    design = []
    for row in points:
        config: dict[str, Any] = {}
        for dim, u in zip(dimensions, row, strict=True):
            if dim.is_active({**base, **config}):
                config[dim.name] = from_unit(dim, float(u))
        design.append(config)
    return design
