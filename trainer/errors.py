"""Exception types for problems in what the user gave us (hyperparameters, data, files).

The CLI turns any `UserError` into one clear message and exit code 2; anything else is a bug.
"""

from __future__ import annotations

import errno

__all__ = ["UserError", "HyperparameterError", "DataError", "StorageError", "storage_error"]


class UserError(Exception):
    """A problem with the user's input; `problems` lists every one found, each a full sentence."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)


class HyperparameterError(UserError, ValueError):
    """Invalid, missing or unknown hyperparameters."""


class DataError(UserError, ValueError):
    """A data directory, list, record or image that cannot be used as given."""


class StorageError(UserError):
    """A file could not be written: the disk is full, a quota or a file size limit was reached."""


_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would be larger than allowed (a file size limit, see ulimit -f)",
}


def storage_error(exc: OSError, path: object = None) -> StorageError | None:
    """`exc` as a `StorageError` naming `path` (or the file the OS named) when it says the disk is
    full or a size limit was reached; None for any other OSError."""
    if exc.errno not in _FULL:
        return None
    where = path if path is not None else exc.filename
    return StorageError(
        f"cannot write {where if where is not None else 'a file'}: {_FULL[exc.errno]} "
        f"({exc.strerror}); nothing was replaced: the previous file, if any, is unchanged"
    )
