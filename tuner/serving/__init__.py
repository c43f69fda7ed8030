"""`tune serve`: a trained model behind SageMaker's inference contract (`GET /ping`,
`POST /invocations`), with requests that arrive together batched into one forward pass."""

from tuner.serving.app import ServeSettings, build_app
from tuner.serving.batching import Batcher
from tuner.serving.contract import Limits, RequestError
from tuner.serving.model_source import ModelSource, resolve_model

__all__ = [
    "Batcher",
    "Limits",
    "ModelSource",
    "RequestError",
    "ServeSettings",
    "build_app",
    "resolve_model",
]
