"""Search-space YAML that issue 17's fuzzing found to end in a traceback or without a line: each is
now one `SearchSpaceError` whose problems carry the file's line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tuner.errors import SearchSpaceError
from tuner.space import load_space

HEAD = """\
study: {name: demo, directory: studies}
data: {path: data}
"""
FIXED = """\
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  image_shape: 3,32,32
"""


def _load(tmp_path: Path, text: str) -> SearchSpaceError:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as caught:
        load_space(path)
    return caught.value


@pytest.mark.parametrize(
    ("key", "name", "loaded"),
    [
        ("1", "1", "1"),
        ("null", "None", "None"),
        ("yes", "True", "True"),
        ("2024-01-31", "2024-01-31", "datetime.date(2024, 1, 31)"),
        ("0.5", "0.5", "0.5"),
    ],
)
def test_a_fixed_name_that_yaml_reads_as_no_string_is_an_unknown_name_with_its_line(
    tmp_path: Path, key: str, name: str, loaded: str
) -> None:
    error = _load(tmp_path, HEAD + FIXED + f"  {key}: 3\n")
    assert error.problems == [
        f"space.yaml:8: fixed.{name}: unknown hyperparameter '{name}' (a name is text, got "
        f"{loaded})"
    ]


def test_a_parameter_type_that_is_a_list_or_mapping_is_named(tmp_path: Path) -> None:
    text = HEAD + FIXED + "search:\n  learning_rate: {type: [continuous], low: 0.1, high: 0.2}\n"
    text += "  momentum: {type: {a: 1}, low: 0.1, high: 0.2}\n"
    error = _load(tmp_path, text)
    assert [p.split(": ", 2)[:2] for p in error.problems] == [
        ["space.yaml:9", "search.learning_rate.type"],
        ["space.yaml:10", "search.momentum.type"],
    ]


def test_a_key_named_like_a_parameter_type_is_an_unknown_key(tmp_path: Path) -> None:
    error = _load(tmp_path, HEAD + FIXED + "pruner:\n  integer: 1\n")
    assert len(error.problems) == 1
    assert error.problems[0].startswith("space.yaml:9: pruner.integer: unknown key 'integer'")


def test_a_character_yaml_forbids_is_reported_with_line_and_column(tmp_path: Path) -> None:
    error = _load(tmp_path, HEAD + "fixed:\n  num_classes: 1\x000\n")
    assert error.problems == [
        f"{tmp_path / 'space.yaml'}: YAML syntax error at line 4, column 17: "
        "the character #x0000 is not allowed in YAML"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!float when", "cannot read 'when' as !!float"),
        ("!!int 0xZZ", "cannot read '0xZZ' as !!int"),
        ("!!timestamp 2024-13-45", "cannot read '2024-13-45' as !!timestamp"),
    ],
)
def test_a_tagged_value_yaml_cannot_build_is_a_syntax_error_with_its_line(
    tmp_path: Path, value: str, message: str
) -> None:
    error = _load(tmp_path, textwrap.dedent(HEAD) + f"fixed:\n  epochs: {value}\n")
    assert len(error.problems) == 1
    assert "YAML syntax error at line 4, column 11: " + message in error.problems[0]
