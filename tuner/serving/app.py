"""The HTTP endpoint: SageMaker's container contract on FastAPI.

`GET /ping` answers 200 (the model is loaded before the server accepts a connection);
`POST /invocations` (and `POST /endpoints/{name}/invocations`, the path boto3's `invoke_endpoint`
posts to when given `endpoint_url`) answers as `tuner.serving.contract` says. Every error is JSON
`{"code": ..., "message": ...}` (the fields botocore reads into a `ClientError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from trainer.predict import Predictor
from tuner.serving.batching import Batcher, QueueFull
from tuner.serving.contract import (
    Limits,
    RequestError,
    answer,
    check_content_type,
    choose_accept,
    decode_body,
)

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "ServeSettings",
    "app_from_environment",
    "build_app",
    "load_predictor",
]

# How `tune serve --workers N` hands its settings to the N worker processes uvicorn starts.
ENVIRONMENT_VARIABLE = "TUNE_SERVE_SETTINGS"

_CODES = {
    400: "ValidationError",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "ThrottlingException",  # the code botocore retries with backoff, as for SageMaker
    500: "InternalFailure",
}


@dataclass(frozen=True)
class ServeSettings:
    """What a server process needs: the archive, the batching bounds and the request limits."""

    archive: Path
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    threads: int | None = None
    limits: Limits = field(default_factory=Limits)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "archive": str(self.archive)})

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        values = json.loads(text)
        return cls(
            **{**values, "archive": Path(values["archive"]), "limits": Limits(**values["limits"])}
        )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": _CODES.get(status, "Error"), "message": message}, status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413, f"a request body may hold at most {limit:,} bytes, but this one has {declared}"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"a request body may hold at most {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(predictor: Predictor, settings: ServeSettings) -> FastAPI:
    """The endpoint for a loaded `predictor`, batching as `settings` says."""
    limits = settings.limits
    predictor.batch_size = settings.max_batch_size
    batcher = Batcher(
        predictor.predict,
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_batch_delay_ms / 1000,
        max_pending_images=limits.max_pending_images,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="tune serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"the model failed on this request: {type(exc).__name__}: {exc}")

    @app.get("/ping")
    async def ping() -> Response:
        return Response(b'{"status": "healthy"}', media_type="application/json")

    async def invocations(request: Request) -> Response:
        content_type = check_content_type(request.headers.get("content-type"))
        body = await _read_body(request, limits.max_payload_bytes)
        arrival = batcher.arrival()
        try:
            images = await run_in_threadpool(decode_body, body, content_type, predictor, limits)
            accept = choose_accept(request.headers.get("accept"), len(images))
            probabilities = await batcher.submit(images, arrival)
        except QueueFull as exc:
            return _error(429, str(exc))
        finally:
            arrival.close()
        return Response(answer(probabilities, accept), media_type=accept)

    app.add_api_route("/invocations", invocations, methods=["POST"])
    app.add_api_route("/endpoints/{endpoint_name}/invocations", invocations, methods=["POST"])
    return app


def app_from_environment() -> FastAPI:
    """The app of one `tune serve --workers N` worker process: settings from the environment, the
    model loaded here, torch given this worker's share of the cores."""
    settings = ServeSettings.from_json(os.environ[ENVIRONMENT_VARIABLE])
    return build_app(load_predictor(settings), settings)


def load_predictor(settings: ServeSettings) -> Predictor:
    """The predictor for `settings.archive`, torch limited to `settings.threads` threads."""
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    return Predictor.from_archive(settings.archive)
