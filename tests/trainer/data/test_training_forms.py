"""The trainer trains from each input form, single- and multi-label, on the real samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.data import DataConfig
from trainer.hyperparameters import parse_hyperparameters
from trainer.loop import fit

torch.set_num_threads(2)

FORMS = {
    "image-single": ("cifar10", "image", {"num_training_samples": 300}),
    "image-multi": ("cifar10-multilabel", "image", {"multi_label": 1, "num_training_samples": 100}),
    "recordio-single": ("recordio/cifar10", "auto", {}),
    "recordio-multi": (
        "recordio/cifar10-multilabel",
        "auto",
        {"multi_label": 1, "num_training_samples": 60},
    ),
    "manifest-multi": (
        "cifar10-multilabel",
        "augmented-manifest",
        {"multi_label": 1, "use_weighted_loss": 1, "num_training_samples": 100},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_fit_trains_from_each_input_form(form: str, assets: Path, tmp_path: Path) -> None:
    folder, content_type, extra = FORMS[form]
    hp = parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": 200,
            "image_shape": "3,32,32",
            "num_layers": 20,
            "epochs": 1,
            "mini_batch_size": 64,
            "augmentation_type": "crop_color_transform",
            **extra,
        }
    )
    data = DataConfig(assets / folder, content_type=content_type, label_format="class-id")
    lines: list[str] = []
    result = fit(hp, data, tmp_path / "out", log=lines.append)
    assert result.model_path.is_file()
    assert 0.0 <= result.metrics["validation:accuracy"] <= 1.0
    assert result.metrics["train:loss"] == result.metrics["train:loss"]  # not NaN
    assert any(line.startswith("epoch 1/1 ") for line in lines)
