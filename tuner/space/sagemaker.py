"""SageMaker tuning-job definitions (JSON) as search spaces.

Accepts a `CreateHyperParameterTuningJob` request body (what the SageMaker Python SDK sends: name,
`HyperParameterTuningJobConfig`, `TrainingJobDefinition` or `TrainingJobDefinitions`,
`WarmStartConfig`, `Tags`), a `DescribeHyperParameterTuningJob` response, or a bare
`HyperParameterTuningJobConfig`. Every field is either mapped to its search-space YAML key or
reported as ignored with the reason (S3 URIs, instance types, IAM roles mean nothing locally).
Values arrive as strings the way the SDK writes them (`"1e-05"`, `"16"`, `"True"`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import SearchSpaceError
from tuner.space.loading import SearchSpace, space_from_mapping
from tuner.space.sagemaker_fields import (
    DESCRIBE_ONLY,
    IGNORED,
    OBJECTIVE_TYPES,
    SCALING,
    STRATEGIES,
)

__all__ = ["Conversion", "convert_tuning_job", "space_from_sagemaker"]


@dataclass
class Conversion:
    """The YAML-shaped mapping made from a SageMaker definition, and what was mapped or ignored."""

    mapping: dict[str, Any]
    mapped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report_lines(self) -> list[str]:
        """Human-readable lines: each mapped field -> YAML key, each ignored field with why."""
        lines = [f"mapped   {src} -> {dst}" for src, dst in self.mapped]
        lines += [f"ignored  {src}: {why}" for src, why in self.ignored]
        return lines + [f"note     {n}" for n in self.notes]

    def to_yaml(self) -> str:
        """The search-space YAML text, with the report as a comment header."""
        header = ["# Converted from a SageMaker tuning-job definition by `tune convert`."]
        header += [f"# {line}" for line in self.report_lines()]
        return "\n".join(header) + "\n" + yaml.safe_dump(self.mapping, sort_keys=False)


class _Reader:
    """Collects problems with their JSON paths while reading the definition."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def number(self, value: Any, where: str, kind: Callable[[Any], Any] = float) -> Any:
        try:
            number = float(value) if not isinstance(value, bool) else None
            if number is None:
                raise ValueError
            if kind is int:
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return number
        except (TypeError, ValueError):
            self.problems.append(f"{where}: must be a number, but got {value!r}")
            return None

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{where}: must be a JSON object, but got {type(value).__name__}")
            return {}
        return value


def _ranges(r: _Reader, ranges: Mapping[str, Any], where: str, out: Conversion) -> dict[str, Any]:
    search: dict[str, Any] = {}
    kinds = {
        "ContinuousParameterRanges": ("continuous", float),
        "IntegerParameterRanges": ("integer", int),
        "CategoricalParameterRanges": ("categorical", None),
    }
    for key, items in ranges.items():
        if key not in kinds:
            out.ignored.append((f"{where}.{key}", "not a SageMaker parameter-range list"))
            continue
        kind, number = kinds[key]
        for i, item in enumerate(items or []):
            at = f"{where}.{key}[{i}]"
            item = r.mapping(item, at)
            name = item.get("Name")
            if not isinstance(name, str):
                r.problems.append(f"{at}.Name: is required (the hyperparameter's name)")
                continue
            if kind == "categorical":
                values = item.get("Values")
                if not isinstance(values, list) or not values:
                    r.problems.append(f"{at}.Values: must be a non-empty list")
                    continue
                search[name] = {"type": "categorical", "values": list(values)}
            else:
                param: dict[str, Any] = {
                    "type": kind,
                    "low": r.number(item.get("MinValue"), f"{at}.MinValue", number or float),
                    "high": r.number(item.get("MaxValue"), f"{at}.MaxValue", number or float),
                }
                scaling = item.get("ScalingType", "Auto")
                if scaling not in SCALING:
                    r.problems.append(
                        f"{at}.ScalingType: must be one of {', '.join(SCALING)}, "
                        f"but got {scaling!r}"
                    )
                elif SCALING[scaling] != "linear" or scaling == "Linear":
                    param["scaling"] = SCALING[scaling]
                search[name] = param
            out.mapped.append((f"{at} ({name})", f"search.{name}"))
    return search


