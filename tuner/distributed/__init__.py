"""`tune train --workers N`: data-parallel training on Ray Train, in SageMaker's two `kv_store`
modes (`dist_sync`: DDP; `dist_async`: a parameter server on a Ray actor).

Names are imported on first use (they import Ray and torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from tuner.distributed.parameter_server import (
        ParameterServer,
        ParameterServerClient,
        start_parameter_server,
    )
    from tuner.distributed.training import DistributedResult, train_distributed

__all__ = [
    "DistributedResult",
    "ParameterServer",
    "ParameterServerClient",
    "start_parameter_server",
    "train_distributed",
]

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DistributedResult": "tuner.distributed.training",
    "train_distributed": "tuner.distributed.training",
    "ParameterServer": "tuner.distributed.parameter_server",
    "ParameterServerClient": "tuner.distributed.parameter_server",
    "start_parameter_server": "tuner.distributed.parameter_server",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
