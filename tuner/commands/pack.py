"""`tune pack`: a .lst and its images -> MXNet RecordIO (.rec + .idx), like MXNet's im2rec."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["command"]


@click.command(name="pack")
@click.argument("lst", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("image_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--resize",
    type=click.IntRange(min=1),
    default=None,
    help="Scale each image so its shorter side has this many pixels (default: keep).",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=95,
    show_default=True,
    help="JPEG quality of the re-encoded images.",
)
@click.option(
    "--encoding",
    type=click.Choice(["jpg", "png"]),
    default="jpg",
    show_default=True,
    help="Image encoding inside the records.",
)
def command(
    lst: Path, image_root: Path, output: Path, resize: int | None, quality: int, encoding: str
) -> None:
    """Pack the images listed in LST (paths relative to IMAGE_ROOT) into OUTPUT (.rec) and the
    .idx next to it, in MXNet's RecordIO format (readable by MXNet and by `tune train`).

    Rows with several label columns are packed as multi-label records (im2rec --pack-label).
    """
    from trainer.data.pack import pack_images

    if output.suffix != ".rec":
        output = output.with_suffix(".rec")
    with click.progressbar(length=1, label="packing", file=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(1)

        result = pack_images(
            lst,
            image_root,
            output,
            resize=resize,
            quality=quality,
            encoding=encoding,
            progress=progress,
        )
    click.echo(
        f"wrote {result.records} records ({result.bytes} bytes) to {result.rec_path} "
        f"and {result.idx_path}"
    )
