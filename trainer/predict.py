"""Inference as the SageMaker endpoint does it: each image resized to `image_shape` without keeping
its aspect ratio (no crop), class probabilities out (softmax, or per-class sigmoid with
`multi_label=1`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from trainer.artifacts import LoadedModel, load_model_archive
from trainer.errors import DataError
from trainer.precision import resolve_device

__all__ = ["ImageInput", "Predictor", "default_batch_size"]

ImageInput = bytes | Image.Image | np.ndarray | str | Path

# On a CPU, a batch whose activations outgrow the caches runs slower per image. Measured on 2
# cores (Xeon, fp32), images/s by batch of 8 / 64: ResNet-50 at 224x224 27.0 / 15.2, at 112x112
# 104 / 77; ResNet-18 at 224x224 59 / 50; ResNet-20 at 32x32 and 64x64 within noise of each other.
_CPU_BATCH_PIXELS = 2**19
_MAX_BATCH = 64


def default_batch_size(device: torch.device, image_shape: tuple[int, int, int]) -> int:
    """Images per forward pass: 64 on a GPU; on a CPU the largest power of two up to 64 whose
    batch holds at most 2**19 pixels (64 at 32x32, 32 at 112x112, 8 at 224x224)."""
    if device.type != "cpu":
        return _MAX_BATCH
    _channels, height, width = image_shape
    batch = _MAX_BATCH
    while batch > 1 and batch * height * width > _CPU_BATCH_PIXELS:
        batch //= 2
    return batch


class Predictor:
    """Class probabilities for images, from a trained `model.tar.gz`.

    >>> predictor = Predictor.from_archive("out/model.tar.gz")   # doctest: +SKIP
    >>> predictor.predict([Path("cat.jpg").read_bytes()]).shape  # doctest: +SKIP
    (1, 10)
    """

    def __init__(
        self, loaded: LoadedModel, device: torch.device, batch_size: int | None = None
    ) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.batch_size = batch_size or default_batch_size(device, loaded.image_shape)
        channels, self.height, self.width = loaded.image_shape
        self.mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
        self.channels = channels

    @classmethod
    def from_archive(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        checkpoint: int | None = None,
    ) -> Predictor:
        """Load `model.tar.gz` (the final model, or epoch `checkpoint`'s)."""
        resolved = resolve_device(device)
        return cls(load_model_archive(path, checkpoint=checkpoint, device=resolved), resolved)

    @property
    def num_classes(self) -> int:
        return self.loaded.num_classes

    def prepare(self, image: ImageInput, index: int = 0) -> np.ndarray:
        """`image` as the model takes it: an HWC uint8 array of `image_shape`, resized without
        keeping the aspect ratio. A `DataError` names the image by its path, else by `index`."""
        name = f"image {index}"
        if isinstance(image, str | Path):
            name = f"image {image}"
            try:
                image = Path(image).read_bytes()
            except OSError as exc:
                raise DataError(f"{name} cannot be read: {exc.strerror}") from None
        if isinstance(image, bytes):
            try:
                image = Image.open(io.BytesIO(image))
                image.load()
            except UnidentifiedImageError:
                raise DataError(
                    f"{name} cannot be decoded: it is in no format Pillow reads; a JPEG, PNG or "
                    "other image file is expected"
                ) from None
            except OSError as exc:
                raise DataError(f"{name} cannot be decoded: {exc}") from None
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise DataError(
                    f"{name} must be an HWC (or HW) uint8 array, but got "
                    f"{image.dtype} with shape {image.shape}"
                )
            if image.shape == (self.height, self.width, self.channels):
                return image  # already prepared
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise DataError(
                f"{name} must be encoded bytes, a file path, a PIL image or an HWC uint8 "
                f"array, but got {type(image).__name__}"
            )
        if self.mode is not None:
            image = image.convert(self.mode)
        resized = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.uint8)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.shape[2] != self.channels:
            raise DataError(
                f"{name} has {array.shape[2]} channels, the model takes {self.channels}"
            )
        return array

    @torch.inference_mode()
    def predict(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Probabilities, shape (len(images), num_classes), float32; the first image that cannot
        be used raises `DataError` (`prepare` each image first to go on past it)."""
        arrays = [self.prepare(image, i) for i, image in enumerate(images)]
        out = []
        for start in range(0, len(arrays), self.batch_size):
            batch = torch.from_numpy(np.stack(arrays[start : start + self.batch_size]))
            batch = batch.permute(0, 3, 1, 2).to(self.device)
            logits = self.model(batch).float()
            probs = torch.sigmoid(logits) if self.loaded.multi_label else logits.softmax(dim=1)
            out.append(probs.cpu().numpy())
        if not out:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)
