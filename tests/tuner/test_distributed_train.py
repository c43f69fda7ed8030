"""`tune train --workers 2`: kv_store for real on Ray Train workers (the session's local Ray).

dist_sync trains with DDP and writes one archive; dist_async trains through a parameter server
that applies pushes from both workers, each reading half of the data; a user error found inside
a worker reaches the CLI as its own message and exit code 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch
from PIL import Image

from trainer.artifacts import load_model_archive
from trainer.data import DataConfig, InMemoryLoaders, build_loaders
from trainer.hyperparameters import parse_hyperparameters
from trainer.loop import fit
from trainer.models import build_model
from trainer.predict import Predictor
from tuner.cli import main
from tuner.distributed.parameter_server import ParameterServerClient, start_parameter_server

HP = {
    "num_classes": "10",
    "num_training_samples": "300",
    "num_layers": "20",
    "image_shape": "3,16,16",
    "mini_batch_size": "32",
}


def _train(
    data: Path,
    out: Path,
    hp: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    workers: int = 2,
) -> tuple[int, str, str]:
    pairs = [arg for name, value in hp.items() for arg in ("--hp", f"{name}={value}")]
    argv = ["train", "--data", str(data), "--output", str(out), "--workers", str(workers)]
    try:
        main([*argv, *pairs])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_dist_sync_is_the_default_and_writes_one_archive_that_predicts(
    ray_cluster: None, assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _train(assets / "cifar10", out, {**HP, "epochs": "1"}, capsys)
    assert code == 0, stderr
    assert "kv_store is not set: using dist_sync (synchronous DDP) over 2 workers" in stdout
    assert "has no effect" not in stdout + stderr
    assert stdout.count("epoch 1/1 train:accuracy=") == 1  # rank 0's progress, shown by the CLI
    assert "parameter server" not in stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.tar.gz"]  # rank 0's only
    assert f"model written to {out / 'model.tar.gz'}" in stdout
    loaded = load_model_archive(out / "model.tar.gz")
    assert loaded.hyperparameters.kv_store == "dist_sync"
    image = np.asarray(Image.open(assets / "cifar10/validation/airplane/0006.jpg").convert("RGB"))
    probabilities = Predictor.from_archive(out / "model.tar.gz").predict([image, image[:20]])
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_dist_async_applies_pushes_from_both_workers_each_on_half_the_data(
    ray_cluster: None, assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hp = {**HP, "epochs": "1", "kv_store": "dist_async"}
    out = tmp_path / "out"
    code, stdout, stderr = _train(assets / "cifar10", out, hp, capsys)
    assert code == 0, stderr
    pattern = r"parameter server applied (\d+) updates \(worker 0: (\d+), worker 1: (\d+)\)"
    found = re.search(pattern, stdout)
    assert found, stdout
    total, first, second = map(int, found.groups())
    parsed = parse_hyperparameters(hp)
    data = DataConfig(assets / "cifar10")
    half = len(build_loaders(parsed, data, seed=0, device="cpu", shard=(0, 2)).train)
    whole = len(build_loaders(parsed, data, seed=0, device="cpu").train)
    assert half < whole
    assert first == second == half  # one push per batch of each worker's half of the epoch
    assert total == first + second
    trained = load_model_archive(out / "model.tar.gz").model.state_dict()
    torch.manual_seed(0)
    initial = build_model(parsed).state_dict()
    assert not torch.equal(trained["net.fc.weight"], initial["net.fc.weight"])  # updates applied


@pytest.mark.slow
def test_a_user_error_inside_a_worker_exits_2_with_its_message(
    ray_cluster: None, assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _train(assets / "cifar10", out, {**HP, "num_classes": "5"}, capsys)
    assert code == 2
    assert stderr.startswith("error: ")
    assert "is outside [0, num_classes=5)" in stderr
    assert "Traceback" not in stderr and "WorkerGroupError" not in stderr
    assert not (out / "model.tar.gz").exists()


@pytest.mark.slow
def test_one_worker_through_the_parameter_server_trains_exactly_like_a_local_optimizer(
    ray_cluster: None, tmp_path: Path
) -> None:
    hp = parse_hyperparameters(  # momentum, weight decay groups and a schedule step all matter
        {
            **HP,
            "num_training_samples": "48",
            "image_shape": "3,8,8",
            "mini_batch_size": "8",
            "epochs": "2",
            "lr_scheduler_step": "1",
            "lr_scheduler_factor": "0.5",
        }
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (48,), generator=g)

    def train(name: str, **hook: Any) -> dict[str, torch.Tensor]:
        data = InMemoryLoaders(x, y, x[:16], y[:16], batch_size=8)
        result = fit(hp, data, tmp_path / name, device="cpu", log=lambda line: None, **hook)
        return load_model_archive(result.model_path).model.state_dict()

    server = start_parameter_server(hp)
    remote = train(
        "server",
        optimizer_factory=lambda model: ParameterServerClient(model, server, 0, hp.learning_rate),
    )
    local = train("local")
    assert ray.get(server.update_counts.remote()) == {0: 12}  # 6 batches x 2 epochs
    for name, value in local.items():
        torch.testing.assert_close(remote[name], value, msg=name)


@pytest.mark.slow
def test_more_workers_than_the_local_ray_has_cpus_is_refused_before_training(
    ray_cluster: None, assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, stderr = _train(assets / "cifar10", out, {**HP, "epochs": "1"}, capsys, workers=3)
    assert code == 2
    assert "--workers: 3 needs one CPU per worker, but the local Ray has 2" in stderr
    assert not out.exists()
