"""One-line notices for the user (`notice: ...`), carried as Python warnings of their own type.

Library code calls `notice(text)`; tests catch them with `pytest.warns(Notice)`. The CLI calls
`show_notices_as_lines()` once, after which a `Notice` prints as `notice: text` on stderr, without
the source path and line a plain `UserWarning` shows.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["Notice", "notice", "notices_to", "show_notices_as_lines"]


class Notice(UserWarning):
    """Something the user should know that does not stop the run."""


def notice(text: str) -> None:
    """Emit `text` as a `Notice` (shown once per distinct text)."""
    warnings.warn(text, Notice, stacklevel=2)


def _routing(emit: Callable[[str], None]) -> Callable[..., None]:
    """A `warnings.showwarning` that hands each `Notice` to `emit` as `notice: text` and every
    other warning to the one installed before it."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, Notice):
            emit(f"notice: {message}")
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def show_notices_as_lines(stream: TextIO | None = None) -> None:
    """Print every later `Notice` as one `notice: text` line on `stream` (default: stderr);
    other warnings keep Python's format. Calling it again changes nothing."""
    if getattr(warnings.showwarning, "prints_notices", False):
        return
    show = _routing(lambda line: print(line, file=stream or sys.stderr, flush=True))
    show.prints_notices = True  # type: ignore[attr-defined]
    warnings.showwarning = show


@contextlib.contextmanager
def notices_to(log: Callable[[str], None]) -> Iterator[None]:
    """Within the block, send each `Notice` to `log` as `notice: text` (e.g. a training run's
    log, which a Ray trial keeps), and other warnings where they would have gone."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", Notice)  # shown once per text even if others are off
        warnings.showwarning = _routing(log)
        yield
