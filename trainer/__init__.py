"""The SageMaker built-in Image Classification algorithm in PyTorch.

The public surface is below; names are imported on first use, so `import trainer` (and the `tune`
command's help) does not pay for importing torch.

>>> from trainer import parse_hyperparameters, fit          # doctest: +SKIP
>>> hp = parse_hyperparameters({"num_classes": "10", "num_training_samples": "45000"})
"""

from __future__ import annotations

from trainer.lazy_exports import lazy_exports

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "UserError": "trainer.errors",
    "HyperparameterError": "trainer.errors",
    "DataError": "trainer.errors",
    "Hyperparameters": "trainer.hyperparameters",
    "SPECS": "trainer.hyperparameters",
    "parse_hyperparameters": "trainer.hyperparameters",
    "load_hyperparameters_file": "trainer.hyperparameters",
    "build_model": "trainer.models",
    "pretrained_weights_path": "trainer.models",
    "OPTIMIZERS": "trainer.optim",
    "build_optimizer": "trainer.optim",
    "build_scheduler": "trainer.optim",
    "learning_rate_at": "trainer.optim",
    "EarlyStopping": "trainer.early_stopping",
    "Precision": "trainer.precision",
    "resolve_precision": "trainer.precision",
    "resolve_device": "trainer.precision",
    "FitResult": "trainer.loop",
    "InMemoryLoaders": "trainer.data.memory",
    "STATE_FILE": "trainer.loop",
    "fit": "trainer.loop",
    "train_one_epoch": "trainer.loop",
    "evaluate": "trainer.loop",
    "LoadedModel": "trainer.artifacts",
    "load_model_archive": "trainer.artifacts",
    "write_model_archive": "trainer.artifacts",
    "Predictor": "trainer.predict",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
