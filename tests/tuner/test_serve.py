"""`tune serve`: SageMaker's endpoint contract over real HTTP on 127.0.0.1, for a real (tiny)
trained model: answers equal to the trainer's Predictor, requests batched together, every bad
request a 4xx JSON message with the server still answering, the CLI serving a registered champion,
and the same logged model under `mlflow models serve`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from trainer.predict import Predictor
from tuner.serving import Batcher, Limits, ServeSettings, build_app

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Path:
    """One epoch of a CIFAR ResNet-20 at 16x16 on the committed samples (seconds)."""
    import torch

    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit

    torch.set_num_threads(2)
    hp = parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": 300,
            "num_layers": 20,
            "epochs": 1,
            "image_shape": "3,16,16",
            "mini_batch_size": 64,
            "learning_rate": 0.05,
        }
    )
    out = tmp_path_factory.mktemp("served")
    return Path(
        fit(hp, DataConfig(assets / "cifar10"), out, seed=0, log=lambda _l: None).model_path
    )


@pytest.fixture(scope="module")
def predictor(archive: Path) -> Predictor:
    return Predictor.from_archive(archive)


@pytest.fixture(scope="module")
def jpegs(assets: Path) -> list[bytes]:
    files = sorted((assets / "cifar10" / "validation").rglob("*.jpg"))[::10]
    return [file.read_bytes() for file in files]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(predictor: Predictor, settings: ServeSettings) -> Iterator[tuple[str, Any]]:
    """The endpoint app on a real uvicorn server on 127.0.0.1 (in a thread), stopped after."""
    import uvicorn

    app = build_app(predictor, settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}", app
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def endpoint(predictor: Predictor, archive: Path) -> Iterator[str]:
    """A server with small limits, so each limit can be crossed by a small request."""
    limits = Limits(
        max_payload_bytes=200_000, max_image_pixels=64 * 64, max_images=20, max_pending_images=64
    )
    with serving(predictor, ServeSettings(archive, limits=limits)) as (url, _app):
        yield url


def _expected(predictor: Predictor, images: list[bytes]) -> np.ndarray:
    return np.round(predictor.predict(images), 6)


def _png(jpeg: bytes, size: tuple[int, int] | None = None) -> bytes:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    if size is not None:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _boto3_headers(content_type: str, accept: str | None = None) -> dict[str, str]:
    """The headers botocore 1.44 sends for `invoke_endpoint` (captured from a real boto3 client
    pointed at a local URL with dummy credentials): a SigV4 signature, no check of it expected."""
    signed = "accept;content-type;host;x-amz-date" if accept else "content-type;host;x-amz-date"
    headers = {
        "Accept-Encoding": "identity",
        "Content-Type": content_type,
        "User-Agent": "Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux lang/python#3.11.7 "
        "cfg/retry-mode#standard Botocore/1.44.8",
        "X-Amz-Date": "20261201T004149Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20261201/us-east-1/sagemaker/"
        f"aws4_request, SignedHeaders={signed}, Signature=" + "0" * 64,
        "amz-sdk-invocation-id": "e7f8c2f1-9495-4835-9304-600cf0e6ab62",
        "amz-sdk-request": "attempt=1; max=3",
    }
    if accept:
        headers["Accept"] = accept
    return headers


def test_ping_and_each_image_type_answer_what_the_trainers_predictor_predicts(
    endpoint: str, predictor: Predictor, jpegs: list[bytes]
) -> None:
    assert requests.get(f"{endpoint}/ping", timeout=10).status_code == 200
    expected = _expected(predictor, jpegs[:2])
    for content_type, body in (
        ("image/jpeg", jpegs[0]),
        ("application/x-image", jpegs[0]),
        ("image/png", _png(jpegs[0])),
        ("image/jpeg; charset=binary", jpegs[0]),
    ):
        response = requests.post(
            f"{endpoint}/invocations", data=body, headers={"Content-Type": content_type}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        prediction = response.json()["prediction"]
        assert len(prediction) == 10 and abs(sum(prediction) - 1) < 1e-4
        np.testing.assert_allclose(prediction, expected[0], atol=2e-6)
    other = requests.post(
        f"{endpoint}/invocations", data=jpegs[1], headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    np.testing.assert_allclose(other.json()["prediction"], expected[1], atol=2e-6)
    assert not np.allclose(expected[0], expected[1])


def test_a_request_shaped_like_boto3s_invoke_endpoint_gets_sagemakers_answer(
    endpoint: str, predictor: Predictor, jpegs: list[bytes]
) -> None:
    expected = _expected(predictor, jpegs[:1])[0]
    url = f"{endpoint}/endpoints/my-endpoint/invocations"  # boto3 adds the endpoint's path
    plain = requests.post(
        url, data=jpegs[0], headers=_boto3_headers("application/x-image"), timeout=30
    )
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    np.testing.assert_allclose(plain.json()["prediction"], expected, atol=2e-6)
    lines = requests.post(
        url,
        data=jpegs[0],
        headers=_boto3_headers("application/x-image", "application/jsonlines"),
        timeout=30,
    )
    assert lines.headers["content-type"] == "application/jsonlines"
    assert lines.text.endswith("\n") and lines.text.count("\n") == 1
    np.testing.assert_allclose(json.loads(lines.text)["prediction"], expected, atol=2e-6)
    refused = requests.post(url, data=jpegs[0], headers=_boto3_headers("text/csv"), timeout=30)
    # botocore reads `code` and `message` of a JSON error body into ClientError's Error
    assert refused.status_code == 415
    assert refused.json()["code"] == "UnsupportedMediaType"
    assert "application/x-image" in refused.json()["message"]


def test_boto3s_own_client_works_with_only_the_url_changed(
    endpoint: str, predictor: Predictor, jpegs: list[bytes]
) -> None:
    boto3 = pytest.importorskip("boto3", reason="boto3 is not installed in this environment")
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    response = client.invoke_endpoint(
        EndpointName="local", ContentType="application/x-image", Body=jpegs[0]
    )
    assert response["ContentType"] == "application/json"
    prediction = json.loads(response["Body"].read())["prediction"]
    np.testing.assert_allclose(prediction, _expected(predictor, jpegs[:1])[0], atol=2e-6)


def test_a_recordio_body_is_answered_one_line_per_record(
    endpoint: str, predictor: Predictor, assets: Path
) -> None:
    from trainer.data import RecordReader

    reader = RecordReader(assets / "recordio" / "cifar10" / "validation" / "cifar10-validation.rec")
    count = 12  # what batch transform sends with SplitType=RecordIO: whole records, cut anywhere
    body = b"".join(_framed(reader.read(i)) for i in range(count))
    images = [reader.read_image(i).image for i in range(count)]
    response = requests.post(
        f"{endpoint}/invocations",
        data=body,
        headers={"Content-Type": "application/x-recordio"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jsonlines"
    rows = [json.loads(line)["prediction"] for line in response.text.splitlines()]
    np.testing.assert_allclose(rows, _expected(predictor, images), atol=2e-6)
    as_json = requests.post(
        f"{endpoint}/invocations",
        data=body,
        headers={"Content-Type": "application/x-recordio", "Accept": "application/json"},
        timeout=30,
    )
    assert as_json.status_code == 406 and "application/jsonlines" in as_json.json()["message"]


def _framed(payload: bytes) -> bytes:
    """One RecordIO record as the `.rec` file holds it (no payload here contains the magic)."""
    import struct

    from trainer.data.recordio import MAGIC

    return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def _bad_requests(
    jpegs: list[bytes], assets: Path
) -> list[tuple[str, dict[str, str], bytes, int, str]]:
    rec = (assets / "recordio" / "cifar10" / "validation" / "cifar10-validation.rec").read_bytes()
    image = {"Content-Type": "image/jpeg"}
    return [
        ("empty body", image, b"", 400, "the body is empty"),
        ("not an image", image, b"hello, endpoint", 400, "cannot be decoded as an image"),
        ("truncated JPEG", image, jpegs[0][: len(jpegs[0]) // 2], 400, "cannot be decoded"),
        ("no content type", {}, jpegs[0], 415, "Content-Type must be one of"),
        ("form content type", {"Content-Type": "application/x-www-form-urlencoded"}, jpegs[0],
         415, "application/x-www-form-urlencoded"),
        ("csv accept", {**image, "Accept": "text/csv"}, jpegs[0], 406, "Accept must be"),
        ("body over the limit", image, jpegs[0] + b"\0" * 200_000, 413, "at most 200,000 bytes"),
        ("image over the pixel limit", {"Content-Type": "image/png"},
         _png(jpegs[0], (100, 100)), 413, "at most 4,096 pixels, but this one is 100x100"),
        ("too many records", {"Content-Type": "application/x-recordio"}, rec, 413,
         "at most 20 images, but this one holds 50"),
        ("not RecordIO", {"Content-Type": "application/x-recordio"}, jpegs[0], 400, "bad magic"),
        ("a record that is not an image", {"Content-Type": "application/x-recordio"},
         _framed(b"\0" * 24 + b"garbage"), 400, "record 0 cannot be decoded"),
    ]  # fmt: skip


def test_every_bad_request_gets_a_4xx_json_message_and_the_server_goes_on(
    endpoint: str, jpegs: list[bytes], assets: Path
) -> None:
    for name, headers, body, status, message in _bad_requests(jpegs, assets):
        response = requests.post(f"{endpoint}/invocations", data=body, headers=headers, timeout=30)
        assert response.status_code == status, (name, response.text)
        assert message in response.json()["message"], (name, response.text)
    wrong_method = requests.get(f"{endpoint}/invocations", timeout=10)
    assert wrong_method.status_code == 405 and "message" in wrong_method.json()
    chunked = requests.post(  # no Content-Length: the limit is counted as the body streams
        f"{endpoint}/invocations",
        data=iter([jpegs[0], b"\0" * 250_000]),
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert chunked.status_code == 413
    assert requests.get(f"{endpoint}/ping", timeout=10).status_code == 200
    good = requests.post(
        f"{endpoint}/invocations", data=jpegs[0], headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert good.status_code == 200 and len(good.json()["prediction"]) == 10


def test_a_model_that_fails_gets_a_500_json_message_and_the_server_goes_on(
    archive: Path, jpegs: list[bytes]
) -> None:
    import torch

    class OutOfMemory(torch.nn.Module):
        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("DefaultCPUAllocator: not enough memory")

    broken = Predictor.from_archive(archive)
    broken.model = OutOfMemory()
    with serving(broken, ServeSettings(archive)) as (url, _app):
        for path in ("/invocations", "/endpoints/my-endpoint/invocations"):
            response = requests.post(
                f"{url}{path}", data=jpegs[0], headers={"Content-Type": "image/jpeg"}, timeout=30
            )
            assert response.status_code == 500, response.text
            assert response.json() == {
                "code": "InternalFailure",
                "message": "the model failed on this request: RuntimeError: "
                "DefaultCPUAllocator: not enough memory",
            }
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200


def test_requests_that_arrive_together_share_one_forward_pass(
    predictor: Predictor, archive: Path, jpegs: list[bytes]
) -> None:
    settings = ServeSettings(archive, max_batch_size=8, max_batch_delay_ms=500)
    # small JPEGs are decoded on the event loop, 200x200 PNGs on worker threads
    bodies = [jpeg if i % 2 else _png(jpeg, (200, 200)) for i, jpeg in enumerate(jpegs[:8])]
    expected = _expected(predictor, bodies)
    with serving(predictor, settings) as (url, app):
        start = threading.Barrier(8)

        def post(index: int) -> list[float]:
            start.wait()
            response = requests.post(
                f"{url}/invocations",
                data=bodies[index],
                headers={"Content-Type": "application/x-image"},
                timeout=60,
            )
            return list(response.json()["prediction"])

        with ThreadPoolExecutor(8) as pool:
            rows = list(pool.map(post, range(8)))
        batches = app.state.batcher.batch_sizes
    np.testing.assert_allclose(rows, expected, atol=2e-6)  # each answer is its own image's
    assert sum(size * n for size, n in batches.items()) == 8
    assert max(batches) > 1, batches  # not one pass per request
    assert max(batches) <= 8


class _SlowPredictor(Predictor):
    """The real predictor, taking half a second more per forward pass (a big model's time)."""

    def predict(self, images: Any) -> np.ndarray:
        time.sleep(0.5)
        return super().predict(images)


def test_more_images_waiting_than_the_server_holds_is_a_429_not_a_queue_without_end(
    predictor: Predictor, archive: Path, jpegs: list[bytes]
) -> None:
    # one image may wait for the model: a second request during the first's pass meets a full queue
    slow = _SlowPredictor(predictor.loaded, predictor.device)
    settings = ServeSettings(archive, limits=Limits(max_pending_images=1))
    with serving(slow, settings) as (url, _app), ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            requests.post,
            f"{url}/invocations",
            data=jpegs[0],
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        time.sleep(0.2)
        second = requests.post(
            f"{url}/invocations",
            data=jpegs[1],
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert first.result().status_code == 200
    assert second.status_code == 429
    assert second.json()["code"] == "ThrottlingException"  # what botocore retries with backoff
    assert "1 images are waiting" in second.json()["message"]


def _batcher_with_an_hours_delay() -> Batcher:
    """A batcher whose every wait would outlast the tests' `wait_for` timeouts."""
    return Batcher(
        lambda images: np.zeros((len(images), 1)),
        max_batch_size=32,
        max_delay_s=3600.0,
        max_pending_images=100,
    )


def test_a_lone_request_is_not_kept_waiting_for_others_that_are_not_coming() -> None:
    import asyncio

    async def scenario() -> None:
        batcher = _batcher_with_an_hours_delay()
        batcher.start()
        try:
            # nothing else on its way: straight to the model
            await asyncio.wait_for(batcher.submit([np.zeros(1)]), 30)
            # one request announced (its images being decoded): the queued one waits for it
            arrival = batcher.arrival()
            waiting = asyncio.ensure_future(batcher.submit([np.zeros(1)]))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await asyncio.wait_for(batcher.submit([np.zeros(1)], arrival), 30)
            await asyncio.wait_for(waiting, 30)
        finally:
            await batcher.stop()
        assert batcher.batch_sizes == {1: 1, 2: 1}

    asyncio.run(scenario())


def test_the_batcher_waits_for_as_many_images_as_its_last_batch_held() -> None:
    import asyncio

    async def scenario() -> None:
        batcher = _batcher_with_an_hours_delay()
        batcher.start()
        try:
            await asyncio.wait_for(batcher.submit([np.zeros(1)]), 30)  # last batch: 1
            three = [batcher.submit([np.zeros(1)]) for _ in range(3)]
            await asyncio.wait_for(asyncio.gather(*three), 30)  # queued together: last batch 3
            lone = asyncio.ensure_future(batcher.submit([np.zeros(1)]))
            await asyncio.sleep(0.3)
            assert not lone.done()  # two more are expected
            await asyncio.wait_for(batcher.submit([np.zeros(1), np.zeros(1)]), 30)
            await asyncio.wait_for(lone, 30)
        finally:
            await batcher.stop()
        assert batcher.batch_sizes == {1: 1, 3: 2}

    asyncio.run(scenario())


def test_the_batcher_bounds_each_batch_and_splits_the_answers_back() -> None:
    import asyncio

    calls: list[int] = []

    def forward(images: Any) -> np.ndarray:
        calls.append(len(images))
        return np.asarray([[float(image)] for image in images])

    async def scenario() -> list[np.ndarray]:
        batcher = Batcher(forward, max_batch_size=4, max_delay_s=0.05, max_pending_images=100)
        batcher.start()
        try:
            requests_ = [[np.asarray(float(i))] * (1 + i % 2) for i in range(6)]  # 9 images in all
            return await asyncio.gather(*(batcher.submit(r) for r in requests_))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert [a[:, 0].tolist() for a in answers] == [[i] * (1 + i % 2) for i in range(6)]
    assert sum(calls) == 9 and max(calls) <= 4 and len(calls) >= 3


def test_the_forward_thread_runs_torch_on_the_threads_the_settings_give_it() -> None:
    import asyncio

    import torch

    before = torch.get_num_threads()
    seen: list[tuple[str, int]] = []

    def forward(images: Any) -> np.ndarray:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return np.zeros((len(images), 1))

    async def scenario() -> None:
        batcher = Batcher(
            forward,
            max_batch_size=4,
            max_delay_s=0.0,
            max_pending_images=100,
            thread_initializer=lambda: torch.set_num_threads(1),
        )
        batcher.start()
        try:
            await batcher.submit([np.zeros(1)])
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert seen == [("forward_0", 1)]
    assert torch.get_num_threads() == before  # the caller's own threads are left alone


def test_load_predictor_leaves_its_calling_thread_one_torch_thread(archive: Path) -> None:
    """The server's event-loop thread runs no parallel torch work, so that the forward thread is
    the only one with an OpenMP team (see `load_predictor`)."""
    import torch

    from tuner.serving.app import load_predictor

    before = torch.get_num_threads()
    found: list[object] = []

    def load() -> None:
        predictor = load_predictor(ServeSettings(archive))
        found.extend([torch.get_num_threads(), predictor.num_classes])

    thread = threading.Thread(target=load)
    thread.start()
    thread.join(60)
    assert found == [1, 10]
    assert torch.get_num_threads() == before


def _record_champion(tmp_path: Path, archive: Path, assets: Path) -> str:
    """A real sqlite store holding the model registered as `served@champion` by a `tune train`-style
    record of the run."""
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import FitResult
    from tuner.tracking import record_training_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hp = parse_hyperparameters(
        {"num_classes": 10, "num_training_samples": 300, "num_layers": 20, "image_shape": "3,16,16"}
    )
    result = FitResult(
        metrics={"validation:accuracy": 0.3},
        history=[{"epoch": 1, "validation:accuracy": 0.3}],
        best_epoch=1,
        model_path=archive,
        stopped_early=False,
    )
    run_id = record_training_run(
        hp,
        result,
        tracking_uri=uri,
        experiment_name="serve",
        registered_model_name="served",
        log=lambda _m: None,
    )
    assert run_id is not None
    return uri


def _wait_for_ping(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"no /ping within 180 s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the server's own process group (it was started in a new session), then wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(10)


@contextlib.contextmanager
def _server(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        _stop(process)


@pytest.mark.slow
def test_tune_serve_serves_the_registered_champion_on_sagemakers_port_with_two_workers(
    tmp_path: Path, archive: Path, assets: Path, predictor: Predictor, jpegs: list[bytes]
) -> None:
    uri = _record_champion(tmp_path, archive, assets)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": uri,
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    log = tmp_path / "serve.log"
    command = [str(BIN / "tune"), "serve", "models:/served@champion", "--workers", "2"]
    with _server(command, env, log) as process:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(url, process, log)
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(
                    lambda body: requests.post(
                        f"{url}/invocations",
                        data=body,
                        headers=_boto3_headers("image/jpeg"),
                        timeout=60,
                    ),
                    jpegs[:4],
                )
            )
        assert [r.status_code for r in responses] == [200] * 4
        rows = [r.json()["prediction"] for r in responses]
        np.testing.assert_allclose(rows, _expected(predictor, jpegs[:4]), atol=2e-6)
        assert _stop(process) == 0
    text = log.read_text()
    assert "model: models:/served@champion (version 1): ResNet-20, 10 classes" in text
    assert f"serving at http://127.0.0.1:{port} (2 workers" in text
    assert "Traceback" not in text and "INFO" not in text, text


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_logged_champion(
    tmp_path: Path, archive: Path, assets: Path, predictor: Predictor, jpegs: list[bytes]
) -> None:
    uri = _record_champion(tmp_path, archive, assets)
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "mlflow-serve.log"
    command = [
        str(BIN / "mlflow"), "models", "serve", "-m", "models:/served@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with _server(command, env, log) as process:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(url, process, log)
        payload: dict[str, Any] = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(image).decode()] for image in jpegs[:3]],
            }
        }
        response = requests.post(f"{url}/invocations", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(predictions, predictor.predict(jpegs[:3]), rtol=1e-5, atol=1e-6)


def test_tune_serve_names_a_model_or_port_it_cannot_use(
    tmp_path: Path, archive: Path, assets: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tuner.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def error_of(*argv: str) -> str:
        with pytest.raises(SystemExit) as exited:
            main(["serve", *argv, "--port", str(_free_port())])
        assert exited.value.code == 2
        return capsys.readouterr().err

    assert "MODEL missing.tar.gz: no such file" in error_of("missing.tar.gz")
    assert "give --tracking-uri or set MLFLOW_TRACKING_URI" in error_of("models:/served@champion")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit):
            main(["serve", str(archive), "--port", str(port)])
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_serve_names_a_registered_model_or_alias_it_cannot_find(
    tmp_path: Path, archive: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.cli import main

    uri = _record_champion(tmp_path, archive, assets)
    capsys.readouterr()
    for model, named in (
        ("models:/nothing@champion", "nothing"),
        ("models:/served@staging", "staging"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(["serve", model, "--tracking-uri", uri, "--port", str(_free_port())])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: MODEL {model} on {uri}: ") and named in error, error
        assert error.count("\n") == 1, error  # one line, no MLflow chatter
