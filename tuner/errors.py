"""Exception types of the tuner; all are `UserError`s, which the CLI reports without a traceback."""

from __future__ import annotations

from trainer.errors import UserError

__all__ = ["SearchSpaceError", "UserError"]


class SearchSpaceError(UserError, ValueError):
    """An invalid search-space YAML or SageMaker tuning-job definition."""