def _config(r: _Reader, cfg: Mapping[str, Any], out: Conversion, m: dict[str, Any]) -> None:
    where = "HyperParameterTuningJobConfig"
    handlers: dict[str, Callable[[Any, str], None]] = {}

    def strategy(v: Any, at: str) -> None:
        if v not in STRATEGIES:
            r.problems.append(f"{at}: must be one of {', '.join(STRATEGIES)}, but got {v!r}")
            return
        m["sampler"]["name"] = STRATEGIES[v]
        out.mapped.append((at, f"sampler.name ({STRATEGIES[v]})"))
        if v == "Hyperband":
            m["pruner"]["name"] = "asha"
            out.notes.append("Hyperband = random sampling with early stopping: pruner asha")

    def strategy_config(v: Any, at: str) -> None:
        hb = r.mapping(
            r.mapping(v, at).get("HyperbandStrategyConfig"), f"{at}.HyperbandStrategyConfig"
        )
        if "MinResource" in hb:
            m["pruner"]["grace_period"] = r.number(hb["MinResource"], f"{at}...MinResource", int)
            out.mapped.append((f"{at}.HyperbandStrategyConfig.MinResource", "pruner.grace_period"))
        if "MaxResource" in hb:
            m["pruner"]["max_t"] = r.number(hb["MaxResource"], f"{at}...MaxResource", int)
            out.mapped.append((f"{at}.HyperbandStrategyConfig.MaxResource", "pruner.max_t"))

    def objective(v: Any, at: str) -> None:
        v = r.mapping(v, at)
        if "MetricName" in v:
            m["objective"]["metric"] = v["MetricName"]
            out.mapped.append((f"{at}.MetricName", "objective.metric"))
        if "Type" in v:
            if v["Type"] not in OBJECTIVE_TYPES:
                r.problems.append(f"{at}.Type: must be Maximize or Minimize, but got {v['Type']!r}")
            else:
                m["objective"]["mode"] = OBJECTIVE_TYPES[v["Type"]]
                out.mapped.append((f"{at}.Type", "objective.mode"))

    def limits(v: Any, at: str) -> None:
        keys = {
            "MaxNumberOfTrainingJobs": "max_trials",
            "MaxParallelTrainingJobs": "max_parallel",
            "MaxRuntimeInSeconds": "max_wall_seconds",
        }
        for key, value in r.mapping(v, at).items():
            if key in keys:
                kind = float if key == "MaxRuntimeInSeconds" else int
                m["limits"][keys[key]] = r.number(value, f"{at}.{key}", kind)
                out.mapped.append((f"{at}.{key}", f"limits.{keys[key]}"))
            else:
                out.ignored.append((f"{at}.{key}", "no local equivalent"))

    def ranges(v: Any, at: str) -> None:
        m["search"].update(_ranges(r, r.mapping(v, at), at, out))

    def early_stopping(v: Any, at: str) -> None:
        m["pruner"]["name"] = "none" if v == "Off" else "asha"
        out.mapped.append((at, f"pruner.name ({m['pruner']['name']})"))

    def completion(v: Any, at: str) -> None:
        v = r.mapping(v, at)
        if "TargetObjectiveMetricValue" in v:
            m["limits"]["target_value"] = r.number(v["TargetObjectiveMetricValue"], at)
            out.mapped.append((f"{at}.TargetObjectiveMetricValue", "limits.target_value"))
        best = r.mapping(v.get("BestObjectiveNotImproving"), f"{at}.BestObjectiveNotImproving")
        if "MaxNumberOfTrainingJobsNotImproving" in best:
            m["limits"]["max_trials_not_improving"] = r.number(
                best["MaxNumberOfTrainingJobsNotImproving"], at, int
            )
            out.mapped.append(
                (f"{at}.BestObjectiveNotImproving", "limits.max_trials_not_improving")
            )
        if "ConvergenceDetected" in v:
            out.ignored.append(
                (
                    f"{at}.ConvergenceDetected",
                    "no convergence detection; "
                    "limits.max_trials_not_improving ends a study that stalls",
                )
            )

    def seed(v: Any, at: str) -> None:
        m["study"]["seed"] = r.number(v, at, int)
        out.mapped.append((at, "study.seed"))

    handlers.update(
        Strategy=strategy,
        StrategyConfig=strategy_config,
        HyperParameterTuningJobObjective=objective,
        ResourceLimits=limits,
        ParameterRanges=ranges,
        TrainingJobEarlyStoppingType=early_stopping,
        TuningJobCompletionCriteria=completion,
        RandomSeed=seed,
    )
    for key, value in cfg.items():
        if key in handlers:
            handlers[key](value, f"{where}.{key}")
        else:
            out.ignored.append((f"{where}.{key}", IGNORED.get(key, "not a tuning setting")))


