"""Reading a study directory: statuses, the leaderboard, the best trial's files, `tune results`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from tuner.cli import cli
from tuner.layout import write_study_file
from tuner.study import format_leaderboard, summarize_study

FIXED = {
    "num_classes": 10,
    "num_training_samples": 300,
    "num_layers": 20,
    "image_shape": "3,32,32",
    "epochs": 3,
}


def make_trial(
    study: Path,
    trial_id: str,
    config: dict,
    accuracies: list[float],
    *,
    finished: bool = False,
    error: str | None = None,
    tail: str = "",
) -> Path:
    trial = study / f"trial_{trial_id}"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(config))
    lines = [
        json.dumps(
            {
                "epoch": float(i + 1),
                "validation:accuracy": a,
                "train:loss": 1.0,
                "trial_id": trial_id,
                "done": False,
            }
        )
        for i, a in enumerate(accuracies)
    ]
    (trial / "result.json").write_text("\n".join(lines) + "\n" + tail)
    if finished:
        model = trial / "output" / "model.tar.gz"
        model.parent.mkdir()
        model.write_bytes(b"model of " + trial_id.encode())
        (trial / "outcome.json").write_text(json.dumps({"model_path": str(model)}))
    if error:
        (trial / "error.txt").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return trial


def make_study(tmp_path: Path) -> Path:
    study = tmp_path / "studies" / "s"
    write_study_file(
        study,
        {
            "name": "s",
            "objective": "validation:accuracy",
            "mode": "max",
            "fixed": FIXED,
            "searched": ["learning_rate", "optimizer"],
        },
    )
    make_trial(
        study, "a", {"learning_rate": 0.1, "optimizer": "sgd"}, [0.2, 0.3, 0.35], finished=True
    )
    # replayed epoch 2 after a resume, and a line cut by a kill: each epoch counts once
    make_trial(
        study,
        "b",
        {"learning_rate": 0.01, "optimizer": "adam"},
        [0.3, 0.4, 0.4, 0.45],
        finished=True,
        tail='{"epoch": 4.0, "validation:acc',
    )
    (study / "trial_b" / "result.json").write_text(
        (study / "trial_b" / "result.json")
        .read_text()
        .replace('"epoch": 3.0', '"epoch": 2.0', 1)
        .replace('"epoch": 4.0', '"epoch": 3.0', 1)
    )
    make_trial(study, "c", {"learning_rate": 0.3, "optimizer": "sgd"}, [0.5])  # pruned, no model
    make_trial(
        study,
        "d",
        {"learning_rate": 0.2, "optimizer": "adam"},
        [],
        error="trainer.errors.DataError: image x.jpg is 32x32, smaller than 40x40",
    )
    (study / "trial_c" / "pruned.json").write_text(json.dumps({"epoch": 1}))
    return study


def test_statuses_sorting_and_the_best_trial(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    summary = summarize_study(study)
    board = summary.leaderboard
    assert list(board["trial_id"]) == ["c", "b", "a", "d"]
    assert list(board["status"]) == ["pruned", "finished", "finished", "failed"]
    assert list(board["epochs_run"]) == [1, 3, 3, 0]
    assert board.loc[board["trial_id"] == "b", "validation:accuracy"].item() == 0.45
    assert "smaller than 40x40" in board.loc[board["trial_id"] == "d", "error"].item()
    assert board.loc[0, "num_layers"] == "20"  # every hyperparameter, fixed ones included
    # the pruned trial scored higher but has no model: the best is the best finished trial
    assert summary.best_trial_id == "b" and summary.best_value == 0.45
    assert summary.best_model_path == study / "best" / "model.tar.gz"
    assert summary.best_model_path.read_bytes() == b"model of b"
    hp = json.loads((study / "best" / "hyperparameters.json").read_text())
    assert hp == summary.best_hyperparameters
    assert hp["optimizer"] == "adam" and hp["learning_rate"] == "0.01" and hp["epochs"] == "3"
    assert [h["epoch"] for h in summary.histories["b"]] == [1.0, 2.0, 3.0]
    assert (
        (study / "leaderboard.csv")
        .read_text()
        .splitlines()[0]
        .startswith("trial_id,status,epochs_run,validation:accuracy,learning_rate,optimizer")
    )


def test_the_printed_leaderboard_shows_only_varying_hyperparameters(tmp_path: Path) -> None:
    summary = summarize_study(make_study(tmp_path))
    text = format_leaderboard(summary.leaderboard, "validation:accuracy")
    header = text.splitlines()[0].split()
    assert header[:6] == [
        "trial_id",
        "status",
        "epochs_run",
        "validation:accuracy",
        "learning_rate",
        "optimizer",
    ]
    assert "num_layers" not in header and header[-1] == "error"


def test_a_conditional_hyperparameter_only_one_trial_sampled_is_shown() -> None:
    nan = float("nan")
    frame = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["finished", "pruned", "pruned"],
            "epochs_run": [9, 1, 1],
            "validation:accuracy": [0.48, 0.12, 0.1],
            "optimizer": ["adam", "rmsprop", "adam"],
            "beta_1": [0.9, nan, 0.85],
            "gamma": [nan, 0.88, nan],
            "lr_scheduler_step": [(6, 8), (6, 8), (6, 8)],
            "num_layers": ["20", "20", "20"],
        }
    )
    header = format_leaderboard(frame, "validation:accuracy").splitlines()[0].split()
    assert header[4:] == ["optimizer", "beta_1", "gamma"]
    # the columns come from every trial, also those a limit leaves out, which it says
    lines = format_leaderboard(frame, "validation:accuracy", limit=1).splitlines()
    assert lines[0].split() == header and lines[1].split()[0] == "a"
    assert lines[2:] == ["(1 of 3 trials shown)"]
    assert len(format_leaderboard(frame, "validation:accuracy", limit=3).splitlines()) == 4


def test_tune_results_prints_and_writes_csv(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    out = tmp_path / "board.csv"
    result = CliRunner().invoke(cli, ["results", str(study), "--top", "2", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 failed, 2 finished, 1 pruned" in result.output
    assert "best trial b: validation:accuracy=0.4500" in result.output
    assert out.read_text().count("\n") == 5
    body = result.output.split("\n\n")[0].splitlines()
    assert len(body) == 4 and body[-1] == "(2 of 4 trials shown)"  # header, top 2, the count


def test_tune_results_on_a_folder_that_is_not_a_study(tmp_path: Path) -> None:
    from tuner.cli import main

    try:
        main(["results", str(tmp_path)])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("expected exit code 2")


def test_the_pruned_log_is_per_trial_and_a_finished_trial_is_not_pruned(tmp_path: Path) -> None:
    import pickle

    from tuner.layout import PrunedLog

    log = PrunedLog(tmp_path)
    log.record("p", 2)
    log.record("f", 1)
    (tmp_path / "trial_f" / "outcome.json").write_text('{"model_path": "m"}')
    restored = pickle.loads(pickle.dumps(log))  # as Ray restores the scheduler and searcher
    assert [restored.epoch(t) for t in ("p", "f", "x")] == [2, None, None]
    assert json.loads((tmp_path / "trial_p" / "pruned.json").read_text()) == {"epoch": 2}
    assert not list(tmp_path.glob("*.json"))  # nothing at the top, where Ray syncs *.json
    PrunedLog(tmp_path).record("p", 1)  # another instance sees and replaces it at once
    assert log.epoch("p") == 1
