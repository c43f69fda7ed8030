"""`tune train` and `tune predict` end to end on the committed real CIFAR-10 sample, and every kind
of bad input ending in exit code 2 with a clear message and no output directory."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from tuner.cli import main

TINY = [
    "--hp",
    "num_classes=10",
    "--hp",
    "num_training_samples=40",
    "--hp",
    "num_layers=20",
    "--hp",
    "image_shape=3,32,32",
    "--hp",
    "epochs=1",
    "--hp",
    "mini_batch_size=8",
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def small_data(assets: Path, tmp_path: Path) -> Path:
    """A copy of the real sample cut to 4 training and 2 validation images per class."""
    root = tmp_path / "data"
    for channel, keep in (("train", 4), ("validation", 2)):
        rows = (assets / "cifar10" / f"{channel}_lst" / f"{channel}.lst").read_text().splitlines()
        kept, per_class = [], {}
        for row in rows:
            label, rel = row.split("\t")[1], row.split("\t")[-1]
            if per_class.get(label, 0) < keep:
                per_class[label] = per_class.get(label, 0) + 1
                kept.append(row)
                target = root / channel / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(assets / "cifar10" / channel / rel, target)
        (root / f"{channel}_lst").mkdir(parents=True)
        (root / f"{channel}_lst" / f"{channel}.lst").write_text("\n".join(kept) + "\n")
    return root


def test_train_help_explains_every_option(capsys) -> None:
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0
    for option in ("--data", "--output", "--hyperparameters", "--hp", "--content-type", "--seed"):
        assert option in out
    assert "model.tar.gz" in out and "NAME=VALUE" in out


def test_small_run_writes_the_model_and_says_where(small_data, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(
        ["train", "--data", str(small_data), "--output", str(out_dir), *TINY], capsys
    )
    assert code == 0, err
    assert re.search(r"^epoch 1/1 train:accuracy=[0-9.]+ .*validation:accuracy=[0-9.]+", out, re.M)
    assert f"model written to {out_dir / 'model.tar.gz'}" in out
    assert (out_dir / "model.tar.gz").is_file()


def test_train_says_what_it_found_and_gives_notices_as_one_line(small_data, tmp_path, capsys):
    argv = ["train", "--data", str(small_data), "--output", str(tmp_path / "out"), *TINY]
    code, out, err = run([*argv, "--hp", "num_training_samples=400"], capsys)
    assert code == 0, err
    start = out[: out.index("epoch 1/1")]
    assert "data: image" in start
    assert re.search(r"train: 40 images, 10 classes, cached in memory \(0 MiB, decoded in", start)
    assert "validation: 20 images, 10 classes, cached in memory" in start
    assert re.search(
        r"device: cpu \(\w+(, \w+)*\), precision: float32, threads: \d+, model: ResNet-20", start
    )
    lines = (out + err).splitlines()
    assert (
        "notice: num_training_samples=400 but the train channel holds 40 images; the "
        "learning-rate schedule uses num_training_samples" in lines
    )
    assert "Warning" not in out + err  # no Python warning format, no source path


def test_train_streams_when_the_cache_is_too_small(small_data, tmp_path, capsys) -> None:
    argv = ["train", "--data", str(small_data), "--output", str(tmp_path / "out"), *TINY]
    code, out, err = run([*argv, "--cache-mib", "0"], capsys)
    assert code == 0, err
    assert re.search(r"train: 40 images, 10 classes, streamed \(about 0 MiB decoded", out)
    assert re.search(r"^epoch 1/1 train:accuracy=", out, re.M)


@pytest.mark.slow
def test_train_on_the_real_cifar_sample_beats_chance_and_predicts(assets, tmp_path, capsys) -> None:
    hp_file = tmp_path / "hyperparameters.json"
    hp_file.write_text(
        json.dumps(
            {  # SageMaker's all-string form; adam settles fastest on 300 images
                "num_classes": "10",
                "num_training_samples": "300",
                "num_layers": "20",
                "image_shape": "3,32,32",
                "epochs": "8",
                "mini_batch_size": "16",
                "optimizer": "adam",
                "learning_rate": "0.002",
                "lr_scheduler_step": "5",
            }
        )
    )
    out_dir = tmp_path / "out"
    code, out, err = run(
        [
            "train",
            "--data",
            str(assets / "cifar10"),
            "--output",
            str(out_dir),
            "--hyperparameters",
            str(hp_file),
            "--seed",
            "0",
        ],
        capsys,
    )
    assert code == 0, err
    accuracies = [float(a) for a in re.findall(r"validation:accuracy=([0-9.]+)", out)]
    assert len(accuracies) == 9  # eight epoch lines and the summary
    assert accuracies[-1] > 0.2, out  # 10 classes: chance is 0.1
    model = out_dir / "model.tar.gz"
    images = sorted((assets / "cifar10" / "validation").glob("*/*.jpg"))[:3]
    code, out, err = run(["predict", "--model", str(model), *map(str, images)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert len(row["prediction"]) == 10 and sum(row["prediction"]) == pytest.approx(1, 1e-4)


def break_lst(
    root: Path, channel: str, index: int, *, label: str | None = None, path: str | None = None
) -> None:
    lst = root / f"{channel}_lst" / f"{channel}.lst"
    rows = [row.split("\t") for row in lst.read_text().splitlines()]
    if label is not None:
        rows[index][1] = label
    if path is not None:
        rows[index][-1] = path
    lst.write_text("\n".join("\t".join(r) for r in rows) + "\n")


def first_image(root: Path) -> Path:
    rel = (root / "train_lst" / "train.lst").read_text().splitlines()[0].split("\t")[-1]
    return root / "train" / rel


BAD_INPUTS = {
    "missing required": (lambda root: None, ["--hp", "epochs=1"], "num_classes is required"),
    "unknown name": (
        lambda root: None,
        [*TINY, "--hp", "learning_rte=0.1"],
        "did you mean 'learning_rate'?",
    ),
    "out of range": (
        lambda root: None,
        [*TINY, "--hp", "learning_rate=2"],
        "learning_rate must be a float in [0, 1], but got '2'",
    ),
    "wrong type": (
        lambda root: None,
        [*TINY, "--hp", "mini_batch_size=big"],
        "mini_batch_size must be a positive integer, but got 'big'",
    ),
    "not name=value": (
        lambda root: None,
        [*TINY, "--hp", "epochs"],
        "--hp must be given as name=value",
    ),
    "missing channel": (lambda root: shutil.rmtree(root / "validation"), TINY, "validation"),
    "lst names a missing file": (
        lambda root: break_lst(root, "train", 2, path="cat/none.jpg"),
        TINY,
        "none.jpg",
    ),
    "label out of range": (lambda root: break_lst(root, "train", 3, label="12"), TINY, "12"),
    "unreadable image": (
        lambda root: first_image(root).write_bytes(b"not a jpeg"),
        TINY,
        "0000.jpg",
    ),
    "image smaller than image_shape": (
        lambda root: Image.new("RGB", (20, 20)).save(first_image(root), format="JPEG"),
        TINY,
        "smaller than",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_a_message_and_leaves_no_output(
    case, small_data, tmp_path, capsys
) -> None:
    breaker, argv, expected = BAD_INPUTS[case]
    breaker(small_data)
    out_dir = tmp_path / "out"
    code, out, err = run(
        ["train", "--data", str(small_data), "--output", str(out_dir), *argv], capsys
    )
    assert code == 2, (out, err)
    assert err.startswith("error: ") or "Error" in err
    assert expected in err, err
    assert "Traceback" not in err
    assert not out_dir.exists()


def test_bad_files_given_to_the_cli_exit_2(small_data, tmp_path, capsys) -> None:
    bad_json = tmp_path / "hp.json"
    bad_json.write_text("{oops")
    code, _, err = run(
        [
            "train",
            "--data",
            str(small_data),
            "--output",
            str(tmp_path / "o"),
            "--hyperparameters",
            str(bad_json),
        ],
        capsys,
    )
    assert code == 2 and "is not valid JSON" in err
    code, _, err = run(
        ["train", "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"), *TINY],
        capsys,
    )
    assert code == 2 and "nowhere" in err
    assert not (tmp_path / "o").exists()


def test_model_channel_starts_incremental_training_and_must_match(small_data, tmp_path, capsys):
    first = tmp_path / "first"
    code, _, err = run(["train", "--data", str(small_data), "--output", str(first), *TINY], capsys)
    assert code == 0, err
    (small_data / "model").mkdir()
    shutil.copy(first / "model.tar.gz", small_data / "model" / "model.tar.gz")
    code, out, err = run(
        ["train", "--data", str(small_data), "--output", str(tmp_path / "second"), *TINY], capsys
    )
    assert code == 0, err
    assert "incremental training: starting from the model in" in out
    code, out, err = run(
        [
            "train",
            "--data",
            str(small_data),
            "--output",
            str(tmp_path / "third"),
            *TINY,
            "--hp",
            "num_classes=12",
        ],
        capsys,
    )
    assert code == 2 and "num_classes must match the model in" in err
    assert not (tmp_path / "third").exists()


def test_predict_answers_for_the_good_images_and_names_each_bad_one(
    small_data, tmp_path, capsys
) -> None:
    out_dir = tmp_path / "out"
    code, _, err = run(
        ["train", "--data", str(small_data), "--output", str(out_dir), *TINY], capsys
    )
    assert code == 0, err
    model = str(out_dir / "model.tar.gz")
    good = first_image(small_data)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])

    code, out, err = run(
        ["predict", "--model", model, str(garbage), str(good), str(truncated)], capsys
    )
    assert code == 1, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and sum(rows[0]["prediction"]) == pytest.approx(1, 1e-4)
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: image ") for line in lines), err
    assert f"image {garbage} cannot be decoded: it is in no format Pillow reads" in lines[0]
    assert f"image {truncated} cannot be decoded: " in lines[1]
    assert "Traceback" not in err

    code, out, err = run(["predict", "--model", model, str(garbage), str(truncated)], capsys)
    assert (code, out, len(err.splitlines())) == (2, "", 2), err
    code, out, _ = run(["predict", "--help"], capsys)
    assert "Exit status: 0 when every image was predicted, 1 when some" in " ".join(out.split())


class _Payload:
    """Unpickled, it runs `touch marker`: what a hostile model.pt would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def write_hostile_archive(path: Path, marker: Path) -> Path:
    """A model.tar.gz laid out as tune train writes it (matching TINY) whose model.pt is a pickle
    that would create `marker` if it were ever unpickled without weights_only."""
    weights = io.BytesIO()
    torch.save({"conv.weight": _Payload(marker)}, weights)
    hp = {"num_classes": "10", "num_training_samples": "40", "num_layers": "20"}
    info = {"num_classes": 10, "image_shape": [3, 32, 32], "num_layers": 20, "checkpoints": []}
    members = {
        "model.pt": weights.getvalue(),
        "hyperparameters.json": json.dumps({**hp, "image_shape": "3,32,32"}).encode(),
        "model-info.json": json.dumps(info).encode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def test_hostile_archive_payload_is_live(tmp_path) -> None:
    armed = tmp_path / "armed"
    archive = write_hostile_archive(tmp_path / "model.tar.gz", armed)
    with tarfile.open(archive) as tar:
        torch.load(tar.extractfile("model.pt"), weights_only=False)  # type: ignore[arg-type]
    assert armed.exists()  # so the refusals below are refusals of a real payload


def test_predict_refuses_an_archive_holding_code_in_one_line(assets, tmp_path, capsys) -> None:
    marker = tmp_path / "marker"
    archive = write_hostile_archive(tmp_path / "model.tar.gz", marker)
    image = next((assets / "cifar10" / "validation").glob("*/*.jpg"))
    code, out, err = run(["predict", "--model", str(archive), str(image)], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {archive} member model.pt is refused: it holds code or objects other than "
        f"tensors ({os.system.__module__}.system), which were not run; a model archive may hold "
        "only tensors, as tune train writes them"
    ]
    assert not marker.exists()


def test_incremental_training_refuses_a_model_channel_holding_code(small_data, tmp_path, capsys):
    marker = tmp_path / "marker"
    archive = write_hostile_archive(small_data / "model" / "model.tar.gz", marker)
    out_dir = tmp_path / "out"
    code, _, err = run(
        ["train", "--data", str(small_data), "--output", str(out_dir), *TINY], capsys
    )
    assert code == 2, err
    assert f"error: {archive} member model.pt is refused: it holds code" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not marker.exists()
    assert not out_dir.exists()
