"""The trained classifier as one MLflow model with two flavours, and its registration with an alias.

- `python_function`: `ImageClassifierModel` wraps `trainer.predict.Predictor`: it takes encoded
  image bytes (JPEG/PNG, what SageMaker's endpoint takes as `application/x-image`) or decoded HWC
  uint8 arrays, resizes them to the trained `image_shape` (no aspect kept, as the trainer's
  inference does) and returns class probabilities `(N, num_classes)`. The model's signature and
  input example are this flavour's (a DataFrame with a column `image` (bytes) or `pixels` (HWC
  arrays)); the unwrapped model also takes a list of bytes/arrays or an `(N, H, W, C)` array.
- `pytorch`: `mlflow.pytorch.load_model("models:/NAME@champion")` returns the trainer's own
  `nn.Module` in eval mode (pickled, its classes from the `trainer` code logged with it): NCHW
  images already resized to `image_shape`, on the 0..255 scale (uint8 or float; it normalises
  inside), out come logits (softmax, or sigmoid with `multi_label`, gives the probabilities).
  The flavour's `input` and `output` entries in the MLmodel file say so.

The `model.tar.gz` travels inside the MLflow model as an artifact (and on the run as
`model_archive/`), the `trainer` package as code, so loading needs only torch, torchvision, numpy,
pandas and Pillow, and no network beyond the tracking store.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow.pyfunc
import numpy as np

__all__ = ["ARCHIVE_ARTIFACT", "ImageClassifierModel", "log_model_on_run", "model_signature"]

ARCHIVE_ARTIFACT = "model_archive"
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_REQUIREMENTS = ("torch", "torchvision", "numpy", "pandas", "pillow", "cloudpickle", "mlflow")
_PYTORCH_FLAVOUR = "pytorch"


class ImageClassifierModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Class probabilities from images, through the trainer's own `Predictor`."""

    # `predict` takes several input forms (DataFrame, list, array), so `model_input` has no type
    # hint for MLflow to validate against; this is MLflow's own switch (ChatModel uses it) to skip
    # that check and the warning, printed at class definition, that it found no hint.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load the model.tar.gz logged as the `model_archive` artifact."""
        from trainer.predict import Predictor

        self._predictor = Predictor.from_archive(Path(context.artifacts[ARCHIVE_ARTIFACT]))

    # `model_input` stays unannotated: MLflow reads a type hint there as a schema of its own.
    def predict(  # type: ignore[no-untyped-def]
        self, context, model_input, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Probabilities `(N, num_classes)` for a batch of encoded or decoded images."""
        images = _images_of(model_input)
        if not images:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(self._predictor.predict(images), dtype=np.float32)


def _images_of(model_input: Any) -> list[Any]:
    """Normalise the accepted input forms to a list of bytes or HWC uint8 arrays."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        rows: list[Any] = []
        for _, row in model_input.iterrows():
            image = row.get("image")
            if isinstance(image, bytes | bytearray):
                rows.append(bytes(image))
            else:
                rows.append(_as_pixels(row.get("pixels")))
        return rows
    if isinstance(model_input, np.ndarray):
        if model_input.ndim == 3:
            return [_as_pixels(model_input)]
        return [_as_pixels(image) for image in model_input]
    return [
        bytes(item) if isinstance(item, bytes | bytearray) else _as_pixels(item)
        for item in model_input
    ]


def _as_pixels(value: Any) -> np.ndarray:
    if value is None:
        raise ValueError(
            "each input row needs an `image` (encoded bytes) or `pixels` (HWC uint8 array)"
        )
    array = np.asarray(value)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"an image array must be HWC (3 dimensions), got shape {array.shape}")
    return array


