"""effvit-nas: hardware-aware neural architecture search for EfficientViT.

Data flows one way: search space -> :class:`ArchConfig` -> model -> measurements -> study
-> Pareto set -> export / training.
"""

from effvit_nas.config import PRESETS, ArchConfig, load_config, preset
from effvit_nas.efficientvit import EfficientViT, build_model, create_model, list_models
from effvit_nas.errors import ConfigError, UserError
from effvit_nas.inference import trace_for_inference
from effvit_nas.profile import ModelCost, count_macs, count_params, model_cost
from effvit_nas.space import SearchSpace, load_space
from effvit_nas.timm_compat import from_timm, timm_kwargs

__all__ = [
    "PRESETS",
    "ArchConfig",
    "ConfigError",
    "EfficientViT",
    "ModelCost",
    "SearchSpace",
    "UserError",
    "build_model",
    "count_macs",
    "count_params",
    "create_model",
    "from_timm",
    "list_models",
    "load_config",
    "load_space",
    "model_cost",
    "preset",
    "timm_kwargs",
    "trace_for_inference",
]
