"""A study's plots as PNG files, drawn offline with matplotlib (no browser, no network).

Optimisation history and learning curves come from the leaderboard and the per-epoch histories, so
pruned trials show with their partial curves; parameter importances and parallel coordinates come
from `optuna.visualization.matplotlib` when the study's Optuna study has enough complete trials.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from tuner.summary import StudySummary

__all__ = ["render_study_plots"]

_STYLE = {  # status -> (colour, line style, marker)
    "finished": ("tab:blue", "-", "o"),
    "pruned": ("tab:orange", "--", "x"),
    "failed": ("tab:red", ":", "v"),
}


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)
    return path


def _optimisation_history(summary: StudySummary, path: Path, order: list[str]) -> Path | None:
    board = summary.leaderboard
    if summary.objective not in board or board[summary.objective].dropna().empty:
        return None
    rank = {trial_id: index for index, trial_id in enumerate(order)}
    board = board.assign(
        _rank=[rank.get(str(t), len(rank) + i) for i, t in enumerate(board["trial_id"])]
    ).sort_values("_rank")
    board = board.reset_index(drop=True)
    figure, axis = plt.subplots(figsize=(7, 4))
    values = board[summary.objective]
    for status, (colour, _, marker) in _STYLE.items():
        mine = board["status"] == status
        shown = mine & values.notna()
        axis.scatter(
            board.index[shown],
            values[shown],
            c=colour,
            marker=marker,
            label=f"{status} ({int(mine.sum())})",
        )
    best = math.inf if summary.mode == "min" else -math.inf
    pick = min if summary.mode == "min" else max
    running = []
    for status, value in zip(board["status"], values, strict=True):
        if status == "finished" and value == value:  # NaN-safe
            best = pick(best, float(value))
        running.append(best if math.isfinite(best) else float("nan"))
    axis.plot(range(len(board)), running, color="black", label="best so far (finished)")
    xlabel = "trial (in order of start)" if order else "trial (leaderboard order)"
    axis.set(
        xlabel=xlabel, ylabel=summary.objective, title=f"{summary.study_name}: optimisation history"
    )
    axis.legend(loc="best")
    return _save(figure, path)


def _learning_curves(summary: StudySummary, path: Path, order: list[str]) -> Path | None:
    if not summary.histories:
        return None
    statuses = dict(
        zip(summary.leaderboard["trial_id"].astype(str), summary.leaderboard["status"], strict=True)
    )
    figure, axis = plt.subplots(figsize=(7, 4))
    labelled: set[str] = set()
    for trial_id, history in summary.histories.items():
        points = [
            (row["epoch"], row[summary.objective])
            for row in history
            if "epoch" in row and summary.objective in row
        ]
        if not points:
            continue
        status = statuses.get(str(trial_id), "finished")
        colour, style, marker = _STYLE.get(status, _STYLE["finished"])
        epochs, values = zip(*points, strict=True)
        axis.plot(
            epochs,
            values,
            color=colour,
            linestyle=style,
            alpha=0.8,
            label=None if status in labelled else status,
        )
        axis.plot(epochs[-1:], values[-1:], color=colour, marker=marker)
        labelled.add(status)
    axis.set(
        xlabel="epoch",
        ylabel=summary.objective,
        title=f"{summary.study_name}: learning curves (pruned dashed)",
    )
    axis.legend(loc="best")
    return _save(figure, path)


_Render = Callable[["StudySummary", Path, list[str]], Path | None]


def _optuna_plot(draw: Callable[..., Any]) -> _Render:
    def render(summary: StudySummary, path: Path, order: list[str]) -> Path | None:
        study = summary.optuna_study
        if study is None:
            return None
        from optuna.trial import TrialState

        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna.visualization.matplotlib is "experimental"
            axis = draw(study)
        figure = axis.figure if hasattr(axis, "figure") else axis.flat[0].figure
        figure.set_size_inches(8, 5)
        return _save(figure, path)

    return render


def _importances(study: Any) -> Any:
    from optuna.visualization.matplotlib import plot_param_importances

    return plot_param_importances(study)


def _parallel(study: Any) -> Any:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    return plot_parallel_coordinate(study)


PLOTS: dict[str, _Render] = {
    "optimization_history.png": _optimisation_history,
    "learning_curves.png": _learning_curves,
    "param_importances.png": _optuna_plot(_importances),
    "parallel_coordinates.png": _optuna_plot(_parallel),
}


def render_study_plots(
    summary: StudySummary, out_dir: Path, order: list[str] | None = None
) -> list[Path]:
    """Draw every plot the study has data for into `out_dir`; returns the files written.

    `order` lists trial ids in the order they started (the optimisation history's x axis);
    without it the leaderboard's order is used and the axis says so.
    """
    written = []
    for name, render in PLOTS.items():
        path = render(summary, Path(out_dir) / name, order or [])
        if path is not None:
            written.append(path)
    return written
