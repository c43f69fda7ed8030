"""The study plots render offline as PNG files, pruned trials included."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from PIL import Image

from tuner.summary import StudySummary
from tuner.tracking.plots import render_study_plots

OBJECTIVE = "validation:accuracy"


def _summary(with_optuna: bool) -> StudySummary:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    rows, histories = [], {}
    for number in range(6):
        trial = study.ask()
        lr = trial.suggest_float("learning_rate", 1e-3, 0.5, log=True)
        batch = trial.suggest_categorical("mini_batch_size", [32, 64])
        epochs = 3 if number % 3 else 1  # every third trial "pruned" after one epoch
        curve = [min(0.95, lr * 2 + 0.1 * e) for e in range(1, epochs + 1)]
        study.tell(trial, curve[-1])
        trial_id = f"t{number}"
        status = "finished" if epochs == 3 else "pruned"
        histories[trial_id] = [{"epoch": float(e), OBJECTIVE: v} for e, v in enumerate(curve, 1)]
        rows.append(
            {
                "trial_id": trial_id,
                "status": status,
                "epochs_run": epochs,
                OBJECTIVE: max(curve),
                "learning_rate": lr,
                "mini_batch_size": batch,
            }
        )
    rows.append(
        {
            "trial_id": "t6",
            "status": "failed",
            "epochs_run": 0,
            OBJECTIVE: None,
            "learning_rate": 0.4,
            "mini_batch_size": 32,
        }
    )
    board = pd.DataFrame(rows)
    best = board[board.status == "finished"].sort_values(OBJECTIVE).iloc[-1]
    return StudySummary(
        study_name="plots",
        objective=OBJECTIVE,
        mode="max",
        leaderboard=board,
        best_trial_id=best.trial_id,
        best_value=best[OBJECTIVE],
        best_hyperparameters={"learning_rate": str(best.learning_rate)},
        best_model_path=None,
        histories=histories,
        optuna_study=study if with_optuna else None,
    )


def test_all_four_plots_render_as_png_without_a_browser(tmp_path: Path) -> None:
    summary = _summary(with_optuna=True)
    order = [f"t{n}" for n in range(7)]
    written = render_study_plots(summary, tmp_path, order=order)
    assert sorted(p.name for p in written) == [
        "learning_curves.png",
        "optimization_history.png",
        "parallel_coordinates.png",
        "param_importances.png",
    ]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200 and image.height > 150
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_without_an_optuna_study_the_history_and_curves_still_render(tmp_path: Path) -> None:
    written = render_study_plots(_summary(with_optuna=False), tmp_path)
    assert sorted(p.name for p in written) == ["learning_curves.png", "optimization_history.png"]
