"""effvit-nas: hardware-aware neural architecture search for EfficientViT.

Data flows one way: search space -> :class:`ArchConfig` -> model -> measurements -> study
-> Pareto set -> export / training.

The public names below are imported lazily (PEP 562) so that the command line answers
``--help`` and input errors without first loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PRESETS": "arch.config",
    "ArchConfig": "arch.config",
    "load_config": "arch.config",
    "preset": "arch.config",
    "EfficientViT": "model.efficientvit",
    "build_model": "model.efficientvit",
    "create_model": "model.efficientvit",
    "list_models": "model.efficientvit",
    "ConfigError": "errors",
    "SettingError": "errors",
    "UserError": "errors",
    "trace_for_inference": "model.deploy",
    "ModelCost": "model.cost",
    "count_macs": "model.cost",
    "count_params": "model.cost",
    "model_cost": "model.cost",
    "SearchSpace": "arch.space",
    "load_space": "arch.space",
    "from_timm": "model.timm_compat",
    "timm_kwargs": "model.timm_compat",
    "BenchSettings": "measure.settings",
    "Measurement": "measure.settings",
    "MeasurementStore": "measure.store",
    "measure_configs": "measure.actor",
    "SearchProblem": "search.problem",
    "RunOptions": "search.options",
    "TrialRecord": "trials.records",
    "run_search": "search.loop",
    "pareto_trials": "trials.pareto",
    "load_study": "results.studies",
    "export_trials": "results.export",
    "TrainRecipe": "training.recipe",
    "train": "training.runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"effvit_nas.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'effvit_nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
