"""Device check (run on a CUDA machine): float16 mixed precision (autocast + GradScaler) and
float32 training through `fit` on the committed real sample, resume from state, and predict.

    PYTHONPATH=. python3 scripts/gpu_check.py OUT_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from trainer.data import DataConfig
from trainer.hyperparameters import parse_hyperparameters
from trainer.loop import fit
from trainer.predict import Predictor

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets" / "cifar10"


def main(out: Path) -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    for precision in ("float32", "float16"):
        hp = parse_hyperparameters({
            "num_classes": 10, "num_training_samples": 300, "num_layers": 20,
            "image_shape": "3,32,32", "epochs": 15, "mini_batch_size": 32,
            "learning_rate": 0.05, "augmentation_type": "crop", "precision_dtype": precision,
        })
        start = time.perf_counter()
        result = fit(hp, DataConfig(ASSETS), out / precision, seed=0, device="cuda",
                     state_dir=out / f"{precision}-state")
        print(f"{precision}: {time.perf_counter() - start:.1f}s", dict(result.metrics))
        assert result.metrics["train:accuracy"] > 0.3, "did not learn"
        predictor = Predictor.from_archive(result.model_path, device="cuda")
        image = next((ASSETS / "validation").rglob("*.jpg")).read_bytes()
        probs = predictor.predict([image])
        print(f"{precision}: predict shape {probs.shape} sum {float(probs.sum()):.4f}")
    print("peak cuda memory MiB", torch.cuda.max_memory_allocated() / 2**20)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
