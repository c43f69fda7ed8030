"""`tune run --dry-run`: the checks of a real run, a calibration on this machine and a forecast,
with nothing started and nothing written; `--data` for a YAML; Ray's ASHA simulated."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.tuner.test_sagemaker import SDK_BODY
from tuner.cli import main
from tuner.study.asha_simulation import simulate_asha

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"


def tune(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The `tune` console script: (exit code, stdout + stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _small_quickstart(tmp_path: Path, data: Path) -> Path:
    """The quickstart space on the committed RecordIO sample, its study under tmp_path."""
    space = yaml.safe_load((SPACES / "quickstart.yaml").read_text())
    space["study"]["directory"] = str(tmp_path / "studies")
    space["data"]["path"] = str(data)
    space["fixed"].update(num_training_samples=200, epochs=3)
    space["search"]["mini_batch_size"] = {"type": "categorical", "values": [16, 32]}
    path = tmp_path / "spaces" / "small.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(space))
    return path


def _forecast_rows(output: str) -> dict[str, str]:
    start = output.index("forecast for study")
    rows = {}
    for line in output[start:].splitlines()[1:]:
        match = re.match(r"  (\S.*?\S)\s{2,}(.*)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_a_dry_run_checks_calibrates_forecasts_and_writes_nothing(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = _small_quickstart(tmp_path, assets / "recordio" / "cifar10")
    before = _tree(tmp_path)
    code, out = tune(["run", str(space), "--dry-run"], capsys)
    assert code == 0, out
    assert "data: recordio, train 200 images (10 classes), validation 50 images" in out
    # both batch sizes the space can sample were measured, each with its epoch time
    assert re.search(r"^  16\s+[\d,]+\s+[\d,]+\s+[\d.]+$", out, re.M), out
    assert re.search(r"^  32\s+[\d,]+\s+[\d,]+\s+[\d.]+$", out, re.M), out
    rows = _forecast_rows(out)
    assert rows["trials"] == "12, 2 at a time"
    epochs = float(rows["epochs per trial"].split()[0])
    assert 1.0 <= epochs < 3.0  # ASHA (rungs 1, 2) stops half the trials after their first epoch
    assert "rungs at epochs 1, 2 of 3, reduction factor 2" in rows["epochs per trial"]
    assert re.match(r"(\d+m )?\d+s expected", rows["study wall time"])
    assert re.match(r"[\d.]+ GiB \(peak RSS [\d.]+ GiB", rows["memory per trial"])
    assert "of " in rows["memory per trial"] and "available" in rows["memory per trial"]
    assert "no study was started and nothing was written" in out
    assert _tree(tmp_path) == before  # no study folder, no MLflow store, nothing


def test_a_missing_data_folder_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = _small_quickstart(tmp_path, tmp_path / "no-such-data")
    code, out = tune(["run", str(space), "--dry-run"], capsys)
    assert code == 2
    assert "data.path" in out and "`tune run SPACE --data DIR`" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_data_replaces_a_yaml_data_path(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = _small_quickstart(tmp_path, tmp_path / "no-such-data")
    data = assets / "recordio" / "cifar10"
    code, out = tune(["run", str(space), "--data", str(data), "--dry-run"], capsys)
    assert code == 0, out
    assert "data: recordio, train 200 images (10 classes), validation 50 images" in out


@pytest.mark.slow
def test_data_that_does_not_fit_the_space_is_an_error_before_anything_runs(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = _small_quickstart(tmp_path, assets / "recordio" / "cifar10")
    data = yaml.safe_load(space.read_text())
    data["fixed"]["num_classes"] = 5  # the sample has labels up to 9
    space.write_text(yaml.safe_dump(data))
    code, out = tune(["run", str(space), "--dry-run"], capsys)
    assert code == 2, out
    assert "error:" in out and "num_classes=5" in out
    assert not (tmp_path / "studies").exists()


@pytest.mark.slow
def test_a_sagemaker_job_gets_the_same_forecast(
    tmp_path: Path,
    assets: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a SageMaker job's study folder is under the working directory
    job = tmp_path / "job.json"
    job.write_text(json.dumps(SDK_BODY))
    before = _tree(tmp_path)
    code, out = tune(
        ["run", str(job), "--data", str(assets / "recordio" / "cifar10"), "--dry-run"], capsys
    )
    assert code == 0, out
    rows = _forecast_rows(out)
    assert rows["trials"] == "20, 2 at a time"
    assert "(over mini_batch_size 8, 64)" in rows["seconds per epoch"]
    assert "ASHA rungs at epochs 1 of 2" in rows["epochs per trial"]
    assert _tree(tmp_path) == before


def test_asha_simulated_with_rays_scheduler_promotes_more_than_the_closed_form() -> None:
    # rungs 1, 3, 9 with reduction factor 3: the closed form says 1 + 2/3 + 6/9 epochs a trial
    closed_form = 1 + 2 / 3 + 6 / 9
    sim = simulate_asha(trials=12, parallel=2, epochs=9, asha=(9, 1, 3), runs=100)
    assert closed_form < sim.epochs_per_trial < 9
    unpruned = simulate_asha(trials=12, parallel=2, epochs=9, asha=None, runs=3)
    assert unpruned.epochs_per_trial == 9
    # 12 trials of 9 one-second epochs, 2 at a time: 54 s
    assert unpruned.wall_seconds == [54.0, 54.0, 54.0]


@pytest.mark.slow
def test_the_resnet50_space_as_shipped_dry_runs_on_a_224_pixel_sample(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the shipped YAML, copied so that its study folder (../studies) is under tmp_path
    space = tmp_path / "search_spaces" / "resnet50.yaml"
    space.parent.mkdir()
    shutil.copy(SPACES / "resnet50.yaml", space)
    code, out = tune(["run", str(space), "--dry-run"], capsys)
    assert code == 2 and "--data DIR" in out
    sample = assets / "recordio" / "cifar10-224"
    code, out = tune(["run", str(space), "--data", str(sample), "--dry-run"], capsys)
    assert code == 0, out
    assert "train 32 images (4 classes), validation 16 images (4 classes)" in out
    # what the shipped values say of this sample and this machine, one notice line each
    assert "notice: num_training_samples=15420 but the train channel holds 32" in out
    assert "ResNet-50 at 3,224,224" in out
    assert re.search(r"^  512 \(ran 32\)", out, re.M), out  # the sample holds 32 images
    rows = _forecast_rows(out)
    assert rows["trials"].startswith("50, ")
    assert "rungs at epochs 1, 3, 9, 27 of 30" in rows["epochs per trial"]
    assert not (tmp_path / "studies").exists()
