"""The tuning orchestrator: search-space YAML -> Optuna + Ray Tune + ASHA, resumable.

Names are imported on first use, so `import tuner` (and `tune --help`) does not import Ray or torch.

>>> from tuner import load_space, run_study          # doctest: +SKIP
>>> summary = run_study(load_space("search_spaces/quickstart.yaml"))
"""

from __future__ import annotations

from trainer.lazy_exports import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "SearchSpaceError": "tuner.errors",
    "SearchSpace": "tuner.space",
    "load_space": "tuner.space",
    "space_from_mapping": "tuner.space",
    "run_study": "tuner.study",
    "StudySummary": "tuner.summary",
    "summarize_study": "tuner.study.results",
    "format_leaderboard": "tuner.study.results",
    "convert_tuning_job": "tuner.space.sagemaker",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
