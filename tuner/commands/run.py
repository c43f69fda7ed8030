"""`tune run`: run (or resume) a tuning study from a search-space YAML or a SageMaker JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["command", "load_study_definition"]


def load_study_definition(
    path: Path, data_dir: Path | None, log: Callable[[str], Any] = click.echo
) -> Any:
    """A `SearchSpace` from a search-space YAML, or from a SageMaker tuning-job JSON (`.json`),
    reporting which SageMaker fields were mapped and which ignored."""
    from tuner.errors import SearchSpaceError
    from tuner.space import load_space

    if path.suffix.lower() != ".json":
        return load_space(path, data_dir=data_dir)
    from tuner.space.sagemaker import convert_tuning_job, space_from_sagemaker

    if data_dir is None:
        raise SearchSpaceError(
            f"{path}: a SageMaker definition's S3 data cannot be read locally; "
            "give the data directory with --data DIR"
        )

    conversion = convert_tuning_job(path, data_dir=data_dir)
    for line in conversion.report_lines():
        log(line)
    return space_from_sagemaker(conversion, source=path)


@click.command(
    "run",
    help="""Run a tuning study, or continue the one started from the same SPACE.

    SPACE is a search-space YAML (see docs/search-space.md) or a SageMaker
    CreateHyperParameterTuningJob request / HyperParameterTuningJobConfig as JSON (then give the
    data with --data; for a YAML, --data replaces data.path). The study lives in
    STUDY.directory/STUDY.name; running the same SPACE again
    continues it (a killed study loses no finished trial). Ends with the leaderboard, written to
    leaderboard.csv, and the best model in best/.

    With --dry-run it only checks everything a run checks (the data included), measures a few
    training steps and a validation pass of the space's model on this machine, and prints a
    forecast: epochs per trial under ASHA, seconds per epoch, the study's wall time and memory.

    \b
    Example:
      tune run search_spaces/quickstart.yaml
      tune run search_spaces/quickstart.yaml --dry-run
      tune run search_spaces/resnet50.yaml --data /data/caltech256 --dry-run
      tune run tuning-job.json --data data/quickstart
    """,
)
@click.argument(
    "space_path", metavar="SPACE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an earlier study; an error if there is none (without it an earlier "
    "study is continued when found, a new one started otherwise).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Data directory (train/ and validation/ channels): required for a SageMaker JSON (its "
    "S3 URIs cannot be used locally); for a YAML it replaces data.path.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check everything, calibrate one trial on this machine and print the study's forecast; "
    "start nothing and write nothing.",
)
@click.option("--top", default=10, show_default=True, help="Leaderboard rows to print.")
@click.option(
    "--verbose", is_flag=True, help="Also show Ray's, Optuna's and MLflow's own INFO/WARNING lines."
)
def command(
    space_path: Path,
    resume: bool,
    data_dir: Path | None,
    dry_run: bool,
    top: int,
    verbose: bool,
) -> None:
    from tuner.study import is_interrupted, run_study
    from tuner.study.results import format_leaderboard

    space = load_study_definition(space_path, data_dir)
    if dry_run:
        from tuner.study import forecast_study

        forecast = forecast_study(space, resume=True if resume else None, log=click.echo)
        for line in forecast.notices:
            click.echo(line)
        for line in forecast.lines():
            click.echo(line)
        click.echo("dry run: no study was started and nothing was written")
        return
    summary = run_study(space, resume=True if resume else None, verbose=verbose)
    click.echo("")
    click.echo(format_leaderboard(summary.leaderboard, summary.objective, limit=top))
    study_dir = space.study_dir
    click.echo(f"\nleaderboard: {study_dir / 'leaderboard.csv'}")
    if summary.best_trial_id is not None:
        click.echo(
            f"best trial {summary.best_trial_id}: {summary.objective}={summary.best_value:.4f}"
        )
    if summary.best_model_path is not None:
        click.echo(f"best model: {summary.best_model_path} (hyperparameters.json next to it)")
    if is_interrupted(summary):
        raise click.exceptions.Abort()
