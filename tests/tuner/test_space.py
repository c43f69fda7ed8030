"""The search-space YAML: every bad input is reported before anything starts, all at once, with its
YAML path and line; sampled combinations are valid by construction."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from trainer.hyperparameters import parse_hyperparameters
from tuner.errors import SearchSpaceError
from tuner.space import SearchSpace, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

GOOD = """\
study: {name: demo, directory: studies, seed: 3}
data: {path: data}
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  image_shape: 3,32,32
  epochs: 4
search:
  learning_rate: {type: continuous, low: 1e-4, high: 0.5, scaling: log}
  mini_batch_size: {type: integer, low: 16, high: 128, scaling: log}
  optimizer: {type: categorical, values: [sgd, adam, nag, rmsprop]}
  momentum: {type: continuous, low: 0.5, high: 0.99, scaling: reverse_log,
             when: {optimizer: [sgd, nag]}}
  weight_decay: {type: continuous, low: 0.0, high: 0.01, step: 0.001, when: {optimizer: [sgd, nag]}}
  beta_1: {type: continuous, low: 0.8, high: 0.95, when: {optimizer: [adam]}}
  gamma: {type: continuous, low: 0.8, high: 0.99, when: {optimizer: [rmsprop]}}
  top_k: {type: integer, low: 2, high: 5}
limits: {max_trials: 12, max_parallel: 2}
tracking: {enabled: false}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SearchSpaceError) as info:
        load_space(write(tmp_path, text))
    return info.value.problems


def test_a_good_space_loads_with_paths_resolved_from_the_yaml_folder(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    assert space.name == "demo"
    assert space.study_dir == (tmp_path / "studies" / "demo").resolve()
    assert Path(space.data.path) == (tmp_path / "data").resolve()
    assert space.mode == "max" and space.objective == "validation:accuracy"
    assert space.max_t == 4
    assert [d.name for d in space.dimensions][:3] == [
        "learning_rate",
        "mini_batch_size",
        "optimizer",
    ]
    lr = space.dimensions[0].distribution
    assert lr.low == pytest.approx(1e-4) and lr.log  # `1e-4` (YAML 1.1 string) read as a number


def test_the_yaml_1_1_exponent_trap_is_read_as_a_number_everywhere(tmp_path: Path) -> None:
    text = GOOD.replace("  epochs: 4\n", "  epochs: 4\n  eps: 1e-7\n")
    space = load_space(write(tmp_path, text))
    assert space.hyperparameters({}).eps == pytest.approx(1e-7)


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "search:\n  a: [1, 2\n  b: 3\n")
    assert "line 3" in problems[0] and "syntax" in problems[0]


BAD = """\
study: {name: demo, directry: studies}
data: {path: no-such-dir}
fixed: {num_classes: 10, num_training_samples: 300, learning_rat: 0.1, mini_batch_size: -4}
search:
  momentum: {type: continuous, low: 0.9, high: 0.5}
  weight_decay: {type: continuous, low: 0.0, high: 0.1, scaling: log}
  learning_rate: {type: continuous, low: 0.001, high: 3.0}
  lr_momentum: {type: continuous, low: 0.1, high: 0.2}
  beta_1: {type: continuous, lwo: 0.1, high: 0.2}
objective: {metric: validation:f1_score}
limits: {max_trials: 0, max_parallel: -2, max_wall_seconds: 0}
"""


def test_every_problem_is_reported_at_once_with_its_yaml_path_and_line(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, BAD)
    text = "\n".join(problems)
    expected = {
        "study.directry": "did you mean 'directory'",  # unknown key, closest name
        "data.path": "does not exist",  # data path missing
        "fixed.learning_rat": "did you mean 'learning_rate'",  # unknown hyperparameter (fixed)
        "fixed.mini_batch_size": "positive integer",  # fixed value outside the contract
        "search.momentum.low": "low <= high",  # low > high
        "search.weight_decay.low": "log scaling needs low > 0",
        "search.learning_rate.high": "float in [0, 1]",  # range outside the contract
        "search.lr_momentum": "unknown hyperparameter",
        "search.beta_1.lwo": "did you mean 'low'",
        "search.beta_1.low": "is required",
        "objective.metric": "never reports 'validation:f1_score'",
        "limits.max_trials": "greater than or equal to 1",
        "limits.max_parallel": "greater than or equal to 1",
        "limits.max_wall_seconds": "greater than 0",
    }
    for path, words in expected.items():
        hits = [p for p in problems if f": {path}: " in p]
        assert hits, f"no problem reported at {path}:\n{text}"
        assert words in hits[0], hits[0]
    assert "space.yaml:5: search.momentum.low" in text  # file:line: yaml.path
    assert len(problems) == len(expected)


