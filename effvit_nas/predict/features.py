"""Architecture features: the analytic cost of each operator type, from the network itself.

A forward pass on a CPU at a fixed batch is a sequence of kernels, and its time is close to a
sum over operator types of (arithmetic at that type's speed + memory traffic + a fixed
dispatch cost per kernel). The features are those sums, taken from the built model's operator
calls (:func:`effvit_nas.model.cost.op_costs`), so they follow the code that is timed rather
than a formula that could drift from it:

* ``macs_conv`` / ``macs_dwconv`` / ``macs_attention``: arithmetic per type, because a
  depthwise conv or an attention matmul on a few tokens runs far below a dense 1x1 conv's
  MACs per second;
* ``activations``: elements read and written, the traffic small late-stage ops wait on;
* ``params``: weights, read once per batch;
* ``calls``: kernels dispatched one after another (attention heads run in sequence), each
  with a fixed overhead whatever its size;
* ``dw_taps``: kernel positions of the depthwise calls (9 for a 3x3, 49 for a 7x7): a
  depthwise kernel passes over the map once per position, and on the few channels and tiny
  maps of the attention's Q convs each pass costs a fixed overhead that their MACs miss.

A feature set is a named choice of these columns (plus a constant for the stem, mergings and
classifier common to every architecture); ``cost-terms`` is the search's feasibility model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import SettingError

if TYPE_CHECKING:
    import numpy as np

KINDS = ("conv", "dwconv", "attention", "linear")

_OP_TYPES = ("const", "macs_conv", "macs_dwconv", "macs_attention", "activations", "params", "calls")
_STAGE_COSTS = ("const", "params", "calls", "macs", "macs_s1", "macs_s2", "act_s0", "act_s1", "act_s2")
_STAGE_PARAMS = (*_STAGE_COSTS, "params_s0", "params_s1", "params_s2")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    # the feasibility screen's terms (effvit_nas.measure.throughput_model.features)
    "cost-terms": ("const", "macs", "params", "head_calls"),
    "op-types": _OP_TYPES,
    # op-types with the traffic split by stage: late stages' tiny maps are memory-bound
    "op-types-stages": ("const", "macs_conv", "macs_dwconv", "macs_attention", "params", "calls", "act_s0", "act_s1", "act_s2"),
    # every MAC's cost plus a surcharge per MAC of the later stages, and traffic per stage: at
    # batch 1 a MAC on a late stage's tiny maps costs far more than one on the first stage's
    # (results/predictor_profiles_cpu.md)
    "stage-costs": _STAGE_COSTS,
    # stage-costs with the weights per stage: at batch 1 each weight is read once per image, and
    # one of a late stage, used on a few tokens only, costs more than one of the first stage's
    # (results/predictor_profiles_cpu.md, "Weights per stage")
    "stage-params": _STAGE_PARAMS,
    # op-types and stage-params with a cost per depthwise kernel position: without it the
    # throughput predictor was optimistic on large Q kernels (results/predictor_unseen_taps_cpu.md)
    "op-types-taps": (*_OP_TYPES, "dw_taps"),
    "stage-params-taps": (*_STAGE_PARAMS, "dw_taps"),
}
# `profile`'s default: of every set, the one with the most held-out architectures within ±10 %
# (then the best Spearman; ties to the earlier set) on the target's own calibration
BEST = "best"


def stage_of(op_name: str) -> str:
    """``s0``, ``s1``, ... for an operator inside a stage, ``stem`` or ``head`` otherwise."""
    parts = op_name.split(".")
    return f"s{parts[1]}" if parts[0] == "stages" else ("stem" if parts[0] == "patch_embed" else "head")


def arch_features(config: ArchConfig) -> dict[str, float]:
    """Every feature of ``config`` at its own resolution (builds the model on the CPU): totals
    per operator type and, per stage (``_s0``...), MACs, activations and parameters."""
    from effvit_nas.model.cost import count_params, op_costs  # lazy: loads torch
    from effvit_nas.model.efficientvit import build_model  # lazy: loads torch

    model = build_model(config)
    ops = op_costs(model, config.img_size)
    f: dict[str, float] = {"const": 1.0, "params": float(count_params(model))}
    f["macs"] = float(sum(op.macs for op in ops))
    f["activations"] = float(sum(op.activations for op in ops))
    f["calls"] = float(sum(op.calls for op in ops))
    f["dw_taps"] = float(sum(op.taps for op in ops if op.kind == "dwconv"))
    f["head_calls"] = float(sum(d * h for d, h in zip(config.depths, config.heads, strict=True)))
    for kind in KINDS:
        f[f"macs_{kind}"] = float(sum(op.macs for op in ops if op.kind == kind))
    for i in range(config.num_stages):
        mine = [op for op in ops if stage_of(op.name) == f"s{i}"]
        f[f"macs_s{i}"] = float(sum(op.macs for op in mine))
        f[f"act_s{i}"] = float(sum(op.activations for op in mine))
        f[f"params_s{i}"] = float(sum(p.numel() for name, p in model.named_parameters() if stage_of(name) == f"s{i}"))
    return f


def choose(held_out: dict[str, tuple[float, float]]) -> str:
    """The feature set :data:`BEST` picks from each set's held-out (within ±10 %, Spearman)."""
    return max(held_out, key=lambda name: held_out[name])


def feature_names(feature_set: str) -> tuple[str, ...]:
    if feature_set not in FEATURE_SETS:
        raise SettingError("EfficiencyPredictor.feature_set", f"{feature_set!r} is unknown (choose from {', '.join(FEATURE_SETS)}, {BEST})")
    return FEATURE_SETS[feature_set]


def feature_matrix(features: Sequence[dict[str, float]], feature_set: str) -> np.ndarray:
    """Rows of ``features`` restricted to ``feature_set``'s columns, in its order."""
    import numpy as np  # lazy: the CLI's help lists the sets without loading numpy

    names = feature_names(feature_set)
    missing = [n for n in names if n not in features[0]]
    if missing:
        raise SettingError("EfficiencyPredictor.feature_set", f"{feature_set!r} needs {missing[0]!r}, which these features lack")
    return np.array([[f[n] for n in names] for f in features], dtype=float)
