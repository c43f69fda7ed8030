"""The hyperparameter contract: both input forms, every violation at once, the cross-field rules."""

from __future__ import annotations

import dataclasses
import json

import pytest

from trainer.errors import HyperparameterError
from trainer.hyperparameters import (
    SPECS,
    Hyperparameters,
    load_hyperparameters_file,
    parse_hyperparameters,
)

REQUIRED = {"num_classes": "10", "num_training_samples": "1000"}


def problems_of(values: dict[str, object]) -> list[str]:
    with pytest.raises(HyperparameterError) as info:
        parse_hyperparameters(values)
    return info.value.problems


def test_contract_has_all_29_with_the_pages_defaults() -> None:
    assert len(SPECS) == 29
    assert set(SPECS) == {f.name for f in dataclasses.fields(Hyperparameters)}
    hp = parse_hyperparameters(REQUIRED)
    assert (hp.epochs, hp.learning_rate, hp.mini_batch_size, hp.num_layers) == (30, 0.1, 32, 152)
    assert (hp.optimizer, hp.precision_dtype, hp.image_shape) == ("sgd", "float32", (3, 224, 224))
    assert (hp.beta_1, hp.beta_2, hp.eps, hp.gamma, hp.momentum) == (0.9, 0.999, 1e-8, 0.9, 0.9)
    assert (hp.weight_decay, hp.lr_scheduler_factor, hp.early_stopping_tolerance) == (
        0.0001,
        0.1,
        0.0,
    )
    assert (hp.early_stopping, hp.early_stopping_min_epochs, hp.early_stopping_patience) == (
        False,
        10,
        5,
    )
    assert hp.checkpoint_frequency is hp.top_k is hp.resize is hp.augmentation_type is None
    assert hp.lr_scheduler_step == ()


def test_string_form_and_typed_form_give_the_same_result() -> None:
    strings = {
        **REQUIRED,
        "learning_rate": "0.05",
        "early_stopping": "True",
        "use_pretrained_model": "0",
        "lr_scheduler_step": "10, 20",
        "image_shape": "3,32,32",
        "num_layers": "20",
        "mini_batch_size": "64.0",
        "optimizer": "nag",
        "eps": "1e-07",
        "multi_label": "1",
        "use_weighted_loss": "1",
        "top_k": "3",
        "resize": "40",
        "augmentation_type": "crop",
    }
    typed = {
        "num_classes": 10,
        "num_training_samples": 1000,
        "learning_rate": 0.05,
        "early_stopping": True,
        "use_pretrained_model": 0,
        "lr_scheduler_step": [10, 20],
        "image_shape": (3, 32, 32),
        "num_layers": 20,
        "mini_batch_size": 64,
        "optimizer": "nag",
        "eps": 1e-7,
        "multi_label": 1,
        "use_weighted_loss": True,
        "top_k": 3,
        "resize": 40,
        "augmentation_type": "crop",
    }
    from_strings, from_typed = parse_hyperparameters(strings), parse_hyperparameters(typed)
    assert from_strings == from_typed
    assert from_strings.lr_scheduler_step == (10, 20)
    assert from_strings.image_shape == (3, 32, 32)
    assert from_strings.early_stopping is True and from_strings.use_weighted_loss == 1


def test_to_strings_round_trips_and_is_all_strings() -> None:
    hp = parse_hyperparameters(
        {
            **REQUIRED,
            "lr_scheduler_step": "5,8",
            "top_k": 5,
            "image_shape": "1,28,28",
            "num_layers": 20,
            "eps": 1e-8,
        }
    )
    strings = hp.to_strings()
    assert all(isinstance(v, str) for v in strings.values())
    assert strings["lr_scheduler_step"] == "5,8" and strings["image_shape"] == "1,28,28"
    assert "resize" not in strings  # unset stays unset
    assert parse_hyperparameters(strings) == hp
    assert parse_hyperparameters(json.loads(json.dumps(strings))) == hp