def test_unknown_sections_and_parameter_types_are_named(tmp_path: Path) -> None:
    text = GOOD + "limit: {max_trials: 3}\n"
    text = text.replace("type: categorical, values: [sgd", "type: choice, values: [sgd")
    problems = problems_of(tmp_path, text)
    assert any("limit: unknown section 'limit'; did you mean 'limits'" in p for p in problems)
    assert any(
        "search.optimizer.type: type must be one of" in p and "'choice'" in p for p in problems
    )


def test_cross_field_rules_are_checked_at_the_range_ends(tmp_path: Path) -> None:
    text = GOOD.replace(
        "top_k: {type: integer, low: 2, high: 5}", "top_k: {type: integer, low: 2, high: 12}"
    )
    text = text.replace("search:\n", "search:\n  resize: {type: categorical, values: [16, 40]}\n")
    problems = problems_of(tmp_path, text)
    assert any(
        "search.top_k.high" in p and "no greater than num_classes (10)" in p for p in problems
    )
    assert any("search.resize.values.0" in p and "resize must be at least" in p for p in problems)


def test_pairs_of_searched_values_are_checked_together(tmp_path: Path) -> None:
    text = GOOD.replace(
        "search:\n",
        "search:\n  epochs: {type: integer, low: 2, high: 6}\n"
        "  checkpoint_frequency: {type: integer, low: 1, high: 4}\n",
    ).replace("  epochs: 4\n", "")
    problems = problems_of(tmp_path, text)
    assert any(
        "search.epochs.low" in p
        and "search.checkpoint_frequency.high" in p
        and "no greater than epochs" in p
        for p in problems
    ), problems


def test_conditions_must_name_a_searched_categorical_and_its_values(tmp_path: Path) -> None:
    text = GOOD.replace("when: {optimizer: [adam]}", "when: {optimizer: [adamw]}")
    text = text.replace("when: {optimizer: [rmsprop]}", "when: {mini_batch_size: [16]}")
    problems = problems_of(tmp_path, text)
    assert any("search.beta_1.when.optimizer" in p and "adamw" in p for p in problems)
    assert any("search.gamma.when.mini_batch_size" in p and "categorical" in p for p in problems)


def test_searching_the_data_description_or_a_fixed_name_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        "search:\n",
        "search:\n  num_classes: {type: integer, low: 2, high: 10}\n"
        "  epochs: {type: integer, low: 2, high: 3}\n",
    )
    problems = problems_of(tmp_path, text)
    assert any("search.num_classes" in p and "cannot be searched" in p for p in problems)
    assert any("search.epochs" in p and "both fixed and searched" in p for p in problems)


def test_sampler_names_and_options_are_checked(tmp_path: Path) -> None:
    text = GOOD + "sampler: {name: tpee, options: {n_startup_trails: 3}}\n"
    problems = problems_of(tmp_path, text)
    assert any("sampler.name" in p and "did you mean 'tpe'" in p for p in problems)
    text = GOOD + "sampler: {name: tpe, options: {n_startup_trails: 3}}\n"
    problems = problems_of(tmp_path, text)
    assert any(
        "sampler.options.n_startup_trails" in p and "n_startup_trials" in p for p in problems
    )


def test_pruner_bounds_follow_epochs(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, GOOD + "pruner: {grace_period: 6, max_t: 8}\n")
    assert any("pruner.max_t" in p and "no greater than epochs (4)" in p for p in problems)
    problems = problems_of(tmp_path, GOOD + "pruner: {grace_period: 6}\n")
    assert any("pruner.grace_period" in p and "max_t (4)" in p for p in problems)