_LABEL_FORMAT = re.compile(r"label-format=([a-z-]+)")


def _definition(
    r: _Reader, d: Mapping[str, Any], where: str, out: Conversion, m: dict[str, Any]
) -> None:
    for key, value in d.items():
        at = f"{where}.{key}"
        if key == "StaticHyperParameters":
            static = {
                k: v
                for k, v in r.mapping(value, at).items()
                if not k.startswith(("_tuning", "sagemaker_"))
            }
            tuned = [k for k in static if k in m["search"]]
            for k in tuned:  # a tuned name is absent from StaticHyperParameters in the SDK's bodies
                out.ignored.append((f"{at}.{k}", "also tuned; the range wins"))
                static.pop(k)
            m["fixed"].update(static)
            out.mapped.append((at, "fixed"))
        elif key == "InputDataConfig":
            for i, channel in enumerate(value or []):
                channel = r.mapping(channel, f"{at}[{i}]")
                name = channel.get("ChannelName", "?")
                if name in ("train", "validation") and "ContentType" in channel:
                    content = str(channel["ContentType"])
                    m["data"]["content_type"] = content.split(";")[0].strip()
                    fmt = _LABEL_FORMAT.search(content)
                    if fmt:
                        m["data"]["label_format"] = fmt.group(1)
                    out.mapped.append((f"{at}[{i}].ContentType ({name})", "data.content_type"))
                source = r.mapping(channel.get("DataSource"), f"{at}[{i}].DataSource")
                s3 = r.mapping(source.get("S3DataSource"), f"{at}[{i}].DataSource.S3DataSource")
                if "AttributeNames" in s3:
                    m["data"]["attribute_names"] = list(s3["AttributeNames"])
                    out.mapped.append((f"{at}[{i}]...AttributeNames", "data.attribute_names"))
                out.ignored.append(
                    (
                        f"{at}[{i}] ({name}) S3 location",
                        "S3 cannot be read locally; the data comes from --data "
                        "(data.path) with the same channel folders",
                    )
                )
        elif key == "TuningObjective":
            if "metric" not in m["objective"]:
                m["objective"]["metric"] = r.mapping(value, at).get("MetricName")
                kind = r.mapping(value, at).get("Type")
                if kind in OBJECTIVE_TYPES:
                    m["objective"]["mode"] = OBJECTIVE_TYPES[kind]
                out.mapped.append((at, "objective"))
        elif key == "HyperParameterRanges":
            m["search"].update(_ranges(r, r.mapping(value, at), at, out))
        elif key == "RetryStrategy":
            retries = r.mapping(value, at).get("MaximumRetryAttempts", 0)
            m["limits"]["max_retries"] = r.number(retries, f"{at}.MaximumRetryAttempts", int)
            out.mapped.append((f"{at}.MaximumRetryAttempts", "limits.max_retries"))
        else:
            out.ignored.append((at, IGNORED.get(key, "not used by the local trainer")))


