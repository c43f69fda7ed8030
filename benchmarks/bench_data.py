"""Data-pipeline benchmark: is the input pipeline what limits training? Prints, in one run:

1. ResNet-20 at 32x32, float32, training img/s end to end (`build_loaders` with
   `augmentation_type=crop_color_transform`, batches straight into the training step) over
   model-only img/s (the same steps on pre-decoded, pre-cropped tensors already in memory).
   Target: >= 0.8.
2. RecordIO read throughput (bytes + decode of each image from a `.rec`) over reading the same
   images as individual files (the records' own JPEG bytes written out as files).
3. The decoders: torchvision's libjpeg-turbo vs Pillow, images/s.

    python -m benchmarks.bench_data [--data data/quickstart] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.data import DataConfig, RecordReader, build_loaders
from trainer.data.datasets import FileBytes, RecordBytes
from trainer.data.images import decode
from trainer.hyperparameters import parse_hyperparameters
from trainer.models import build_model

BATCH = 128


def _step_fn(hp):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    model = build_model(hp)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = loss_fn(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _model_only(hp, images: torch.Tensor, labels: torch.Tensor, rounds: int) -> float:  # noqa: ANN001
    step = _step_fn(hp)
    step(images[:BATCH], labels[:BATCH])  # warm-up
    n = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(images), BATCH):
            step(images[i : i + BATCH], labels[i : i + BATCH])
            n += len(images[i : i + BATCH])
    return n / (time.perf_counter() - start)


def _end_to_end(hp, loaders, epochs: int) -> float:  # noqa: ANN001
    step = _step_fn(hp)
    first = next(iter(loaders.train))
    step(*first)  # warm-up
    n = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        loaders.set_epoch(epoch)
        for images, labels in loaders.train:
            step(images, labels)
            n += len(images)
    return n / (time.perf_counter() - start)


def _read_rate(source: FileBytes | RecordBytes, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(len(source)):
            decode(source(i), 3, name="x")
    return rounds * len(source) / (time.perf_counter() - start)


def _decoder_rates(blobs: list[bytes]) -> tuple[float, float]:
    start = time.perf_counter()
    for b in blobs:
        decode(b, 3, name="x")
    tv = len(blobs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in blobs:
        with Image.open(io.BytesIO(b)) as img:
            torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    pil = len(blobs) / (time.perf_counter() - start)
    return tv, pil


def main() -> None:
    parser = argparse.ArgumentParser(description="data pipeline benchmark")
    parser.add_argument("--data", type=Path, default=Path("data/quickstart"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, cpu: "
        f"{torch.backends.cpu.get_cpu_capability()}, data: {args.data}"
    )

    hp = parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": 2000,
            "image_shape": "3,32,32",
            "num_layers": 20,
            "mini_batch_size": BATCH,
            "augmentation_type": "crop_color_transform",
        }
    )
    start = time.perf_counter()
    loaders = build_loaders(hp, DataConfig(args.data), seed=0)
    build_s = time.perf_counter() - start
    cache = loaders.train.cache.dense
    assert isinstance(cache, torch.Tensor), "the benchmark data must fit the decode cache"
    print(
        f"build_loaders (read + decode {loaders.num_train + loaders.num_validation} images "
        f"once): {build_s:.2f}s"
    )

    e2e = _end_to_end(hp, loaders, args.epochs)
    model = _model_only(hp, cache.clone(), loaders.train.labels.clone(), args.epochs)
    print(
        f"ResNet-20 32x32 float32 batch {BATCH}: model-only {model:.0f} img/s, "
        f"end-to-end with crop_color_transform {e2e:.0f} img/s"
    )
    print(f"ratio end-to-end / model-only = {e2e / model:.3f} (target >= 0.8)")

    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    from trainer.data.transforms import AUGMENTATIONS, augment_batch

    for i in range(0, len(cache), BATCH):
        augment_batch(cache[i : i + BATCH], 32, 32, AUGMENTATIONS["crop_color_transform"], g)
    aug_rate = len(cache) / (time.perf_counter() - start)
    print(f"augmentation alone (crop_color_transform, batched uint8): {aug_rate:.0f} img/s")

    recs = sorted((args.data / "train").glob("*.rec"))
    records = RecordBytes([RecordReader(r, r.with_suffix(".idx")) for r in recs])
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(len(records)):
            path = Path(tmp) / f"{i:06d}.jpg"
            path.write_bytes(records(i))
            paths.append(path)
        files = FileBytes(paths)
        _read_rate(files, 1)  # warm the page cache for both
        _read_rate(records, 1)
        file_rate = _read_rate(files, 3)
        rec_rate = _read_rate(records, 3)
        blobs = [records(i) for i in range(len(records))]
    print(
        f"read + decode: RecordIO {rec_rate:.0f} img/s, files {file_rate:.0f} img/s, "
        f"ratio RecordIO / files = {rec_rate / file_rate:.2f}"
    )
    tv, pil = _decoder_rates(blobs)
    print(f"decoders: torchvision {tv:.0f} img/s, Pillow {pil:.0f} img/s, ratio {tv / pil:.2f}")
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
