"""`tune convert`: a SageMaker tuning-job JSON written as a search-space YAML."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["command"]


@click.command(
    "convert",
    help="""Write the SageMaker tuning-job definition SAGEMAKER_JSON as a search-space YAML.

    SAGEMAKER_JSON is a CreateHyperParameterTuningJob request body (as the SageMaker Python SDK
    sends it), a DescribeHyperParameterTuningJob response, or a bare
    HyperParameterTuningJobConfig. Prints which fields were mapped to which YAML key and which
    were ignored and why (S3 URIs, instance types, roles); the YAML starts with the same report.
    The result is validated like any search space before it is written.

    \b
    Example:
      tune convert tuning-job.json --data data/quickstart -o search_spaces/from-sagemaker.yaml
    """,
)
@click.argument(
    "json_path",
    metavar="SAGEMAKER_JSON",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file to write (default: print it).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The local data directory (data.path); without it data.path must be edited.",
)
def command(json_path: Path, output: Path | None, data_dir: Path | None) -> None:
    from tuner.space.sagemaker import convert_tuning_job, space_from_sagemaker

    conversion = convert_tuning_job(json_path, data_dir=data_dir)
    if data_dir is not None:
        space_from_sagemaker(conversion, source=json_path)  # everything else checked now
    text = conversion.to_yaml()
    if output is None:
        click.echo(text, nl=False)
        return
    for line in conversion.report_lines():
        click.echo(line, err=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, output)
    click.echo(f"wrote {output}", err=True)
