"""`tune predict`: class probabilities for image files, printed as SageMaker's endpoint answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["command"]


@click.command(
    "predict",
    help="""Print class probabilities for each image with a trained model.tar.gz.

    Each image is resized to the model's image_shape without keeping its aspect ratio, as the
    SageMaker endpoint does. One JSON line per image, in the order given:
    {"prediction": [p0, p1, ...]} (softmax; per-class sigmoid for multi_label models).

    An image that cannot be read or decoded gets no prediction line but one "error:" line on
    stderr naming it; the other images are still predicted. Exit status: 0 when every image was
    predicted, 1 when some could not be, 2 when none could be or on a usage error.
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
    """Load the model once, print one prediction line per usable image and one error line per
    other image, and exit 1 (some failed) or 2 (all failed) when an image could not be used."""
    from trainer.errors import DataError
    from trainer.predict import Predictor

    predictor = Predictor.from_archive(model_path, checkpoint=checkpoint)
    arrays = []
    for index, image in enumerate(images):
        try:
            arrays.append(predictor.prepare(image, index))
        except DataError as exc:
            click.echo(f"error: {exc}", err=True)
    for row in predictor.predict(arrays):
        click.echo(json.dumps({"prediction": [round(float(p), 6) for p in row]}))
    if len(arrays) < len(images):
        sys.exit(1 if arrays else 2)
