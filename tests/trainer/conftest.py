"""Small in-memory data sets and a trained archive for the trainer's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from trainer.data import InMemoryLoaders
from trainer.hyperparameters import Hyperparameters, parse_hyperparameters
from trainer.loop import fit

torch.set_num_threads(2)


def make_hp(**values: object) -> Hyperparameters:
    """A tiny ResNet-20 job on 8x8 images with 4 classes (override anything)."""
    base: dict[str, object] = {
        "num_classes": 4,
        "num_training_samples": 32,
        "num_layers": 20,
        "image_shape": "3,8,8",
        "epochs": 2,
        "mini_batch_size": 16,
        "learning_rate": 0.05,
    }
    return parse_hyperparameters({**base, **values})


def make_loaders(
    hp: Hyperparameters, *, seed: int = 0, n_train: int = 32, n_validation: int = 16
) -> InMemoryLoaders:
    """Images whose class sets the brightness of one quadrant (learnable), uint8 NCHW."""
    g = torch.Generator().manual_seed(1234)
    c, h, w = hp.image_shape

    def images_for(labels: torch.Tensor) -> torch.Tensor:
        x = torch.randint(0, 120, (len(labels), c, h, w), generator=g, dtype=torch.uint8)
        for i, label in enumerate(
            labels.tolist() if labels.dim() == 1 else labels.argmax(1).tolist()
        ):
            top, left = divmod(label % 4, 2)
            x[i, :, top * h // 2 : (top + 1) * h // 2, left * w // 2 : (left + 1) * w // 2] += 120
        return x

    if hp.multi_label:
        train_labels = (torch.rand(n_train, hp.num_classes, generator=g) < 0.4).float()
        val_labels = (torch.rand(n_validation, hp.num_classes, generator=g) < 0.4).float()
    else:
        train_labels = torch.randint(0, hp.num_classes, (n_train,), generator=g)
        val_labels = torch.randint(0, hp.num_classes, (n_validation,), generator=g)
    return InMemoryLoaders(
        images_for(train_labels),
        train_labels,
        images_for(val_labels),
        val_labels,
        batch_size=hp.mini_batch_size,
        seed=seed,
    )


@pytest.fixture(name="make_hp")
def make_hp_fixture() -> Callable[..., Hyperparameters]:
    return make_hp


@pytest.fixture(name="make_loaders")
def make_loaders_fixture() -> Callable[..., InMemoryLoaders]:
    return make_loaders


@pytest.fixture
def quiet() -> Callable[[str], None]:
    return lambda line: None


@pytest.fixture(scope="session")
def trained_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.tar.gz of a 2-epoch ResNet-20 run (best-epoch checkpoint policy)."""
    hp = make_hp()
    out = tmp_path_factory.mktemp("trained")
    return fit(hp, make_loaders(hp), out, log=lambda line: None).model_path