def model_signature(num_classes: int) -> Any:
    """Input: optional `image` (bytes) or `pixels` (HWC integers); output: float32 probabilities."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import Array

    inputs = Schema(
        [
            ColSpec("binary", "image", required=False),
            ColSpec(Array(Array(Array("long"))), "pixels", required=False),
        ]
    )
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _example_image(height: int, width: int, channels: int) -> bytes:
    """A PNG of the trained shape (a gradient; its content does not matter, its form does)."""
    from PIL import Image

    gradient = np.linspace(0, 255, height * width * channels, dtype=np.float64)
    pixels = gradient.reshape(height, width, channels).astype(np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _is_better(value: float, than: float, mode: str) -> bool:
    return value > than if mode == "max" else value < than


def log_model_on_run(
    *,
    tracking_uri: str,
    run_id: str,
    archive: Path,
    registered_model_name: str | None,
    alias: str = "champion",
    objective: str | None = None,
    mode: str = "max",
    value: float | None = None,
    log: Callable[[str], None] = print,
) -> str | None:
    """Log `archive` as an MLflow model (pyfunc and pytorch flavours; also as a plain artifact)
    on `run_id`; register it.

    With `registered_model_name`, a new model version is created, tagged with the objective, mode
    and value, and `alias` moves to it only when there is no aliased version yet or this value beats
    the aliased one's (same objective and mode). Returns the new version, or None without a name.
    """
    import pandas as pd
    from mlflow.models import Model

    from trainer.artifacts import load_model_archive
    from tuner.tracking.client import open_client

    loaded = load_model_archive(archive)
    channels, height, width = loaded.image_shape
    num_classes = loaded.num_classes
    client = open_client(tracking_uri)
    client.log_artifact(run_id, str(archive), "model_archive")
    trainer_dir = Path(sys.modules["trainer"].__path__[0])
    with _global_tracking_uri(tracking_uri):
        # By value, so loading needs no `tuner` package: only `trainer`, which travels as code.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            with mlflow.start_run(run_id=run_id):
                info = Model.log(
                    None,  # artifact_path: deprecated (positional), `name` replaces it
                    name="model",
                    flavor=_PyfuncWithPytorch,
                    flavor_name=_PYTORCH_FLAVOUR,
                    pytorch_model=loaded.model,
                    image_shape=loaded.image_shape,
                    python_model=ImageClassifierModel(),
                    artifacts={ARCHIVE_ARTIFACT: str(archive)},
                    code_paths=[str(trainer_dir)],
                    signature=model_signature(num_classes),
                    input_example=pd.DataFrame(
                        {"image": [_example_image(height, width, channels)]}
                    ),
                    pip_requirements=_requirements(),
                )
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        if not registered_model_name:
            return None
        version = _register(client, info, run_id, registered_model_name, objective, mode, value)
        _move_alias_if_better(
            client, registered_model_name, alias, version, objective, mode, value, log
        )
    return version


class _PyfuncWithPytorch:
    """A flavour module for `Model.log`: the pyfunc model of `mlflow.pyfunc.save_model`, plus the
    `pytorch` flavour of `mlflow.pytorch.save_model` in the same MLmodel (one signature and input
    example, the pyfunc's; one `code/` folder, the `trainer` package both flavours import)."""

    @staticmethod
    def save_model(
        path: str,
        mlflow_model: Any,
        pytorch_model: Any,
        image_shape: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        """Save the pyfunc model at `path`, then add `pytorch_model` (which takes `image_shape`
        images) as its `pytorch` flavour."""
        import mlflow.pytorch
        import torch
        from mlflow.models import Model

        mlflow.pyfunc.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        code = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME].get("code")
        with tempfile.TemporaryDirectory(prefix="pytorch-flavour-") as tmp:
            saved = Path(tmp) / "model"
            # Pickle, not torch.export: `load_model` gives back the trainer's module itself (any
            # batch size, uint8 or float input, `.train()` for fine-tuning). The pyfunc is
            # cloudpickled anyway; MLflow's warning about pickles would repeat on every study.
            with _quiet(mlflow.pytorch.__name__):
                mlflow.pytorch.save_model(
                    pytorch_model,
                    path=str(saved),
                    serialization_format="pickle",
                    signature=False,
                    pip_requirements=kwargs.get("pip_requirements"),
                )
            conf = dict(Model.load(str(saved)).flavors[_PYTORCH_FLAVOUR])
            data = Path(path) / conf["model_data"]
            if data.exists():
                raise FileExistsError(f"{data} exists: the pyfunc model left no room for torch's")
            shutil.move(str(saved / conf["model_data"]), str(data))
        channels, height, width = image_shape
        conf.update(
            code=code,
            pytorch_version=str(torch.__version__),
            input=f"NCHW images on the 0..255 scale (uint8 or float), shape (-1, {channels}, "
            f"{height}, {width})",
            output="logits (-1, num_classes): softmax gives the probabilities "
            "(sigmoid per class with multi_label)",
        )
        mlflow_model.add_flavor(_PYTORCH_FLAVOUR, **conf)
        mlflow_model.model_size_bytes = sum(
            f.stat().st_size for f in Path(path).rglob("*") if f.is_file()
        )
        mlflow_model.save(str(Path(path) / "MLmodel"))


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drop `logger_name`'s warnings for the block (its level put back after)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging and registration resolve `models:/` URIs through the global store;
    point it at `uri` and put back exactly what was there (module state and environment)."""
    from tuner.engine_internals import mlflow_global_uris

    saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
    saved_tracking, saved_registry = mlflow_global_uris()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        # None means "unset" to both setters (the environment is put back below)
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]
        mlflow.set_registry_uri(saved_registry)  # type: ignore[arg-type]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _register(
    client: Any,
    info: Any,
    run_id: str,
    name: str,
    objective: str | None,
    mode: str,
    value: float | None,
) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {
        "objective": objective or "",
        "mode": mode,
        "value": "" if value is None else repr(float(value)),
    }
    # a tracking server wants the logged model's id beside its `models:/<id>` source
    version = client.create_model_version(
        name, info.model_uri, run_id=run_id, tags=tags, model_id=info.model_id
    )
    return str(version.version)


def _move_alias_if_better(
    client: Any,
    name: str,
    alias: str,
    version: str,
    objective: str | None,
    mode: str,
    value: float | None,
    log: Callable[[str], None],
) -> None:
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        current = None
    if current is not None:
        tags = current.tags or {}
        comparable = tags.get("objective") == (objective or "") and tags.get("mode") == mode
        if not comparable:
            log(
                f"mlflow: {name}@{alias} (version {current.version}) was chosen on "
                f"{tags.get('objective')!r} ({tags.get('mode')}), "
                f"this one on {objective!r} ({mode}); "
                f"the alias stays, version {version} is registered without it"
            )
            return
        previous = float(tags.get("value") or "nan")
        if value is None or (not math.isnan(previous) and not _is_better(value, previous, mode)):
            log(
                f"mlflow: {name} version {version} ({objective}={value}) does not beat "
                f"{name}@{alias} (version {current.version}, {previous}); the alias stays"
            )
            return
    client.set_registered_model_alias(name, alias, version)
    log(f"mlflow: {name}@{alias} -> version {version} ({objective}={value})")
