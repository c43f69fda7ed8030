"""`tune results`: a study's leaderboard, printed and written as CSV."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["command"]


@click.command(
    "results",
    help="""Print the leaderboard of the study in STUDY_DIR; write it to STUDY_DIR/leaderboard.csv.

    Rows are sorted by the objective, with the status (finished, pruned, failed), the epochs each
    trial ran and every hyperparameter (only the varying ones are printed; the CSV has all). The
    best finished trial's model.tar.gz and hyperparameters.json are copied to STUDY_DIR/best/.

    With --sync, what the study could not record while its MLflow tracking store was unreachable
    (spooled in STUDY_DIR/mlflow-spool/) is first recorded to that store; if it is still
    unreachable, nothing is printed and the exit code is 2 (the spool is kept for a later try).
    A `tune train --track` output directory can be synced the same way.

    \b
    Example:
      tune results studies/quickstart
      tune results studies/quickstart --sync
    """,
)
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--top", default=None, type=int, help="Print only the best N rows.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the leaderboard to this CSV file.",
)
@click.option(
    "--sync",
    is_flag=True,
    help="First record the MLflow operations spooled while the study's tracking store was down.",
)
def command(study_dir: Path, top: int | None, csv_path: Path | None, sync: bool) -> None:
    from tuner.layout import STUDY_FILE
    from tuner.study import format_leaderboard, summarize_study

    if sync:
        from tuner.tracking import sync_spool

        recorded = sync_spool(study_dir)  # TrackingUnavailableError: a message and exit code 2
        click.echo(
            f"mlflow: recorded {recorded} spooled operation{'' if recorded == 1 else 's'}"
            if recorded
            else "mlflow: nothing spooled, nothing to record"
        )
        if not (study_dir / STUDY_FILE).is_file():
            return  # a `tune train --track` output: its records were all there is
    summary = summarize_study(study_dir)
    frame = summary.leaderboard
    click.echo(format_leaderboard(frame, summary.objective, limit=top))
    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    click.echo("\n" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if csv_path is not None:
        frame.to_csv(csv_path, index=False)
    click.echo(f"leaderboard: {study_dir.resolve() / 'leaderboard.csv'}")
    if summary.best_trial_id is not None and summary.best_value is not None:
        click.echo(
            f"best trial {summary.best_trial_id}: {summary.objective}={summary.best_value:.4f}"
        )
    if summary.best_model_path is not None:
        click.echo(f"best model: {summary.best_model_path}")
