"""`tune train --checkpoint-dir`: killed mid-run with SIGKILL, the same command continues after the
last finished epoch, ends with the model an uninterrupted run writes, and never leaves a partial
model.tar.gz behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner.cli import main

TUNE = str(Path(sys.executable).parent / "tune")
HP = [
    "--hp", "num_classes=10", "--hp", "num_training_samples=300", "--hp", "num_layers=20",
    "--hp", "image_shape=3,32,32", "--hp", "epochs=3", "--hp", "mini_batch_size=32",
]  # fmt: skip


def _train(assets: Path, out: Path, checkpoints: Path) -> list[str]:
    return [
        TUNE, "train", "--data", str(assets / "cifar10"), "--output", str(out),
        "--checkpoint-dir", str(checkpoints), *HP,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_continues_from_its_checkpoint_dir(assets: Path, tmp_path: Path) -> None:
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            _train(assets, out, checkpoints), stdout=sink, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if re.search(r"^epoch 1/3 train:", log.read_text(), re.M):
                break
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (out / "model.tar.gz").exists()
    assert not [p for p in out.rglob("*") if p.is_file()] if out.exists() else True

    rerun = subprocess.run(
        _train(assets, out, checkpoints), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    resumed = re.search(r"resuming from .* after epoch (\d)", rerun.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < 3, rerun.stdout
    assert not re.search(r"^epoch 1/3 train:", rerun.stdout, re.M)  # epoch 1 is not trained again
    resumed_line = re.search(r"^epoch 3/3 (.*) time=", rerun.stdout, re.M)

    # an uninterrupted run with the same seed writes the same metrics
    whole = subprocess.run(
        _train(assets, tmp_path / "whole", tmp_path / "whole-checkpoints"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr
    whole_line = re.search(r"^epoch 3/3 (.*) time=", whole.stdout, re.M)
    assert resumed_line and whole_line
    strip = re.compile(r" img/s=\d+")  # speed differs; every metric must not
    assert strip.sub("", resumed_line.group(1)) == strip.sub("", whole_line.group(1))
    assert (out / "model.tar.gz").is_file()


def test_checkpoint_dir_is_refused_with_several_workers(assets: Path, tmp_path: Path, capsys):
    argv = ["train", "--data", str(assets / "cifar10"), "--output", str(tmp_path / "out"), *HP]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--workers", "2", "--checkpoint-dir", str(tmp_path / "c")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--checkpoint-dir is for single-process runs (--workers 1), not --workers 2" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
