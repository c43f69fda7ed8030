"""The `tune` command. Each subcommand lives in `tuner/commands/<name>.py` and is imported only
when it runs, so `tune --help` stays fast (torch and ray take seconds to import)."""

from __future__ import annotations

import importlib
import sys

import click

from trainer.errors import UserError, storage_error
from trainer.notices import show_notices_as_lines

__all__ = ["main"]

# name -> (module under tuner.commands, one-line help shown by `tune --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "Run (or resume) a tuning study from a search-space YAML or SageMaker JSON."),
    "train": ("train", "Train once with fixed hyperparameters, like one SageMaker training job."),
    "predict": ("predict", "Predict class probabilities for images with a model.tar.gz."),
    "serve": ("serve", "Serve a model behind SageMaker's endpoint contract (/ping, /invocations)."),
    "results": ("results", "Print a study's leaderboard and write it as CSV."),
    "convert": ("convert", "Write a SageMaker tuning-job JSON as a search-space YAML."),
    "pack": ("pack", "Pack a .lst and its images into MXNet RecordIO (.rec + .idx), like im2rec."),
    "ui": ("ui", "Start the MLflow UI on the study's tracking store (127.0.0.1)."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"tuner.commands.{COMMANDS[cmd_name][0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="image-classification-tuner")
def cli() -> None:
    """Train and tune the SageMaker Image Classification algorithm locally (PyTorch, Ray Tune,
    Optuna, MLflow)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `tune` console script: user errors become one message and exit code 2."""
    show_notices_as_lines()
    try:
        cli.main(args=argv, standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # a full disk hit by a write that names no file of ours
        error = storage_error(exc)
        if error is None:
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