def sample(space: SearchSpace, sampler: optuna.samplers.BaseSampler, n: int) -> list[dict]:
    study = optuna.create_study(sampler=sampler, direction="maximize")
    configs = []
    for i in range(n):
        trial = study.ask()
        config = space.suggest(trial)
        configs.append(config)
        study.tell(trial, float(i % 7) / 7)
    return configs


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_conditional_spaces_sample_only_valid_combinations(tmp_path: Path, sampler: str) -> None:
    space = load_space(write(tmp_path, GOOD))
    make = {
        "random": optuna.samplers.RandomSampler(seed=0),
        "tpe": optuna.samplers.TPESampler(
            seed=0, n_startup_trials=5, multivariate=True, group=True
        ),
    }
    configs = sample(space, make[sampler], 60)
    for config in configs:
        hp = space.hyperparameters(config)  # every one passes the trainer's contract
        optimizer = config["optimizer"]
        assert ("momentum" in config) == (optimizer in ("sgd", "nag"))
        assert ("weight_decay" in config) == (optimizer in ("sgd", "nag"))
        assert ("beta_1" in config) == (optimizer == "adam")
        assert ("gamma" in config) == (optimizer == "rmsprop")
        assert hp.top_k is not None and hp.top_k <= hp.num_classes
        if "momentum" in config:
            assert 0.5 <= config["momentum"] <= 0.99  # reverse-log stays inside the range
        if "weight_decay" in config:
            steps = config["weight_decay"] / 0.001
            assert abs(steps - round(steps)) < 1e-6
    assert len({c["optimizer"] for c in configs}) == 4


def test_reverse_log_puts_more_samples_near_one(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    configs = sample(space, optuna.samplers.RandomSampler(seed=1), 400)
    momenta = [c["momentum"] for c in configs if "momentum" in c]
    above = sum(m > 0.9 for m in momenta) / len(momenta)
    # linear sampling of [0.5, 0.99] puts 18% above 0.9; reverse-log about 56%
    assert above > 0.4


def test_grid_sampler_needs_discrete_parameters(tmp_path: Path) -> None:
    text = """\
    data: {path: data}
    fixed: {num_classes: 10, num_training_samples: 300}
    search:
      optimizer: {type: categorical, values: [sgd, adam]}
      mini_batch_size: {type: integer, low: 16, high: 48, step: 16}
    sampler: {name: grid}
    tracking: {enabled: false}
    """
    space = load_space(write(tmp_path, text))
    from tuner.space.sampling import build_sampler

    sampler = build_sampler("grid", list(space.dimensions), seed=0, max_parallel=1, options={})
    configs = sample(space, sampler, 6)
    assert sorted((c["optimizer"], c["mini_batch_size"]) for c in configs) == sorted(
        (o, b) for o in ("sgd", "adam") for b in (16, 32, 48)
    )


def test_warm_start_points_are_checked_against_the_space(tmp_path: Path) -> None:
    text = GOOD + (
        "warm_start:\n  points:\n"
        "    - {learning_rate: 0.1, optimizer: sgd, momentum: 0.9}\n"
        "    - {learning_rate: 0.9, optimizer: sgdd, lr: 1}\n"
        "  studies: [no-such-study]\n"
    )
    problems = problems_of(tmp_path, text)
    assert any("warm_start.points.1.learning_rate" in p for p in problems)
    assert any("warm_start.points.1.optimizer" in p for p in problems)
    assert any("warm_start.points.1.lr" in p for p in problems)
    assert any("warm_start.studies.0" in p and "does not exist" in p for p in problems)
    assert not any("points.0" in p for p in problems)


def test_the_shipped_search_spaces_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "search_spaces"
    for path in sorted(root.glob("*.yaml")):
        if path.name == "resnet50.yaml" and not (root.parent / "data" / "imagenet").exists():
            with pytest.raises(SearchSpaceError) as info:
                load_space(path)
            assert [p for p in info.value.problems if "data.path" not in p] == []
            continue
        space = load_space(path)
        config = sample(space, optuna.samplers.RandomSampler(seed=0), 1)[0]
        parse_hyperparameters({**space.fixed, **config})
