"""`tune predict`: class probabilities for image files, printed as SageMaker's endpoint answers."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["command"]


@click.command(
    "predict",
    help="""Print class probabilities for each image with a trained model.tar.gz.

    Each image is resized to the model's image_shape without keeping its aspect ratio, as the
    SageMaker endpoint does. One JSON line per image, in the order given:
    {"prediction": [p0, p1, ...]} (softmax; per-class sigmoid for multi_label models).
    """,
)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The model.tar.gz written by `tune train` or a tuning study.",
)
@click.option(
    "--checkpoint",
    type=int,
    default=None,
    help="Use the archive's checkpoint of this epoch instead of the final model.",
)
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def command(model_path: Path, checkpoint: int | None, images: tuple[Path, ...]) -> None:
    """Load the model once and print one prediction line per image."""
    from trainer.predict import Predictor

    predictor = Predictor.from_archive(model_path, checkpoint=checkpoint)
    probabilities = predictor.predict(list(images))
    for row in probabilities:
        click.echo(json.dumps({"prediction": [round(float(p), 6) for p in row]}))
