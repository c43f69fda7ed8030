"""model.tar.gz round trip, predictions from it, incremental training input."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.artifacts import load_incremental_weights, load_model_archive, write_model_archive
from trainer.errors import DataError, HyperparameterError
from trainer.predict import Predictor, default_batch_size


def test_archive_holds_weights_checkpoints_hyperparameters_and_shape(trained_archive) -> None:
    with tarfile.open(trained_archive) as tar:
        names = tar.getnames()
        info = json.load(tar.extractfile("model-info.json"))  # type: ignore[arg-type]
        hp = json.load(tar.extractfile("hyperparameters.json"))  # type: ignore[arg-type]
    assert {"model.pt", "hyperparameters.json", "model-info.json"} <= set(names)
    assert info["checkpoints"] == [n for n in names if n.startswith("checkpoints/")]
    assert len(info["checkpoints"]) == 1
    assert (info["num_classes"], info["image_shape"], info["num_layers"]) == (4, [3, 8, 8], 20)
    assert hp["num_classes"] == "4" and all(isinstance(v, str) for v in hp.values())


def test_round_trip_gives_the_same_model_in_eval_mode(trained_archive, make_hp) -> None:
    loaded = load_model_archive(trained_archive)
    assert not loaded.model.training
    # in the trainer's memory format: a forward does not convert each convolution's weights
    conv_weights = [m.weight for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    assert (loaded.num_classes, loaded.image_shape) == (4, (3, 8, 8))
    assert loaded.hyperparameters == make_hp()
    rewritten = trained_archive.parent / "copy" / "model.tar.gz"
    write_model_archive(
        rewritten,
        hp=loaded.hyperparameters,
        state_dict=loaded.model.state_dict(),
        checkpoints={},
        info={},
    )
    again = load_model_archive(rewritten)
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(loaded.model(x), again.model(x))
    assert not list(rewritten.parent.glob(".*tmp"))  # no temporary left behind


def test_predictor_resizes_without_keeping_aspect_and_returns_probabilities(
    trained_archive,
) -> None:
    predictor = Predictor.from_archive(trained_archive, device="cpu")
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (8, 40, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(wide).save(encoded, format="PNG")
    grey = Image.fromarray(rng.integers(0, 256, (20, 10), dtype=np.uint8), mode="L")
    probs = predictor.predict([wide, encoded.getvalue(), grey])
    assert probs.shape == (3, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs[0], probs[1], rtol=1e-5)  # array and PNG bytes agree
    # the same pixels resized by hand to 8x8 (squashing 40 -> 8 wide) give the same answer
    squashed = np.array(Image.fromarray(wide).resize((8, 8), Image.Resampling.BILINEAR))
    model_in = torch.from_numpy(squashed).permute(2, 0, 1)[None]
    expected = predictor.model(model_in).softmax(1)[0].detach().numpy()
    np.testing.assert_allclose(probs[0], expected, rtol=1e-5)


def test_predictor_batches_by_image_size_on_a_cpu_and_answers_alike_in_any_batch(
    trained_archive,
) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert default_batch_size(cpu, (3, 32, 32)) == 64
    assert default_batch_size(cpu, (3, 112, 112)) == 32
    assert default_batch_size(cpu, (3, 224, 224)) == 8
    assert default_batch_size(cpu, (3, 2048, 2048)) == 1
    assert default_batch_size(gpu, (3, 224, 224)) == 64
    predictor = Predictor.from_archive(trained_archive, device="cpu")
    assert predictor.batch_size == 64  # 8x8 images
    images = list(np.random.default_rng(1).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8))
    whole = predictor.predict(images)
    predictor.batch_size = 3  # 4 forward passes, the last of one image
    np.testing.assert_allclose(predictor.predict(images), whole, rtol=1e-5, atol=1e-7)


def test_predictor_rejects_what_is_not_an_image(trained_archive) -> None:
    predictor = Predictor.from_archive(trained_archive, device="cpu")
    with pytest.raises(DataError, match="image 1 cannot be decoded"):
        predictor.predict([np.zeros((8, 8, 3), np.uint8), b"not an image"])
    with pytest.raises(DataError, match="image 0 must be an HWC"):
        predictor.predict([np.zeros((8, 8, 3), np.float32)])


def test_multi_label_archive_predicts_independent_sigmoids(tmp_path, make_hp) -> None:
    from trainer.models import build_model

    hp = make_hp(multi_label=1)
    path = write_model_archive(
        tmp_path / "model.tar.gz",
        hp=hp,
        state_dict=build_model(hp).state_dict(),
        checkpoints={},
        info={},
    )
    probs = Predictor.from_archive(path).predict([np.zeros((8, 8, 3), np.uint8)])
    assert probs.shape == (1, 4) and (probs > 0).all() and (probs < 1).all()
    assert not np.isclose(probs.sum(), 1.0)


def test_unreadable_or_foreign_archive_is_a_clear_error(tmp_path, trained_archive) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_model_archive(tmp_path / "missing.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="is not a model.tar.gz written by this trainer"):
        load_model_archive(junk)
    with pytest.raises(DataError, match="has no checkpoint of epoch 9"):
        load_model_archive(trained_archive, checkpoint=9)


def test_archive_members_escaping_the_folder_are_refused(tmp_path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"x"
        member = tarfile.TarInfo("../outside.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(DataError):
        load_model_archive(evil)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_incremental_training_takes_weights_of_a_matching_model(
    trained_archive, tmp_path, make_hp
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.tar.gz").write_bytes(trained_archive.read_bytes())
    state = load_incremental_weights(model_dir, make_hp(epochs=5, learning_rate=0.01))
    final = load_model_archive(trained_archive).model.state_dict()
    assert all(torch.equal(state[k], final[k]) for k in final)


def test_incremental_training_names_every_mismatch(trained_archive, tmp_path, make_hp) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.tar.gz").write_bytes(trained_archive.read_bytes())
    with pytest.raises(HyperparameterError) as info:
        load_incremental_weights(model_dir, make_hp(num_classes=5, image_shape="3,12,12"))
    text = str(info.value)
    assert "num_classes must match" in text and "image_shape must match" in text
    assert "num_layers" not in text
    (model_dir / "other.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="exactly one model.tar.gz"):
        load_incremental_weights(model_dir, make_hp())


def test_weights_of_another_network_layout_are_a_clear_error(tmp_path, make_hp) -> None:
    """An archive written before the CIFAR ResNets became MXNet's pre-activation network holds
    other parameter names: one DataError saying so, not torch's list of missing keys."""
    hp = make_hp()
    old = {"net.conv1.weight": torch.zeros(16, 3, 3, 3), "net.layer1.0.bn1.weight": torch.ones(16)}
    path = write_model_archive(
        tmp_path / "model.tar.gz", hp=hp, state_dict=old, checkpoints={}, info={}
    )
    with pytest.raises(
        DataError,
        match=r"model\.tar\.gz do not fit this version's network .*"
        r"written by an earlier version",
    ):
        load_model_archive(path)
