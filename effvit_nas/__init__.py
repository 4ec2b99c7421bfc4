"""effvit-nas: hardware-aware neural architecture search for EfficientViT.

Data flows one way: search space -> :class:`ArchConfig` -> model -> measurements -> study
-> Pareto set -> export / training.

The public names below are imported lazily (PEP 562) so that the command line answers
``--help`` and input errors without first loading torch.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Ray's `uv run` hook would start every worker through `uv run`, re-resolving the environment
# and packaging the working directory (minutes per worker here). This package is installed in
# the environment already, and must be on cluster nodes (runners/README.md). Ray reads the
# variable when it is imported, so it is set here, before any module of ours imports Ray.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

_EXPORTS = {
    "PRESETS": "config",
    "ArchConfig": "config",
    "load_config": "config",
    "preset": "config",
    "EfficientViT": "efficientvit",
    "build_model": "efficientvit",
    "create_model": "efficientvit",
    "list_models": "efficientvit",
    "ConfigError": "errors",
    "UserError": "errors",
    "trace_for_inference": "inference",
    "ModelCost": "profile",
    "count_macs": "profile",
    "count_params": "profile",
    "model_cost": "profile",
    "SearchSpace": "space",
    "load_space": "space",
    "from_timm": "timm_compat",
    "timm_kwargs": "timm_compat",
    "BenchSettings": "throughput",
    "Measurement": "throughput",
    "MeasurementStore": "store",
    "measure_configs": "workers",
    "SearchSettings": "search",
    "run_search": "search",
    "pareto_trials": "pareto",
    "load_study": "studies",
    "export_trials": "export",
    "TrainRecipe": "training",
    "train": "training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"effvit_nas.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'effvit_nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
