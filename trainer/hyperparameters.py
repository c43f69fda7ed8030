"""The algorithm's 29 hyperparameters, with SageMaker's names, defaults and valid values.

`parse_hyperparameters` accepts typed values or the all-string form of a SageMaker
`hyperparameters.json` (`"0.1"`, `"True"`, `"10,20"`, `"3,224,224"`) and reports every problem at
once. The result is a frozen `Hyperparameters`, the only form the rest of the trainer sees.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import HyperparameterError

__all__ = [
    "CIFAR_DEPTHS",
    "DEFAULT_EPOCHS",
    "IMAGENET_DEPTHS",
    "SPECS",
    "Hyperparameters",
    "load_hyperparameters_file",
    "parse_hyperparameters",
]

IMAGENET_DEPTHS = (18, 34, 50, 101, 152, 200)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
AUGMENTATION_TYPES = ("crop", "crop_color", "crop_color_transform")
OPTIMIZER_NAMES = ("sgd", "adam", "rmsprop", "nag")
KV_STORES = ("dist_sync", "dist_async")
PRECISIONS = ("float32", "float16")
DEFAULT_EPOCHS = 30  # SageMaker's default for `epochs`

# Keys SageMaker itself adds to a training job's hyperparameters (e.g. `_tuning_objective_metric`
# from Automatic Model Tuning, `sagemaker_*` from the SDK): accepted and ignored.
_IGNORED_PREFIXES = ("_tuning", "sagemaker_")


@dataclass(frozen=True)
class Hyperparameters:
    """Validated hyperparameters of one training job (field names are SageMaker's)."""

    num_classes: int
    num_training_samples: int
    augmentation_type: str | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    checkpoint_frequency: int | None = None
    early_stopping: bool = False
    early_stopping_min_epochs: int = 10
    early_stopping_patience: int = 5
    early_stopping_tolerance: float = 0.0
    epochs: int = DEFAULT_EPOCHS
    eps: float = 1e-8
    gamma: float = 0.9
    image_shape: tuple[int, int, int] = (3, 224, 224)
    kv_store: str | None = None
    learning_rate: float = 0.1
    lr_scheduler_factor: float = 0.1
    lr_scheduler_step: tuple[int, ...] = ()
    mini_batch_size: int = 32
    momentum: float = 0.9
    multi_label: int = 0
    num_layers: int = 152
    optimizer: str = "sgd"
    precision_dtype: str = "float32"
    resize: int | None = None
    top_k: int | None = None
    use_pretrained_model: int = 0
    use_weighted_loss: int = 0
    weight_decay: float = 0.0001

    def to_strings(self) -> dict[str, str]:
        """The SageMaker `hyperparameters.json` form: every set value as a string."""
        out: dict[str, str] = {}
        for name, value in dataclasses.asdict(self).items():
            if value is None or (isinstance(value, tuple) and not value):
                continue
            out[name] = SPECS[name].render(value)
        return out

    def replace(self, **changes: Any) -> Hyperparameters:
        """A copy with `changes` applied, validated like user input."""
        merged: dict[str, Any] = {**dataclasses.asdict(self), **changes}
        return parse_hyperparameters({k: v for k, v in merged.items() if v is not None})

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def height(self) -> int:
        return self.image_shape[1]

    @property
    def width(self) -> int:
        return self.image_shape[2]


# ---------------------------------------------------------------- parsing one value each


def _plain(value: Any) -> Any:
    """A NumPy scalar (`np.int64(5)`, `np.True_`, from pandas or a sampler) as the Python value."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            as_float = float(text)  # "10.0" from str(float) in some SDKs
            if as_float.is_integer():
                return int(as_float)
    raise ValueError("not an integer")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError("not a number")


_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("not True or False")


def _flag(value: Any) -> int:
    return int(_bool(value))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value.strip()


def _int_list(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        return tuple(_int(p) for p in parts)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(_int(v) for v in value)
    raise ValueError("not a comma-separated list of integers")


def _shape(value: Any) -> tuple[int, int, int]:
    dims = _int_list(value)
    if len(dims) != 3:
        raise ValueError("not three integers 'channels,height,width'")
    return dims[0], dims[1], dims[2]


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


# ---------------------------------------------------------------- the table of all 29


@dataclass(frozen=True)
class Spec:
    """How one hyperparameter is parsed and what the contract allows for it."""

    parse: Callable[[Any], Any]
    allowed: str
    check: Callable[[Any], bool] = lambda v: True
    required: bool = False
    render: Callable[[Any], str] = _render


def _positive(v: int) -> bool:
    return v > 0


def _unit(v: float) -> bool:
    return 0.0 <= v <= 1.0


def _choice(*names: str) -> Spec:
    return Spec(_text, "one of " + ", ".join(names), lambda v: v in names)


_UNIT = Spec(_float, "a float in [0, 1]", _unit)
_POSITIVE = Spec(_int, "a positive integer", _positive)
_FLAG = Spec(_flag, "0 or 1")

SPECS: dict[str, Spec] = {
    "num_classes": Spec(_int, "a positive integer", _positive, required=True),
    "num_training_samples": Spec(_int, "a positive integer", _positive, required=True),
    "augmentation_type": _choice(*AUGMENTATION_TYPES),
    "beta_1": _UNIT,
    "beta_2": _UNIT,
    "checkpoint_frequency": Spec(_int, "a positive integer no greater than epochs", _positive),
    "early_stopping": Spec(_bool, "True or False"),
    "early_stopping_min_epochs": _POSITIVE,
    "early_stopping_patience": _POSITIVE,
    "early_stopping_tolerance": _UNIT,
    "epochs": _POSITIVE,
    "eps": _UNIT,
    "gamma": _UNIT,
    "image_shape": Spec(
        _shape, "'channels,height,width' with three positive integers", lambda v: min(v) > 0
    ),
    "kv_store": _choice(*KV_STORES),
    "learning_rate": _UNIT,
    "lr_scheduler_factor": _UNIT,
    "lr_scheduler_step": Spec(
        _int_list,
        "ascending positive epochs separated by commas, e.g. '10,20'",
        lambda v: all(e > 0 for e in v) and list(v) == sorted(set(v)),
    ),
    "mini_batch_size": _POSITIVE,
    "momentum": _UNIT,
    "multi_label": _FLAG,
    "num_layers": Spec(
        _int,
        f"one of {list(IMAGENET_DEPTHS)} (ImageNet-style) or {list(CIFAR_DEPTHS)} (CIFAR-style)",
        lambda v: v in IMAGENET_DEPTHS + CIFAR_DEPTHS,
    ),
    "optimizer": _choice(*OPTIMIZER_NAMES),
    "precision_dtype": _choice(*PRECISIONS),
    "resize": _POSITIVE,
    "top_k": Spec(_int, "an integer larger than 1", lambda v: v > 1),
    "use_pretrained_model": _FLAG,
    "use_weighted_loss": _FLAG,
    "weight_decay": _UNIT,
}


_RULES: dict[str, tuple[str, ...]] = {
    # name checked by a cross-field rule -> the names the rule reads beside it
    "checkpoint_frequency": ("epochs",),
    "top_k": ("num_classes",),
    "use_pretrained_model": ("num_layers", "image_shape"),
    "use_weighted_loss": ("multi_label",),
    "resize": ("image_shape",),
}


def _depends_on(name: str, invalid: set[str]) -> bool:
    return any(other in invalid for other in _RULES.get(name, ()))


def _cross_field_problems(hp: dict[str, Any], invalid: set[str]) -> list[str]:
    """Rules that involve more than one hyperparameter; a rule is skipped when one of its names
    already has a problem (a default in its place would give a misleading message)."""
    hp = {k: v for k, v in hp.items() if not _depends_on(k, invalid)}
    problems = []
    epochs = hp.get("epochs", DEFAULT_EPOCHS)
    if hp.get("checkpoint_frequency") is not None and hp["checkpoint_frequency"] > epochs:
        problems.append(
            f"checkpoint_frequency must be no greater than epochs ({epochs}), "
            f"but got {hp['checkpoint_frequency']}"
        )
    if hp.get("top_k") is not None and "num_classes" in hp and hp["top_k"] > hp["num_classes"]:
        problems.append(
            f"top_k must be no greater than num_classes ({hp['num_classes']}), "
            f"but got {hp['top_k']}"
        )
    shape = hp.get("image_shape", (3, 224, 224))
    if hp.get("use_pretrained_model"):
        if hp.get("num_layers", 152) not in IMAGENET_DEPTHS:
            problems.append(
                f"use_pretrained_model=1 needs num_layers in {list(IMAGENET_DEPTHS)}, "
                f"but got num_layers={hp.get('num_layers')}"
            )
        if shape[1:] != (224, 224) or shape[0] != 3:
            problems.append(
                "use_pretrained_model=1 needs image_shape '3,224,224' (pretrained models use a "
                f"fixed 224x224 size), but got image_shape '{_render(shape)}'"
            )
    if hp.get("use_weighted_loss") and not hp.get("multi_label"):
        problems.append(
            "use_weighted_loss=1 is only allowed with multi_label=1, but multi_label is 0"
        )
    resize = hp.get("resize")
    if resize is not None and resize < max(shape[1:]):
        problems.append(
            f"resize must be at least the crop size max(height, width) = {max(shape[1:])} of "
            f"image_shape '{_render(shape)}', but got {resize}"
        )
    return problems


def parse_hyperparameters(values: Mapping[str, Any]) -> Hyperparameters:
    """Parse and validate hyperparameters given typed or as SageMaker's strings.

    Raises `HyperparameterError` listing every problem: missing required names, unknown names (with
    the closest known one), values of the wrong type or outside the contract, and cross-field rules.
    """
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for name, raw in values.items():
        if not isinstance(name, str):  # a YAML key such as `1:`, `null:` or `yes:`
            problems.append(f"unknown hyperparameter '{name}' (a name is text, got {name!r})")
            continue
        if name.startswith(_IGNORED_PREFIXES):
            continue
        spec = SPECS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, SPECS, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"unknown hyperparameter '{name}'{hint}")
            continue
        blank = isinstance(raw, str) and not raw.strip() and name != "lr_scheduler_step"
        if raw is None or blank:
            if spec.required:
                problems.append(f"{name} is required: {spec.allowed}")
            continue
        try:
            value = spec.parse(_plain(raw))
        except (ValueError, TypeError):
            problems.append(f"{name} must be {spec.allowed}, but got {raw!r}")
            continue
        if not spec.check(value):
            problems.append(f"{name} must be {spec.allowed}, but got {raw!r}")
            continue
        parsed[name] = value
    for name, spec in SPECS.items():
        if spec.required and name not in values:
            problems.append(f"{name} is required: {spec.allowed}")
    problems += _cross_field_problems(parsed, set(values) - set(parsed))
    if problems:
        raise HyperparameterError(problems)
    return Hyperparameters(**parsed)


def load_hyperparameters_file(path: str | Path) -> dict[str, Any]:
    """Read a SageMaker-style `hyperparameters.json` (a JSON object) without validating it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HyperparameterError(f"hyperparameters file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise HyperparameterError(
            f"hyperparameters file {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise HyperparameterError(
            f"hyperparameters file {path} must hold a JSON object of name: value, "
            f"but holds a {type(data).__name__}"
        )
    return data
