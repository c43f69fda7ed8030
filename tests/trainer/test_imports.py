"""trainer/ never imports the orchestrator or its engines (Ray, Optuna, MLflow, tuner)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import trainer

FORBIDDEN = ("ray", "optuna", "mlflow", "tuner")


def all_trainer_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(trainer.__path__, prefix="trainer."))


def test_importing_every_trainer_module_pulls_in_no_orchestrator_package() -> None:
    modules = all_trainer_modules()
    assert {"trainer.loop", "trainer.models", "trainer.predict", "trainer.artifacts"} <= set(
        modules
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import trainer\n"
        "for name in trainer.__all__: getattr(trainer, name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_surface_is_declared_and_resolves() -> None:
    assert trainer.__all__ == sorted(trainer.__all__)
    for name in ("fit", "FitResult", "build_model", "Predictor", "parse_hyperparameters"):
        assert name in trainer.__all__ and getattr(trainer, name) is not None
