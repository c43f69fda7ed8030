"""SageMaker's inference contract for the Image Classification algorithm: which request bodies an
endpoint takes, how each becomes images, and how the probabilities are written back.

- `application/x-image`, `image/jpeg`, `image/png`: one encoded image (any format Pillow reads).
- `application/x-recordio`: MXNet RecordIO image records (what `im2rec` and `tune pack` write;
  what batch transform sends with `SplitType=RecordIO`), one image per record.
- Out: `{"prediction": [p0, p1, ...]}` (`application/json`), or with `Accept:
  application/jsonlines` one such object per line per image, as batch transform writes them. A body
  of several images is answered in JSON lines unless JSON is asked for by name (then 406).

Every problem with a request is a `RequestError`: an HTTP status (4xx) and a message naming the
rule and the value.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from trainer.data.recordio import split_records, unpack_image_record
from trainer.errors import DataError
from trainer.predict import Predictor

__all__ = [
    "IMAGE_TYPES",
    "JSON",
    "JSONLINES",
    "RECORDIO",
    "Limits",
    "RequestError",
    "answer",
    "choose_accept",
    "decode_body",
    "image_array",
    "media_type",
    "open_image",
]

IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png")
RECORDIO = "application/x-recordio"
JSON = "application/json"
JSONLINES = "application/jsonlines"
_ANY = ("*/*", "application/*")


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and what the server takes at once.

    `max_payload_bytes`: a request body (SageMaker's real-time payload limit is 6 MB, batch
    transform's `MaxPayloadInMB` defaults to 6); `max_image_pixels`: one decoded image (width x
    height; a small file can decode to gigabytes); `max_images`: images in one request;
    `max_pending_images`: images waiting for the model, over all requests (more is a 429)."""

    max_payload_bytes: int = 6 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_images: int = 512
    max_pending_images: int = 2048


class RequestError(Exception):
    """A request the endpoint cannot answer: its HTTP status (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(header: str | None) -> str:
    """The bare, lower-case media type of a Content-Type or Accept entry (parameters dropped)."""
    return (header or "").split(";", 1)[0].strip().lower()


def choose_accept(header: str | None, images: int) -> str:
    """The response type for an `Accept` header and a body of `images` images: the first type
    listed that the endpoint writes; a missing header or `*/*` means JSON for one image, JSON lines
    for several."""
    default = JSON if images == 1 else JSONLINES
    listed = [media_type(part) for part in (header or "").split(",") if part.strip()]
    if not listed:
        return default
    for kind in listed:
        if kind in _ANY:
            return default
        if kind == JSONLINES:
            return JSONLINES
        if kind == JSON:
            if images > 1:
                raise RequestError(
                    406,
                    f"the body holds {images} images; Accept: {JSON} answers one, use Accept: "
                    f"{JSONLINES} (one JSON object per line, as batch transform writes them)",
                )
            return JSON
    raise RequestError(406, f"Accept must be {JSON} or {JSONLINES} (or */*), but got {header!r}")


def check_content_type(header: str | None) -> str:
    """The request's media type if the endpoint takes it, else a 415 listing what it takes."""
    kind = media_type(header)
    if kind in IMAGE_TYPES or kind == RECORDIO:
        return kind
    allowed = ", ".join((*IMAGE_TYPES, RECORDIO))
    got = f"{header!r}" if header else "none"
    raise RequestError(415, f"Content-Type must be one of {allowed}, but got {got}")


def decode_body(
    body: bytes, content_type: str, predictor: Predictor, limits: Limits
) -> list[np.ndarray]:
    """The images of a request body, each an HWC uint8 array of the model's `image_shape`
    (resized without keeping the aspect ratio, as `tune predict` does)."""
    if not body:
        raise RequestError(400, f"the body is empty; send the image bytes as {content_type}")
    if content_type != RECORDIO:
        return [_decode_image(body, "the body", predictor, limits)]
    try:
        payloads = split_records(body)
    except DataError as exc:
        raise RequestError(400, f"the {RECORDIO} body cannot be read: {exc}") from None
    if len(payloads) > limits.max_images:
        raise RequestError(
            413,
            f"a request holds at most {limits.max_images} images, but this one holds "
            f"{len(payloads)}; send fewer records per request (batch transform: a smaller "
            "MaxPayloadInMB)",
        )
    images = []
    for number, payload in enumerate(payloads):
        where = f"record {number}"
        try:
            image = unpack_image_record(payload, where=where).image
        except DataError as exc:
            raise RequestError(400, str(exc)) from None
        images.append(_decode_image(image, where, predictor, limits))
    return images


def _decode_image(data: bytes, where: str, predictor: Predictor, limits: Limits) -> np.ndarray:
    return image_array(open_image(data, where, limits), where, predictor)


@contextlib.contextmanager
def _pillow_errors(where: str) -> Iterator[None]:
    """Pillow's errors for a corrupt or oversized image as 400 and 413 `RequestError`s."""
    try:
        with warnings.catch_warnings():
            # our own limit in `open_image` replaces Pillow's decompression-bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"{where}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's errors for corrupt data
        reason = "it is in no format Pillow reads" if "identify" in str(exc) else str(exc)
        raise RequestError(
            400, f"{where} cannot be decoded as an image ({reason}); a JPEG or PNG is expected"
        ) from None


def open_image(data: bytes, where: str, limits: Limits) -> Image.Image:
    """The image in `data` with its header read and its size checked, its pixels not yet decoded
    (cheap: `image.size` tells what `image_array` will cost)."""
    with _pillow_errors(where):
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise RequestError(
                413,
                f"{where}: an image may have at most {limits.max_image_pixels:,} pixels, "
                f"but this one is {width}x{height}",
            )
    return image


def image_array(image: Image.Image, where: str, predictor: Predictor) -> np.ndarray:
    """An `open_image` decoded and resized to the model's `image_shape`, as `tune predict` does."""
    with _pillow_errors(where):
        image.load()
    try:
        return predictor.prepare(image)
    except DataError as exc:
        raise RequestError(400, f"{where}: {exc}") from None
    except (OSError, ValueError) as exc:  # a mode Pillow cannot convert to the model's channels
        raise RequestError(400, f"{where} cannot be converted: {exc}") from None


def answer(probabilities: np.ndarray, accept: str) -> bytes:
    """The response body: `{"prediction": [...]}`, or one such object per line for JSON lines;
    probabilities rounded to 6 places as `tune predict` prints them."""
    rows: Sequence[list[float]] = [[round(float(p), 6) for p in row] for row in probabilities]
    if accept == JSON:
        return json.dumps({"prediction": rows[0]}).encode()
    return "".join(json.dumps({"prediction": row}) + "\n" for row in rows).encode()
