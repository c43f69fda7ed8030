"""The checks behind `tuner.space.load_space`: sections against their schema, and searched
hyperparameters against the trainer's contract, collecting every problem with its YAML path."""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import BaseModel, TypeAdapter, ValidationError

from trainer.errors import HyperparameterError
from trainer.hyperparameters import SPECS, parse_hyperparameters
from tuner.errors import SearchSpaceError
from tuner.space import schema
from tuner.space.sampling import SAMPLERS, Dimension, canonical, sampler_option_problems

__all__ = ["Problems", "check_search", "check_sections"]

_TOP_LEVEL = (*schema.SECTIONS, "fixed", "search")
_NOT_SEARCHABLE = ("num_classes", "num_training_samples")


class Problems:
    """Problems found so far, each rendered as `yaml.path (line N): message`."""

    def __init__(self, lines: Mapping[tuple[str, ...], int], source: Path | None) -> None:
        self._lines = lines
        self._source = source
        self.items: list[str] = []
        self.paths: set[tuple[str, ...]] = set()

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.paths.add(path[:1])
        where = ".".join(path) or "(top level)"
        line = next(
            (self._lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in self._lines),
            None,
        )
        if self._source is not None:
            at = f"{self._source.name}:{line}: " if line else f"{self._source.name}: "
            self.items.append(f"{at}{where}: {message}")
        else:
            self.items.append(f"{where}{f' (line {line})' if line else ''}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self) -> SearchSpaceError:
        """All problems as one `SearchSpaceError` (file:line: yaml.path: message each)."""
        return SearchSpaceError(self.items)


def _closest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _pydantic_problems(
    exc: ValidationError,
    prefix: tuple[str, ...],
    model: type[BaseModel],
    problems: Problems,
    *,
    tagged: bool = False,
) -> None:
    """Each pydantic error as a problem at its YAML path; `tagged` when `model` was picked from a
    union by its `type` (pydantic then puts the tag first in each error's location)."""
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        if tagged and loc and loc[0] in ("continuous", "integer", "categorical"):
            loc = loc[1:]
        kind = err["type"]
        if kind == "extra_forbidden":
            fields = model.model_fields if len(loc) == 1 else {}
            message = f"unknown key '{loc[-1]}'{_closest(loc[-1], fields)}"
            if fields:
                message += f" (allowed: {', '.join(fields)})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, "type")
            got = (
                f", but got {err['input'].get('type')!r}" if isinstance(err["input"], dict) else ""
            )
            message = f"type must be one of continuous, integer, categorical{got}"
        elif kind == "missing":
            message = "is required"
        else:
            message = (
                f"{err['msg'].replace('Input should be', 'must be')}, but got {err['input']!r}"
            )
        problems.add((*prefix, *loc), message)


def check_sections(data: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """Validate each top-level section against its model; defaults for missing ones."""
    for key in data:
        if key not in _TOP_LEVEL:
            problems.add(
                (str(key),),
                f"unknown section '{key}'{_closest(key, _TOP_LEVEL)} "
                f"(allowed: {', '.join(_TOP_LEVEL)})",
            )
    out: dict[str, Any] = {}
    for key, model in schema.SECTIONS.items():
        raw = data.get(key)
        if raw is None and key == "data":
            continue
        try:
            out[key] = model.model_validate(raw or {})
        except ValidationError as exc:
            _pydantic_problems(exc, (key,), model, problems)
            if key != "data":
                out[key] = model()
    sampler: schema.SamplerSection = out["sampler"]
    if sampler.name not in SAMPLERS:
        problems.add(
            ("sampler", "name"),
            f"unknown sampler '{sampler.name}'"
            f"{_closest(sampler.name, SAMPLERS)} (allowed: {', '.join(SAMPLERS)})",
        )
    else:
        needs = SAMPLERS[sampler.name][2]
        if needs and importlib.util.find_spec(needs) is None:
            problems.add(
                ("sampler", "name"),
                f"sampler '{sampler.name}' needs the Python package "
                f"'{needs}', which is not installed (pip install {needs})",
            )
        for key, message in sampler_option_problems(sampler.name, sampler.options):
            problems.add(("sampler", "options", key), message)
    return out


def _numeric_kind(name: str) -> str:
    """'float', 'int' or 'other': which range types the contract's parser of `name` takes."""
    for probe, kind in ((0.5, "float"), (2, "int")):
        try:
            value = SPECS[name].parse(probe)
        except (ValueError, TypeError):
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            return kind
    return "other"


def _value_problem(name: str, raw: Any) -> str | None:
    spec = SPECS[name]
    try:
        value = spec.parse(raw)
    except (ValueError, TypeError):
        return f"{name} must be {spec.allowed}, but got {raw!r}"
    if not spec.check(value):
        return f"{name} must be {spec.allowed}, but got {raw!r}"
    return None


def _range_dimension(
    name: str, p: schema.Continuous | schema.Integer, where: tuple[str, ...], problems: Problems
) -> Dimension | None:
    start = len(problems.items)
    kind = _numeric_kind(name)
    wanted = "continuous" if kind == "float" else "integer" if kind == "int" else None
    if p.type == "continuous" and kind != "float" or p.type == "integer" and kind == "other":
        problems.add(
            (*where, "type"),
            f"{name} cannot be searched as {p.type} "
            f"({SPECS[name].allowed}); use type: {wanted or 'categorical'}",
        )
        return None
    if p.low > p.high:
        problems.add(
            (*where, "low"), f"low <= high must hold, but got (low={p.low}, high={p.high})"
        )
    scaling = p.scaling
    if scaling == "auto":  # SageMaker's Auto: log for ranges over 3+ decades, else linear
        scaling = "log" if p.low > 0 and p.high / p.low >= 1000 else "linear"
    if scaling == "log" and p.low <= 0:
        problems.add((*where, "low"), f"log scaling needs low > 0, but got low={p.low}")
    if scaling == "reverse_log":
        if p.type == "integer":
            problems.add((*where, "scaling"), "reverse_log applies to continuous ranges only")
        elif not (p.low >= 0 and p.high < 1):
            problems.add(
                (*where, "high"),
                "reverse_log scaling needs 0 <= low <= high < 1, "
                f"but got (low={p.low}, high={p.high})",
            )
    step = p.step
    if scaling != "linear" and step not in (None, 1):
        problems.add((*where, "step"), f"step cannot be combined with {scaling} scaling")
    for bound in ("low", "high"):
        message = _value_problem(name, getattr(p, bound))
        if message:
            problems.add((*where, bound), message)
    if p.type == "integer" and not problems.items[start:] and (p.high - p.low) // p.step <= 1000:
        bad = [v for v in range(p.low, p.high + 1, p.step) if _value_problem(name, v)]
        if bad:
            problems.add(
                where,
                f"{name} must be {SPECS[name].allowed}, but the range holds "
                f"{bad[:5]}{' ...' if len(bad) > 5 else ''}; use type: categorical",
            )
    if problems.items[start:]:
        return None
    log = scaling == "log"
    if p.type == "integer":
        return Dimension(name, IntDistribution(int(p.low), int(p.high), log=log, step=int(p.step)))
    if scaling == "reverse_log":
        return Dimension(name, FloatDistribution(1.0 - p.high, 1.0 - p.low, log=True), reverse=True)
    high = p.high if step is None else p.low + math.floor((p.high - p.low) / step + 1e-9) * step
    return Dimension(name, FloatDistribution(p.low, high, log=log, step=step))


def _categorical_dimension(
    name: str, p: schema.Categorical, where: tuple[str, ...], problems: Problems
) -> Dimension | None:
    values = []
    for i, raw in enumerate(p.values):
        message = _value_problem(name, raw)
        if message:
            problems.add((*where, "values", str(i)), message)
        else:
            values.append(canonical(name, raw))
    if len(set(values)) != len(values):
        problems.add((*where, "values"), f"values must be distinct, but got {p.values}")
    if len(values) != len(p.values) or len(set(values)) != len(values):
        return None
    return Dimension(name, CategoricalDistribution(values))


def _corners(dim: Dimension) -> list[tuple[str, Any]]:
    d = dim.distribution
    if isinstance(d, CategoricalDistribution):
        return [(f"values.{i}", v) for i, v in enumerate(d.choices)]
    low, high = dim.decode(d.low), dim.decode(d.high)  # type: ignore[attr-defined]
    return [("high", low), ("low", high)] if dim.reverse else [("low", low), ("high", high)]


def _compatible(dim: Dimension, combo: Mapping[str, Any]) -> bool:
    return all(combo[k] in allowed for k, allowed in dim.when if k in combo)


def _cross_problems(combo: Mapping[str, Any], fixed: Mapping[str, Any]) -> list[str]:
    try:
        parse_hyperparameters({**fixed, **combo})
    except HyperparameterError as exc:
        return exc.problems
    return []


def _check_combinations(
    dims: list[Dimension], fixed: Mapping[str, Any], problems: Problems
) -> None:
    """Each searched extreme alone, then every pair of them, against the cross-field rules."""
    single_ok: dict[str, list[tuple[str, Any]]] = {}
    for dim in dims:
        ok = []
        for label, value in _corners(dim):
            found = _cross_problems({dim.name: value}, fixed)
            for message in found:
                problems.add(("search", dim.name, *label.split(".")), message)
            if not found:
                ok.append((label, value))
        single_ok[dim.name] = ok
    reported: set[str] = set()
    for a, b in itertools.combinations(dims, 2):
        for (la, va), (lb, vb) in itertools.product(single_ok[a.name], single_ok[b.name]):
            combo = {a.name: va, b.name: vb}
            if not (_compatible(a, combo) and _compatible(b, combo)):
                continue
            for message in _cross_problems(combo, fixed):
                if message not in reported:
                    reported.add(message)
                    problems.add(
                        ("search", a.name, *la.split(".")),
                        f"with search.{b.name}.{lb} = {vb!r}: {message}",
                    )


def _order(dims: dict[str, Dimension], problems: Problems) -> list[Dimension]:
    """Dimensions sorted so that every condition's parameter is sampled before it is tested."""
    ordered: list[Dimension] = []
    placed: set[str] = set()
    pending = dict(dims)
    while pending:
        ready = [
            n for n, d in pending.items() if all(k in placed or k not in dims for k, _ in d.when)
        ]
        if not ready:
            problems.add(("search",), f"conditions form a cycle among {sorted(pending)}")
            return ordered
        for name in ready:
            ordered.append(pending.pop(name))
            placed.add(name)
    return ordered


def _conditions(
    name: str,
    when: Mapping[str, list[Any]],
    params: Mapping[str, Any],
    base: Mapping[str, Any],
    where: tuple[str, ...],
    problems: Problems,
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    out = []
    for key, raw_values in when.items():
        at = (*where, "when", key)
        if key == name or key not in SPECS:
            problems.add(at, f"a condition must name another hyperparameter{_closest(key, SPECS)}")
            continue
        try:
            values = tuple(canonical(key, v) for v in raw_values)
        except (ValueError, TypeError):
            problems.add(at, f"values must be {SPECS[key].allowed}, but got {raw_values}")
            continue
        other = params.get(key)
        if isinstance(other, schema.Categorical):
            choices = [canonical(key, v) for v in other.values if _value_problem(key, v) is None]
            missing = [v for v in values if v not in choices]
            if missing:
                problems.add(at, f"{missing} are not values of search.{key} ({choices})")
        elif other is not None:
            problems.add(
                at,
                f"a condition must name a categorical parameter, but search.{key} is {other.type}",
            )
        elif key in base and base[key] not in values:
            problems.add(at, f"{key} is fixed to {base[key]!r}, so search.{name} is never sampled")
        out.append((key, values))
    return tuple(out)


def check_search(
    search: Mapping[str, Any],
    fixed: Mapping[str, Any],
    base: Mapping[str, Any],
    fixed_ok: bool,
    problems: Problems,
) -> list[Dimension]:
    """Validate the `search` section; returns the dimensions in sampling order."""
    params: dict[str, Any] = {}
    adapter: TypeAdapter[Any] = TypeAdapter(schema.Parameter)
    for name, raw in search.items():
        where = ("search", str(name))
        if name not in SPECS:
            problems.add(where, f"unknown hyperparameter '{name}'{_closest(name, SPECS)}")
            continue
        if name in _NOT_SEARCHABLE:
            problems.add(
                where, f"{name} describes the data and cannot be searched; set it under fixed"
            )
            continue
        if name in fixed:
            problems.add(where, f"{name} is both fixed and searched; keep one")
        if not isinstance(raw, dict):
            problems.add(where, "must be a mapping with 'type' and its range or values")
            continue
        kinds: dict[object, type[BaseModel]] = {
            "continuous": schema.Continuous,
            "integer": schema.Integer,
        }
        kind = raw.get("type")
        model = kinds.get(kind, schema.Categorical) if isinstance(kind, str) else schema.Categorical
        try:
            params[name] = adapter.validate_python(raw)
        except ValidationError as exc:
            _pydantic_problems(exc, where, model, problems, tagged=True)
    dims: dict[str, Dimension] = {}
    for name, p in params.items():
        where = ("search", name)
        when = _conditions(name, p.when or {}, params, base, where, problems)
        if isinstance(p, schema.Categorical):
            dim = _categorical_dimension(name, p, where, problems)
        else:
            dim = _range_dimension(name, p, where, problems)
        if dim is not None:
            dims[name] = Dimension(dim.name, dim.distribution, dim.reverse, when)
    ordered = _order(dims, problems)
    if fixed_ok:
        _check_combinations(ordered, {k: v for k, v in fixed.items() if k not in search}, problems)
    return ordered
