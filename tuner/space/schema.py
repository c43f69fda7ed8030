"""The search-space YAML's structure as pydantic models, one per top-level section.

Only structure and simple ranges live here; the rules that need the trainer's hyperparameter
contract (names, values, cross-field rules) are checked in `tuner.space`.
Every model forbids unknown keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SECTIONS",
    "Categorical",
    "Continuous",
    "DataSection",
    "Integer",
    "LimitsSection",
    "ObjectiveSection",
    "Parameter",
    "PrunerSection",
    "ResourcesSection",
    "SamplerSection",
    "Scalar",
    "StudySection",
    "TrackingSection",
    "WarmStartSection",
]

Scalar = str | bool | int | float
Scaling = Literal["auto", "linear", "log", "reverse_log"]
When = dict[str, list[Scalar]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Strict):
    """Where the study lives and how it is seeded."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    directory: str = "studies"
    seed: int = 0


class DataSection(_Strict):
    """The data directory with SageMaker's channels (see docs/architecture.md, DataConfig)."""

    path: str
    content_type: str = "auto"
    attribute_names: tuple[str, str] = ("source-ref", "class")
    label_format: Literal["multi-hot", "class-id"] = "multi-hot"


class ObjectiveSection(_Strict):
    """The metric to optimise, as the trainer reports it each epoch."""

    metric: str = "validation:accuracy"
    mode: Literal["max", "min"] | None = None


class SamplerSection(_Strict):
    """Optuna's sampler by name, with a seed and keyword options for its constructor."""

    name: str = "tpe"
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class PrunerSection(_Strict):
    """ASHA on the objective, per epoch; `none` runs every trial to its last epoch."""

    name: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    max_t: int | None = Field(None, ge=1)


class LimitsSection(_Strict):
    """When the study ends, how many trials run at once, and how failures are retried."""

    max_trials: int = Field(10, ge=1)
    max_parallel: int = Field(1, ge=1)
    max_wall_seconds: float | None = Field(None, gt=0)
    target_value: float | None = None
    max_trials_not_improving: int | None = Field(None, ge=1)
    max_retries: int = Field(0, ge=0)


class ResourcesSection(_Strict):
    """What one trial gets; fractional GPUs share a device between trials."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    reuse_actors: bool | None = None


class WarmStartSection(_Strict):
    """Earlier studies whose trials seed the sampler, and points to evaluate first."""

    studies: list[str] = Field(default_factory=list)
    points: list[dict[str, Any]] = Field(default_factory=list)


class TrackingSection(_Strict):
    """MLflow tracking of the study (parent run), its trials and the best model."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment_name: str | None = None
    registered_model_name: str | None = None
    alias: str = "champion"


class Continuous(_Strict):
    """A float range; `step` makes it discrete, `scaling` picks how it is sampled."""

    type: Literal["continuous"]
    low: float
    high: float
    scaling: Scaling = "linear"
    step: float | None = Field(None, gt=0)
    when: When | None = None


class Integer(_Strict):
    """An integer range, inclusive at both ends."""

    type: Literal["integer"]
    low: int
    high: int
    scaling: Scaling = "linear"
    step: int = Field(1, ge=1)
    when: When | None = None


class Categorical(_Strict):
    """A choice among values."""

    type: Literal["categorical"]
    values: list[Scalar] = Field(min_length=1)
    when: When | None = None


Parameter = Annotated[Continuous | Integer | Categorical, Field(discriminator="type")]

# top-level key -> model of that section (`fixed` and `search` are checked in tuner.space)
SECTIONS: dict[str, type[_Strict]] = {
    "study": StudySection,
    "data": DataSection,
    "objective": ObjectiveSection,
    "sampler": SamplerSection,
    "pruner": PrunerSection,
    "limits": LimitsSection,
    "resources": ResourcesSection,
    "warm_start": WarmStartSection,
    "tracking": TrackingSection,
}
