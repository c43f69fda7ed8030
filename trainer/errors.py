"""Exception types for problems in what the user gave us (hyperparameters, data, files).

The CLI turns any `UserError` into one clear message and exit code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["UserError", "HyperparameterError", "DataError"]


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
