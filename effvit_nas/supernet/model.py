"""The EfficientViT supernet of a search space: one set of weights, any config of the space.

:class:`Supernet` holds an :class:`~effvit_nas.model.efficientvit.EfficientViT` built at the
space's *container* config (:func:`container_config`); ``supernet(x, config)`` runs the
standalone network of ``config`` with its weights sliced from the container
(:mod:`effvit_nas.supernet.weights`) through ``torch.func.functional_call``, so the network
code is the model family's own and gradients reach the shared weights. :meth:`Supernet.extract`
returns ``build_model(config)`` holding copies of those slices: same outputs, no supernet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from effvit_nas.arch.config import ArchConfig
from effvit_nas.arch.space import SearchSpace
from effvit_nas.errors import ConfigError
from effvit_nas.model.efficientvit import CascadedGroupAttention, EfficientViT, _relative_offset_index, build_model
from effvit_nas.supernet.weights import sub_state


def _kernel_key(kernels: str) -> tuple[int, ...]:
    return tuple(int(k) for k in kernels.split("-"))


def _extreme(space: SearchSpace, pick: Callable[..., Any]) -> ArchConfig:
    """The point of ``space`` with every knob at its largest (``max``) or smallest (``min``)
    choice; kernel tuples compared by total kernel area."""
    params = {}
    for knob in space.knobs():
        if knob.name == "kernels":
            params[knob.name] = pick(knob.choices, key=lambda k: sum(x * x for x in _kernel_key(str(k))))
        else:
            params[knob.name] = pick(knob.choices)
    return space.config_from_params(params)


def largest_config(space: SearchSpace) -> ArchConfig:
    """The sandwich rule's largest subnet (a point of the space)."""
    return _extreme(space, max)


def smallest_config(space: SearchSpace) -> ArchConfig:
    """The sandwich rule's smallest subnet (a point of the space)."""
    return _extreme(space, min)


def container_config(space: SearchSpace) -> ArchConfig:
    """The config whose tensors contain every subnet's: the largest point, with each head's
    Q kernel the largest any kernel choice gives that head (may itself be no choice)."""
    per_head = tuple(max(k[j] for k in space.kernels) for j in range(len(space.kernels[0])))
    return largest_config(space).replace(kernels=per_head)


def _skeleton(config: ArchConfig, device: torch.device) -> EfficientViT:
    """``build_model(config)`` without storage for its weights (they come from the supernet
    on every call); only the attention-bias index buffers, which are not weights, are real."""
    with torch.device("meta"):
        net = build_model(config)
    for m in net.modules():
        if isinstance(m, CascadedGroupAttention):
            m.register_buffer("attention_bias_idxs", _relative_offset_index(m.resolution).to(device), persistent=False)
    return net


class Supernet(nn.Module):
    """Weight-sharing EfficientViT over ``space``.

    Args:
        space: the search space; every config of it can run (``forward``) or be extracted.
        cache: how many configs' skeletons to keep (building one costs a few ms).
    """

    def __init__(self, space: SearchSpace, cache: int = 16):
        super().__init__()
        self.space = space
        self.container = container_config(space)
        self.net = build_model(self.container)
        self._cache = cache
        self._skeletons: OrderedDict[tuple[str, str], EfficientViT] = OrderedDict()

    def _check(self, config: ArchConfig) -> None:
        if not self.space.contains(config):
            raise ConfigError(f"config {config.short_hash()} is not a point of the supernet's space {self.space.name!r}")

    def skeleton(self, config: ArchConfig) -> EfficientViT:
        device = next(self.net.parameters()).device
        key = (config.canonical_json(), str(device))
        net = self._skeletons.pop(key, None) or _skeleton(config, device)
        self._skeletons[key] = net  # most recently used last
        while len(self._skeletons) > self._cache:
            self._skeletons.popitem(last=False)
        return net

    def sub_state(self, config: ArchConfig) -> dict[str, torch.Tensor]:
        """``config``'s state dict as slices of the shared weights (views or gathers)."""
        self._check(config)
        shapes = {k: v.shape for k, v in self.skeleton(config).state_dict(keep_vars=True).items()}
        return sub_state(self.net.state_dict(keep_vars=True), shapes, config, self.container)

    def forward(self, x: torch.Tensor, config: ArchConfig) -> torch.Tensor:
        """``config``'s network on ``x`` with the shared weights. In training mode BatchNorm
        uses batch statistics; the running statistics of gathered slices (the QKV projections')
        are not written back, so evaluate extracted subnets after recalibrating BN."""
        net = self.skeleton(config)
        net.train(self.training)
        return torch.func.functional_call(net, self.sub_state(config), (x,), strict=False)

    @torch.no_grad()
    def extract(self, config: ArchConfig) -> EfficientViT:
        """A standalone ``build_model(config)`` holding copies of its shared weights."""
        state = {k: v.detach().clone() for k, v in self.sub_state(config).items()}
        net = build_model(config).to(next(self.net.parameters()).device)
        net.load_state_dict(state)
        return net.train(self.training)
