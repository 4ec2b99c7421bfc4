"""effvit-nas: hardware-aware neural architecture search for EfficientViT.

Data flows one way: search space -> :class:`ArchConfig` -> model -> measurements -> study
-> Pareto set -> export / training.

The public names below are imported lazily (PEP 562) so that the command line answers
``--help`` and input errors without first loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what editors and type checkers see; at run time __getattr__ imports on first use
    from effvit_nas.arch.config import PRESETS as PRESETS
    from effvit_nas.arch.config import ArchConfig as ArchConfig
    from effvit_nas.arch.config import load_config as load_config
    from effvit_nas.arch.config import preset as preset
    from effvit_nas.arch.space import SearchSpace as SearchSpace
    from effvit_nas.arch.space import load_space as load_space
    from effvit_nas.errors import ConfigError as ConfigError
    from effvit_nas.errors import SettingError as SettingError
    from effvit_nas.errors import UserError as UserError
    from effvit_nas.measure.actor import measure_configs as measure_configs
    from effvit_nas.measure.settings import BenchSettings as BenchSettings
    from effvit_nas.measure.settings import Measurement as Measurement
    from effvit_nas.measure.store import MeasurementStore as MeasurementStore
    from effvit_nas.model.cost import (
        ModelCost as ModelCost,
    )
    from effvit_nas.model.cost import (
        count_macs as count_macs,
    )
    from effvit_nas.model.cost import (
        count_params as count_params,
    )
    from effvit_nas.model.cost import (
        model_cost as model_cost,
    )
    from effvit_nas.model.deploy import trace_for_inference as trace_for_inference
    from effvit_nas.model.efficientvit import (
        EfficientViT as EfficientViT,
    )
    from effvit_nas.model.efficientvit import (
        build_model as build_model,
    )
    from effvit_nas.model.efficientvit import (
        create_model as create_model,
    )
    from effvit_nas.model.efficientvit import (
        list_models as list_models,
    )
    from effvit_nas.model.timm_compat import from_timm as from_timm
    from effvit_nas.model.timm_compat import timm_kwargs as timm_kwargs
    from effvit_nas.results.export import export_trials as export_trials
    from effvit_nas.results.studies import load_study as load_study
    from effvit_nas.search.loop import run_search as run_search
    from effvit_nas.search.options import RunOptions as RunOptions
    from effvit_nas.search.problem import SearchProblem as SearchProblem
    from effvit_nas.training.recipe import TrainRecipe as TrainRecipe
    from effvit_nas.training.runner import train as train
    from effvit_nas.trials.pareto import pareto_trials as pareto_trials
    from effvit_nas.trials.records import TrialRecord as TrialRecord

# The one place the version lives: pyproject.toml reads it (hatch dynamic version).
__version__ = "0.3.0.dev0"

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
