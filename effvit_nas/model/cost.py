"""Static cost of a model: parameters and multiply-accumulates (MACs).

MACs are counted the way the EfficientViT paper's table does: convolutions and linears with
BN folded (BN, bias adds, residual adds and softmax are free), the squeeze-excite FCs, and
both attention matmuls (Q^T K and V A^T) over every window, padded tokens included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from effvit_nas.arch.config import ArchConfig
from effvit_nas.model.efficientvit import CascadedGroupAttention, build_model


@dataclass(frozen=True)
class ModelCost:
    """Params (count) and MACs (multiply-accumulates for one image) of one model."""

    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """MACs of one forward pass of one ``img_size`` x ``img_size`` image."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    def attn_hook(m: CascadedGroupAttention, inp: tuple[torch.Tensor], _out) -> None:
        nonlocal total
        windows, _, h, w = inp[0].shape
        n = h * w
        total += windows * m.num_heads * n * n * (m.key_dim + m.val_dim)

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, CascadedGroupAttention):
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        model(torch.zeros(1, in_chans, img_size, img_size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def model_cost(config: ArchConfig) -> ModelCost:
    """Params and MACs of ``config`` at its own ``img_size`` (builds the model on CPU)."""
    model = build_model(config)
    return ModelCost(params=count_params(model), macs=count_macs(model, config.img_size))
