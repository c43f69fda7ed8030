"""The best model in MLflow: a pyfunc around the trainer's Predictor and the trainer's torch module
in one MLmodel, registered with an alias that moves only to a better study; `tune train` runs
recorded as one run. Real sqlite store, a real (tiny) trained model.tar.gz."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from tuner.layout import SPOOL_DIR
from tuner.tracking import record_training_run
from tuner.tracking.model import log_model_on_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> tuple[object, object]:
    """One epoch of a CIFAR ResNet-20 on the committed 16x16-cropped samples (seconds)."""
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
            "epochs": 2,
            "image_shape": "3,16,16",
            "mini_batch_size": 64,
            "learning_rate": 0.05,
        }
    )
    out = tmp_path_factory.mktemp("trained")
    result = fit(hp, DataConfig(assets / "cifar10"), out, seed=0, log=lambda _line: None)
    return hp, result


def _images(assets: Path, count: int = 4) -> list[bytes]:
    files = sorted((assets / "cifar10" / "validation").rglob("*.jpg"))[:count]
    return [file.read_bytes() for file in files]


def _store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("models", artifact_location=(tmp_path / "art").as_uri())
    return uri, client, experiment


def _log_on_new_run(
    uri: str,
    client: MlflowClient,
    experiment: str,
    archive: Path,
    value: float = 0.5,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[str, str | None]:
    """A new run in `experiment` with the model logged as 'cifar': (run id, version registered)."""
    run = client.create_run(experiment)
    version = log_model_on_run(
        tracking_uri=uri,
        run_id=run.info.run_id,
        archive=archive,
        registered_model_name="cifar",
        objective="validation:accuracy",
        value=value,
        log=log,
    )
    return run.info.run_id, version


def test_the_champion_predicts_what_the_trainers_predictor_predicts(
    tmp_path: Path, trained: tuple[object, object], assets: Path
) -> None:
    from trainer.predict import Predictor

    _, result = trained
    uri, client, experiment = _store(tmp_path)
    run_id, version = _log_on_new_run(uri, client, experiment, result.model_path)  # type: ignore[attr-defined]
    assert version == "1"
    assert str(client.get_model_version_by_alias("cifar", "champion").version) == "1"
    names = {a.path for a in client.list_artifacts(run_id, "model_archive")}
    assert names == {"model_archive/model.tar.gz"}

    images = _images(assets)
    expected = Predictor.from_archive(result.model_path).predict(images)  # type: ignore[attr-defined]
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model("models:/cifar@champion")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    by_bytes = model.predict(pd.DataFrame({"image": images}))
    decoded = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images]
    by_pixels = model.predict(pd.DataFrame({"pixels": decoded}))
    assert by_bytes.shape == (len(images), 10)
    np.testing.assert_allclose(by_bytes, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_pixels, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_bytes.sum(axis=1), 1.0, rtol=1e-5)
    signature = model.metadata.get_input_schema().input_names()
    assert signature == ["image", "pixels"]


def test_the_champion_loads_as_the_trainers_torch_module_with_the_same_probabilities(
    tmp_path: Path, trained: tuple[object, object], assets: Path
) -> None:
    import torch
    from mlflow.models import Model

    from trainer.models import ImageClassifier

    _, result = trained
    uri, client, experiment = _store(tmp_path)
    _log_on_new_run(uri, client, experiment, result.model_path)  # type: ignore[attr-defined]
    images = _images(assets)
    mlflow.set_tracking_uri(uri)
    try:
        by_pyfunc = mlflow.pyfunc.load_model("models:/cifar@champion").predict(
            pd.DataFrame({"image": images})
        )
        module = mlflow.pytorch.load_model("models:/cifar@champion")
        meta = Model.load("models:/cifar@champion")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

    assert isinstance(module, ImageClassifier) and not module.training
    # one MLmodel, both flavours; the signature and input example are the pyfunc's (images)
    assert {"python_function", "pytorch"} <= set(meta.flavors)
    assert meta.flavors["pytorch"]["code"] == meta.flavors["python_function"]["code"]
    assert "(-1, 3, 16, 16)" in meta.flavors["pytorch"]["input"]
    assert meta.signature is not None and meta.saved_input_example_info is not None

    # the resize the pyfunc does (bilinear, no aspect kept), then NCHW on the 0..255 scale
    resized = [
        np.asarray(
            Image.open(io.BytesIO(b)).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
        )
        for b in images
    ]
    batch = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        from_uint8 = module(batch).softmax(dim=1).numpy()
        from_float = module(batch.float()).softmax(dim=1).numpy()
    assert from_uint8.shape == (len(images), 10)
    np.testing.assert_allclose(from_uint8, by_pyfunc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_float, by_pyfunc, rtol=1e-5, atol=1e-6)
    # not a constant: different images, different probabilities
    assert not np.allclose(from_uint8[0], from_uint8[1])


def test_the_alias_moves_only_when_a_study_beats_the_champion(
    tmp_path: Path, trained: tuple[object, object]
) -> None:
    _, result = trained
    uri, client, experiment = _store(tmp_path)
    messages: list[str] = []
    for value in (0.5, 0.4, 0.7):
        _log_on_new_run(uri, client, experiment, result.model_path, value, messages.append)  # type: ignore[attr-defined]
        champion = client.get_model_version_by_alias("cifar", "champion")
        assert champion.tags["value"] == repr(0.7 if value == 0.7 else 0.5)
    versions = client.search_model_versions("name='cifar'")
    assert sorted(str(v.version) for v in versions) == ["1", "2", "3"]
    assert str(client.get_model_version_by_alias("cifar", "champion").version) == "3"
    assert any("does not beat" in m and "version 2" in m for m in messages)


def test_a_training_run_is_recorded_with_epoch_metrics_and_the_model(
    tmp_path: Path, trained: tuple[object, object]
) -> None:
    hp, result = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = record_training_run(
        hp,
        result,
        tracking_uri=uri,  # type: ignore[arg-type]
        experiment_name="train-runs",
        log=lambda _m: None,
    )
    assert run_id is not None
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["num_layers"] == "20"
    assert run.data.params["image_shape"] == "3,16,16"
    history = client.get_metric_history(run_id, "validation:accuracy")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["images_per_second"] > 0
    assert {a.path for a in client.list_artifacts(run_id)} >= {"model_archive"}
    assert client.search_logged_models([run.info.experiment_id])


@pytest.mark.slow  # starts a real server
def test_a_training_run_recorded_while_the_store_is_down_is_spooled_and_synced_later(
    tmp_path: Path,
    trained: tuple[object, object],
    own_mlflow_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tuner.cli import main

    hp, result = trained
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    messages: list[str] = []
    out = tmp_path / "out"
    run_id = record_training_run(
        hp,
        result,
        tracking_uri=own_mlflow_server.uri,  # a real server, not started yet
        experiment_name="offline-train",
        folder=out,
        log=messages.append,
    )
    assert run_id is None
    assert len([m for m in messages if "cannot record" in m]) == 1  # reported once
    assert any(f"tune results {out} --sync" in m for m in messages)
    assert Path(result.model_path).is_file()  # type: ignore[attr-defined]
    assert (out / SPOOL_DIR).is_dir()

    own_mlflow_server.start()
    main(["results", str(out), "--sync"])
    assert "mlflow: recorded" in capsys.readouterr().out
    client = MlflowClient(own_mlflow_server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("offline-train").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["num_layers"] == "20"
    history = client.get_metric_history(run.info.run_id, "validation:accuracy")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["images_per_second"] > 0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model_archive"}
    main(["results", str(out), "--sync"])  # nothing twice
    assert "nothing spooled" in capsys.readouterr().out


def test_tune_train_records_its_run_when_given_a_tracking_uri(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    hps = [
        "num_classes=10",
        "num_training_samples=300",
        "num_layers=20",
        "epochs=1",
        "image_shape=3,16,16",
        "mini_batch_size=64",
    ]
    argv = [
        "train",
        "--data",
        str(assets / "cifar10"),
        "--output",
        str(tmp_path / "out"),
        "--tracking-uri",
        uri,
        "--experiment",
        "cli-train",
    ]
    main(argv + [arg for hp in hps for arg in ("--hp", hp)])
    assert "mlflow: recorded run" in capsys.readouterr().out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cli-train").experiment_id])
    assert len(runs) == 1 and runs[0].data.params["epochs"] == "1"
    assert len(client.get_metric_history(runs[0].info.run_id, "train:accuracy")) == 1
