"""Reading search-space YAML: YAML 1.2 numbers, syntax errors with line numbers, and the line of
every key so that schema problems can point at it.

PyYAML implements YAML 1.1, where `1e-4` (no dot) is the *string* "1e-4". A user writing a learning
rate that way means a number, so the loader here resolves YAML 1.2 floats (`1e-4`, `5E3`) as floats.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import SearchSpaceError

__all__ = ["load_yaml"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot (`1e-4`) as numbers, and whose
    errors in a tagged value (`!!float when`, `!!timestamp 2024-13-45`) carry the value's line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {tag}: {exc}", node.start_mark
            ) from None


_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _lines(
    node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int], loader: _Loader
) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, _key(key, loader))
            _lines(value, sub, out, loader)
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, str(i)), out, loader)


def _key(node: yaml.Node, loader: _Loader) -> str:
    """A mapping key as the problems name it: `str` of the loaded key (`null:` is 'None')."""
    if isinstance(node, yaml.ScalarNode):
        return str(loader.construct_object(node))
    return str(node.value)


def load_yaml(text: str, source: str | Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML `text` safely; return the data and a map from key path to 1-based line number.

    Raises `SearchSpaceError` naming `source`, the line and column of a syntax error.
    """
    loader = None
    try:
        loader = _Loader(text)  # parsed once: the nodes give the lines, then build the data
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise SearchSpaceError(f"{source}: YAML syntax error{where}: {what}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        what = f"the character #x{code:04x} is not allowed in YAML"
        raise SearchSpaceError(
            f"{source}: YAML syntax error at line {line}, column {column}: {what}"
        ) from None
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{source}: YAML syntax error: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _lines(node, (), lines, _Loader(""))
    return data, lines