def convert_tuning_job(
    path: str | Path | None = None,
    *,
    body: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
) -> Conversion:
    """Read a SageMaker tuning-job JSON (file `path` or parsed `body`) into a `Conversion`.

    Raises `SearchSpaceError` listing every malformed field with its JSON path.
    """
    if body is None:
        if path is None:
            raise SearchSpaceError("give a SageMaker tuning-job JSON file or body")
        try:
            body = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise SearchSpaceError(f"SageMaker definition {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise SearchSpaceError(
                f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    if not isinstance(body, dict):
        raise SearchSpaceError(
            f"{path or 'body'}: must be a JSON object, but got {type(body).__name__}"
        )
    r = _Reader()
    m: dict[str, Any] = {
        "study": {},
        "data": {},
        "objective": {},
        "fixed": {},
        "search": {},
        "sampler": {},
        "pruner": {},
        "limits": {},
    }
    out = Conversion(mapping=m)
    config_keys = (
        "Strategy",
        "ParameterRanges",
        "ResourceLimits",
        "HyperParameterTuningJobObjective",
    )
    config = body.get("HyperParameterTuningJobConfig")
    if config is None and any(k in body for k in config_keys):
        config, body = body, {}
    if config is None:
        raise SearchSpaceError(
            f"{path or 'body'}: no HyperParameterTuningJobConfig found (expected a "
            "CreateHyperParameterTuningJob request or the config itself)"
        )
    _config(r, r.mapping(config, "HyperParameterTuningJobConfig"), out, m)
    for key, value in body.items():
        if key == "HyperParameterTuningJobConfig":
            continue
        if key == "HyperParameterTuningJobName":
            m["study"]["name"] = re.sub(r"[^A-Za-z0-9_.-]", "-", str(value))
            out.mapped.append((key, "study.name"))
        elif key in ("TrainingJobDefinition", "TrainingJobDefinitions"):
            defs = value if isinstance(value, list) else [value]
            for i, d in enumerate(defs):
                at = key if key == "TrainingJobDefinition" else f"{key}[{i}]"
                if i == 0:
                    _definition(r, r.mapping(d, at), at, out, m)
                else:
                    out.ignored.append((at, "only the first training definition is used"))
        elif key == "WarmStartConfig":
            parents = r.mapping(value, key).get("ParentHyperParameterTuningJobs", [])
            names = [
                re.sub(r"[^A-Za-z0-9_.-]", "-", str(p.get("HyperParameterTuningJobName")))
                for p in parents
                if isinstance(p, dict)
            ]
            m["warm_start"] = {"studies": [f"studies/{n}" for n in names]}
            out.mapped.append(
                (
                    f"{key}.ParentHyperParameterTuningJobs",
                    "warm_start.studies (studies/<name>, relative to the YAML)",
                )
            )
            out.ignored.append(
                (
                    f"{key}.WarmStartType",
                    "both types seed the sampler with the parent studies' trials",
                )
            )
        elif key in DESCRIBE_ONLY:
            out.ignored.append((key, "describes a past run"))
        else:
            out.ignored.append((key, IGNORED.get(key, "not a tuning setting")))
    if r.problems:
        raise SearchSpaceError(r.problems)
    if data_dir is not None:
        m["data"]["path"] = str(Path(data_dir).resolve())
    else:
        m["data"]["path"] = "data"
        out.notes.append("data.path: set it to the local data directory (the S3 data is not used)")
    for section in [k for k, v in m.items() if v == {}]:
        del m[section]
    return out


def space_from_sagemaker(conversion: Conversion, *, source: Path | None = None) -> SearchSpace:
    """Validate the converted mapping as a `SearchSpace` (relative paths from the working dir)."""
    study = conversion.mapping.setdefault("study", {})
    if source is not None and "name" not in study:
        study["name"] = re.sub(r"[^A-Za-z0-9_.-]", "-", source.stem)
    return space_from_mapping(
        conversion.mapping, text=conversion.to_yaml(), source=None, base_dir=Path.cwd()
    )
