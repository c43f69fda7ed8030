"""The search-space YAML, validated against the trainer's hyperparameter contract.

`load_space(path)` reads the YAML (see docs/search-space.md), checks every section and every
searched or fixed hyperparameter, and reports *all* problems at once, each with its YAML path and
line (`search.momentum.low (line 14): ...`), before anything starts. Sampled combinations are valid
by construction: each searched value is checked on its own and every pair of searched values at
their extremes is checked with the trainer's cross-field rules (all of which are pairwise).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from trainer.errors import HyperparameterError
from trainer.hyperparameters import (
    DEFAULT_EPOCHS,
    SPECS,
    Hyperparameters,
    parse_hyperparameters,
)
from tuner.errors import SearchSpaceError
from tuner.space import schema
from tuner.space.checks import Problems, check_search, check_sections
from tuner.space.sampling import Dimension, canonical, suggest_config
from tuner.space.yaml_loader import load_yaml
from tuner.tracking_uri import resolve_tracking_uri

__all__ = ["METRICS", "SearchSpace", "load_space", "space_from_mapping"]

# What the trainer reports every epoch (docs/architecture.md, fit); top-k ones need `top_k` fixed.
METRICS = (
    "validation:accuracy",
    "train:accuracy",
    "validation:loss",
    "train:loss",
    "train:images_per_second",
    "epoch_seconds",
)
_MINIMISED = ("validation:loss", "train:loss", "epoch_seconds")


@dataclass(frozen=True)
class SearchSpace:
    """A validated study definition: what to search, on what data, how, and within which limits."""

    name: str
    text: str
    source: Path | None
    study_dir: Path
    data: schema.DataSection
    objective: str
    mode: str
    fixed: dict[str, Any]
    base: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    sampler: schema.SamplerSection
    pruner: schema.PrunerSection
    max_t: int
    epochs: int
    limits: schema.LimitsSection
    resources: schema.ResourcesSection
    warm_start: schema.WarmStartSection
    tracking: schema.TrackingSection
    tracking_uri: str
    seed: int

    @property
    def default_epochs(self) -> int:
        """The epochs of a trial that does not sample `epochs` (the fixed value, else the
        trainer's default)."""
        return int(self.base.get("epochs", DEFAULT_EPOCHS))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The define-by-run function: the searched hyperparameters of one trial."""
        return suggest_config(trial, list(self.dimensions), self.base)

    def hyperparameters(self, config: Mapping[str, Any]) -> Hyperparameters:
        """The trial's full, validated hyperparameters: fixed ones plus the sampled `config`."""
        return parse_hyperparameters({**self.fixed, **config})

    def hyperparameter_strings(self, config: Mapping[str, Any]) -> dict[str, str]:
        """`hyperparameters(config)` in the `hyperparameters.json` string form."""
        return self.hyperparameters(config).to_strings()

    def distributions(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna name -> distribution of the dimensions active in `config`."""
        return {d.optuna_name: d.distribution for d in self.dimensions if d.name in config}

    def optuna_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna name -> Optuna value of the searched hyperparameters in `config`."""
        return {
            d.optuna_name: d.encode(config[d.name]) for d in self.dimensions if d.name in config
        }

    def settings(self) -> dict[str, object]:
        """The study's settings as flat scalars (for MLflow params and the study summary)."""
        out: dict[str, object] = {
            "objective": self.objective,
            "mode": self.mode,
            "sampler": self.sampler.name,
            "seed": self.seed,
            "pruner": self.pruner.name,
            "max_t": self.max_t,
            "searched": ",".join(d.name for d in self.dimensions),
        }
        if self.pruner.name == "asha":
            out.update(
                grace_period=self.pruner.grace_period, reduction_factor=self.pruner.reduction_factor
            )
        out.update({f"limits.{k}": v for k, v in self.limits.model_dump().items() if v is not None})
        out.update(
            {f"resources.{k}": v for k, v in self.resources.model_dump().items() if v is not None}
        )
        return out


def _objective_problems(metric: str, fixed: Mapping[str, Any], problems: Problems) -> None:
    top_k = fixed.get("top_k")
    allowed = list(METRICS)
    if top_k is not None:
        allowed += [f"{split}:top_k_accuracy_{top_k}" for split in ("validation", "train")]
    if metric not in allowed:
        why = ""
        if "top_k_accuracy" in metric:
            why = " (top-k metrics are reported for the fixed top_k only)"
        problems.add(
            ("objective", "metric"),
            f"the trainer never reports '{metric}'{why}; it reports {allowed}",
        )


def space_from_mapping(
    data: Any,
    *,
    text: str,
    source: Path | None,
    base_dir: Path,
    lines: dict[tuple[str, ...], int] | None = None,
) -> SearchSpace:
    """Validate an already parsed search-space mapping; relative paths resolve from `base_dir`.

    Raises `SearchSpaceError` listing every problem with its YAML path.
    """
    problems = Problems(lines or {}, source)
    if not isinstance(data, dict):
        problems.add(
            (), f"a search space must be a mapping of sections, but got {type(data).__name__}"
        )
        raise problems.error()
    sections = check_sections(data, problems)
    fixed_raw = data.get("fixed") or {}
    if not isinstance(fixed_raw, dict):
        problems.add(("fixed",), "must be a mapping of hyperparameter name: value")
        fixed_raw = {}
    search_raw = data.get("search") or {}
    if not isinstance(search_raw, dict):
        problems.add(("search",), "must be a mapping of hyperparameter name: parameter")
        search_raw = {}
    base: dict[str, Any] = {}
    fixed_ok = True
    try:
        fixed_hp = parse_hyperparameters(
            {k: v for k, v in fixed_raw.items() if k not in search_raw}
        )
        base = {
            k: canonical(k, v)
            for k, v in dataclasses.asdict(fixed_hp).items()
            if v is not None and v != ()
        }
    except HyperparameterError as exc:
        fixed_ok = False
        for message in exc.problems:
            name = next(
                (str(n) for n in fixed_raw if f"'{n}'" in message or message.startswith(str(n))),
                None,
            )
            if (
                name is None
                and message.split(" ")[0] in SPECS
                and message.split(" ")[0] in search_raw
            ):
                continue  # a required name that is searched: reported by check_search
            problems.add(("fixed", name) if name else ("fixed",), message)
    dims = check_search(search_raw, fixed_raw, base, fixed_ok, problems)

    study: schema.StudySection = sections["study"]
    name = study.name or (source.stem if source else "study")
    study_dir = (base_dir / study.directory / name).resolve()
    data_section: schema.DataSection | None = sections.get("data")
    if data_section is None and "data" not in problems.paths:
        problems.add(("data",), "is required: a mapping with 'path' (the data directory)")
    elif data_section is not None:
        data_path = (base_dir / data_section.path).resolve()
        if not data_path.is_dir():
            problems.add(
                ("data", "path"),
                f"data directory {data_path} does not exist; point the study at a folder with "
                "train/ and validation/ channels: `tune run SPACE --data DIR`, or data.path in "
                "the YAML",
            )
        data_section = data_section.model_copy(update={"path": str(data_path)})

    objective: schema.ObjectiveSection = sections["objective"]
    _objective_problems(objective.metric, base, problems)
    mode = objective.mode or ("min" if objective.metric in _MINIMISED else "max")

    epochs = int(base.get("epochs", DEFAULT_EPOCHS))
    epochs_dim = next((d for d in dims if d.name == "epochs"), None)
    if epochs_dim is not None:
        d = epochs_dim.distribution
        epochs = int(d.high if hasattr(d, "high") else max(getattr(d, "choices", (epochs,))))
    pruner: schema.PrunerSection = sections["pruner"]
    max_t = pruner.max_t or epochs
    if pruner.max_t is not None and pruner.max_t > epochs:
        problems.add(
            ("pruner", "max_t"),
            f"max_t must be no greater than epochs ({epochs}), but got {pruner.max_t}",
        )
    if pruner.name == "asha" and pruner.grace_period > max_t:
        problems.add(
            ("pruner", "grace_period"),
            f"grace_period must be no greater than max_t ({max_t}), but got {pruner.grace_period}",
        )

    warm: schema.WarmStartSection = sections["warm_start"]
    warm = _check_warm_start(warm, dims, base_dir, problems)
    if problems:
        raise problems.error()
    tracking: schema.TrackingSection = sections["tracking"]
    return SearchSpace(
        name=name,
        text=text,
        source=source,
        study_dir=study_dir,
        data=data_section,  # type: ignore[arg-type]
        objective=objective.metric,
        mode=mode,
        fixed=dict(fixed_raw),
        base=base,
        dimensions=tuple(dims),
        sampler=sections["sampler"],
        pruner=pruner,
        max_t=max_t,
        epochs=epochs,
        limits=sections["limits"],
        resources=sections["resources"],
        warm_start=warm,
        tracking=tracking,
        tracking_uri=resolve_tracking_uri(tracking.tracking_uri, study_dir, base_dir),
        seed=study.seed,
    )


def _check_warm_start(
    warm: schema.WarmStartSection, dims: list[Dimension], base_dir: Path, problems: Problems
) -> schema.WarmStartSection:
    studies = []
    for i, entry in enumerate(warm.studies):
        path = (base_dir / entry).resolve()
        if not path.is_dir():
            problems.add(
                ("warm_start", "studies", str(i)), f"study directory {path} does not exist"
            )
        studies.append(str(path))
    by_name = {d.name: d for d in dims}
    points = []
    for i, point in enumerate(warm.points):
        clean: dict[str, Any] = {}
        for key, raw in point.items():
            where = ("warm_start", "points", str(i), key)
            dim = by_name.get(key)
            if dim is None:
                close = difflib.get_close_matches(key, by_name, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.add(where, f"'{key}' is not a searched hyperparameter{hint}")
                continue
            try:
                value = canonical(key, raw)
            except (ValueError, TypeError):
                problems.add(where, f"{key} must be {SPECS[key].allowed}, but got {raw!r}")
                continue
            if not _in_distribution(dim, value):
                problems.add(where, f"{value!r} is outside the searched range of {key}")
                continue
            clean[key] = value
        points.append(clean)
    return warm.model_copy(update={"studies": studies, "points": points})


def _in_distribution(dim: Dimension, value: Any) -> bool:
    d = dim.distribution
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return value in d.choices
    encoded = dim.encode(value)
    return bool(d.low - 1e-12 <= encoded <= d.high + 1e-12)  # type: ignore[attr-defined]


def load_space(path: str | Path, data_dir: str | Path | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file; relative paths in it resolve from its folder.
    `data_dir` (`tune run --data`) replaces the YAML's `data.path`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SearchSpaceError(f"search-space file {path} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"search-space file {path} cannot be read: {exc}") from None
    data, lines = load_yaml(text, path)
    if data_dir is not None and isinstance(data, dict):
        section = data.get("data")
        section = dict(section) if isinstance(section, dict) else {}
        data = {**data, "data": {**section, "path": str(Path(data_dir).resolve())}}
    return space_from_mapping(
        data, text=text, source=path.resolve(), base_dir=path.resolve().parent, lines=lines
    )