def test_every_violation_is_reported_at_once_naming_field_value_and_rule() -> None:
    problems = problems_of(
        {
            "num_classes": "ten",
            "learning_rate": "1.5",
            "optimizer": "adamw",
            "epochs": "0",
            "image_shape": "3,32",
            "early_stopping": "maybe",
            "multi_label": "2",
        }
    )
    text = "\n".join(problems)
    assert len(problems) == 8
    assert "num_classes must be a positive integer, but got 'ten'" in text
    assert "learning_rate must be a float in [0, 1], but got '1.5'" in text
    assert "optimizer must be one of sgd, adam, rmsprop, nag, but got 'adamw'" in text
    assert "epochs must be a positive integer, but got '0'" in text
    assert "image_shape must be 'channels,height,width'" in text
    assert "early_stopping must be True or False, but got 'maybe'" in text
    assert "multi_label must be 0 or 1, but got '2'" in text
    assert "num_training_samples is required" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"num_classes": True}, "num_classes must be a positive integer, but got True"),
        ({"mini_batch_size": 2.5}, "mini_batch_size must be a positive integer, but got 2.5"),
        ({"momentum": "nan"}, "momentum must be a float in [0, 1], but got 'nan'"),
        ({"weight_decay": -0.1}, "weight_decay must be a float in [0, 1], but got -0.1"),
        ({"lr_scheduler_step": "20,10"}, "lr_scheduler_step must be ascending positive epochs"),
        ({"lr_scheduler_step": "0,10"}, "lr_scheduler_step must be ascending positive epochs"),
        ({"lr_scheduler_step": "ten"}, "lr_scheduler_step must be ascending positive epochs"),
        ({"num_layers": 19}, "num_layers must be one of [18, 34, 50, 101, 152, 200]"),
        ({"kv_store": "local"}, "kv_store must be one of dist_sync, dist_async, but got 'local'"),
        ({"precision_dtype": "bfloat16"}, "precision_dtype must be one of float32, float16"),
        ({"top_k": 1}, "top_k must be an integer larger than 1, but got 1"),
        ({"image_shape": "3,0,32"}, "image_shape must be 'channels,height,width'"),
        ({"augmentation_type": "flip"}, "augmentation_type must be one of crop, crop_color"),
    ],
)
def test_out_of_range_or_wrongly_typed_value_is_named(values: dict, expected: str) -> None:
    problems = problems_of({**REQUIRED, **values})
    assert len(problems) == 1 and expected in problems[0]


def test_missing_required_names_are_each_reported() -> None:
    assert problems_of({}) == [
        "num_classes is required: a positive integer",
        "num_training_samples is required: a positive integer",
    ]
    assert problems_of({"num_classes": "", "num_training_samples": None}) == [
        "num_classes is required: a positive integer",
        "num_training_samples is required: a positive integer",
    ]


def test_unknown_name_is_an_error_suggesting_the_closest_known_one() -> None:
    problems = problems_of({**REQUIRED, "learning_rte": "0.1", "zzz": "1"})
    assert "unknown hyperparameter 'learning_rte'; did you mean 'learning_rate'?" in problems
    assert "unknown hyperparameter 'zzz'" in problems


