"""With torch.distributed initialised, `fit` trains data-parallel (DDP): each worker takes its share
of the batches, metrics are summed over workers, and only rank 0 writes the archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.data import InMemoryLoaders
from trainer.hyperparameters import parse_hyperparameters
from trainer.loop import fit


def _worker(rank: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    try:
        hp = parse_hyperparameters(
            {
                "num_classes": 3,
                "num_training_samples": 32,
                "num_layers": 20,
                "image_shape": "3,8,8",
                "epochs": 2,
                "mini_batch_size": 4,
                "kv_store": "dist_sync",
            }
        )
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 3, (32,), generator=g)
        lines: list[str] = []
        result = fit(
            hp,
            InMemoryLoaders(x, y, x[:8], y[:8], batch_size=4),
            f"{folder}/out{rank}",
            device="cpu",
            log=lines.append,
        )
        Path(folder, f"rank{rank}.json").write_text(
            json.dumps({"history": result.history, "lines": lines})
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_workers_train_data_parallel(tmp_path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert (tmp_path / "out0" / "model.tar.gz").is_file()
    assert not (tmp_path / "out1").exists()
    assert [m["epoch"] for m in ranks[0]["history"]] == [1, 2]
    for key in ("validation:accuracy", "train:accuracy", "train:loss"):  # summed over workers
        assert [m[key] for m in ranks[0]["history"]] == [m[key] for m in ranks[1]["history"]]
    assert not any("has no effect" in line for line in ranks[0]["lines"])


def _count_batches(rank: int, folder: str, data_root: str) -> None:
    from trainer.data import DataConfig
    from trainer.loop import _loaders

    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous-data", rank=rank, world_size=2
    )
    try:
        hp = parse_hyperparameters(
            {
                "num_classes": 10,
                "num_training_samples": 300,
                "num_layers": 20,
                "image_shape": "3,32,32",
                "mini_batch_size": 10,
            }
        )
        loaders = _loaders(hp, DataConfig(Path(data_root)), 0, torch.device("cpu"))
        Path(folder, f"batches{rank}.json").write_text(json.dumps(len(loaders.train)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_workers_each_read_their_share_of_real_data(tmp_path, assets) -> None:
    mp.spawn(_count_batches, args=(str(tmp_path), str(assets / "cifar10")), nprocs=2, join=True)
    counts = [json.loads((tmp_path / f"batches{r}.json").read_text()) for r in (0, 1)]
    assert counts == [15, 15]  # 300 images, batches of 10, split over two workers