def test_sagemaker_added_keys_are_ignored() -> None:
    hp = parse_hyperparameters(
        {**REQUIRED, "_tuning_objective_metric": "validation:accuracy", "sagemaker_program": "x"}
    )
    assert hp.num_classes == 10


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"epochs": 5, "checkpoint_frequency": 6},
            "checkpoint_frequency must be no greater than epochs (5), but got 6",
        ),
        ({"checkpoint_frequency": 31}, "no greater than epochs (30), but got 31"),
        ({"top_k": 11}, "top_k must be no greater than num_classes (10), but got 11"),
        (
            {"use_pretrained_model": 1, "num_layers": 20},
            "use_pretrained_model=1 needs num_layers in [18, 34, 50, 101, 152, 200]",
        ),
        (
            {"use_pretrained_model": 1, "num_layers": 18, "image_shape": "3,32,32"},
            "use_pretrained_model=1 needs image_shape '3,224,224'",
        ),
        (
            {"use_pretrained_model": 1, "num_layers": 18, "image_shape": "1,224,224"},
            "use_pretrained_model=1 needs image_shape '3,224,224'",
        ),
        ({"use_weighted_loss": 1}, "use_weighted_loss=1 is only allowed with multi_label=1"),
        (
            {"image_shape": "3,32,40", "resize": 36},
            "resize must be at least the crop size max(height, width) = 40",
        ),
    ],
)
def test_cross_field_rule_is_enforced(values: dict, expected: str) -> None:
    problems = problems_of({**REQUIRED, **values})
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    "values",
    [
        {"epochs": 5, "checkpoint_frequency": 5},
        {"top_k": 10},
        {"use_pretrained_model": 1, "num_layers": 50, "image_shape": "3,224,224"},
        {"use_weighted_loss": 1, "multi_label": 1},
        {"image_shape": "3,32,40", "resize": 40},
    ],
)
def test_cross_field_rule_allows_the_boundary(values: dict) -> None:
    parse_hyperparameters({**REQUIRED, **values})


def test_cross_field_rules_and_value_problems_are_reported_together() -> None:
    problems = problems_of(
        {
            **REQUIRED,
            "epochs": 2,
            "checkpoint_frequency": 3,
            "use_weighted_loss": 1,
            "optimizer": "x",
        }
    )
    assert len(problems) == 3


def test_replace_revalidates() -> None:
    hp = parse_hyperparameters({**REQUIRED, "epochs": 5})
    assert hp.replace(learning_rate=0.01).learning_rate == 0.01
    assert hp.replace(epochs=4) == parse_hyperparameters({**REQUIRED, "epochs": 4})
    with pytest.raises(HyperparameterError, match="checkpoint_frequency must be no greater"):
        hp.replace(checkpoint_frequency=6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.epochs = 3  # type: ignore[misc]


def test_hyperparameters_file(tmp_path) -> None:
    good = tmp_path / "hyperparameters.json"
    good.write_text(json.dumps(REQUIRED))
    assert parse_hyperparameters(load_hyperparameters_file(good)).num_classes == 10
    (tmp_path / "bad.json").write_text("{\n  'num_classes': 1}")
    with pytest.raises(HyperparameterError, match=r"bad.json is not valid JSON: .* at line 2"):
        load_hyperparameters_file(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(HyperparameterError, match="must hold a JSON object .* but holds a list"):
        load_hyperparameters_file(tmp_path / "list.json")
    with pytest.raises(HyperparameterError, match="does not exist"):
        load_hyperparameters_file(tmp_path / "missing.json")


def test_numpy_scalars_from_samplers_or_pandas_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    hp = parse_hyperparameters(
        {
            "num_classes": np.int64(10),
            "num_training_samples": 100,
            "learning_rate": np.float32(0.25),
            "early_stopping": np.True_,
        }
    )
    assert (hp.num_classes, hp.learning_rate, hp.early_stopping) == (10, 0.25, True)
    assert type(hp.num_classes) is int and type(hp.learning_rate) is float


@pytest.mark.parametrize(
    ("values", "only"),
    [
        ({"epochs": "many", "checkpoint_frequency": 31}, "epochs must be"),
        ({"multi_label": "yes", "use_weighted_loss": 1}, "multi_label must be"),
        ({"image_shape": "3,x,32", "resize": 10}, "image_shape must be"),
        ({"num_classes": "ten", "top_k": 11}, "num_classes must be"),
    ],
)
def test_cross_field_rule_is_skipped_when_its_other_field_is_invalid(values, only) -> None:
    problems = problems_of({**REQUIRED, **values})
    assert len(problems) == 1 and problems[0].startswith(only), problems
