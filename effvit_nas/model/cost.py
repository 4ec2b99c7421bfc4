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


@dataclass(frozen=True)
class OpCost:
    """One operator call of a forward pass of one image.

    ``kind``: ``conv`` (dense or pointwise), ``dwconv`` (grouped), ``linear`` or ``attention``
    (the two matmuls and the softmax of one cascaded group attention, all heads and windows);
    ``activations``: elements read and written (input + output; for attention the Q/K/V reads,
    the attention maps and the output); ``calls``: kernels dispatched one after another (1 for a
    conv or linear; 3 per head for attention, whose heads run in sequence); ``taps``: a conv's
    kernel positions (kh x kw; 0 for the rest), each one pass of the kernel over the map.
    """

    name: str
    kind: str
    macs: int
    params: int
    activations: int
    calls: int
    taps: int = 0


@torch.no_grad()
def op_costs(model: nn.Module, img_size: int, in_chans: int = 3) -> list[OpCost]:
    """Every conv, linear and attention call of one forward pass of one ``img_size`` image, in
    call order (the per-operator view of :func:`count_macs`)."""
    ops: list[OpCost] = []
    names = {m: n for n, m in model.named_modules()}

    def conv_hook(m: nn.Conv2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        kind = "dwconv" if m.groups > 1 else "conv"
        params = m.weight.numel()
        macs = out.numel() * (m.in_channels // m.groups) * kh * kw
        ops.append(OpCost(names[m], kind, macs, params, inp[0].numel() + out.numel(), 1, kh * kw))

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        ops.append(OpCost(names[m], "linear", out.numel() * m.in_features, m.weight.numel(), inp[0].numel() + out.numel(), 1))

    def attn_hook(m: CascadedGroupAttention, inp: tuple[torch.Tensor], _out) -> None:
        windows, _, h, w = inp[0].shape
        n = h * w
        per_head = n * n * (m.key_dim + m.val_dim)
        maps = n * n  # the attention map, written by Q^T K, read and written by softmax, read by V A^T
        reads = n * (2 * m.key_dim + 2 * m.val_dim)  # q, k, v in; the head's output out
        ops.append(
            OpCost(names[m], "attention", windows * m.num_heads * per_head, 0, windows * m.num_heads * (3 * maps + reads), 3 * m.num_heads)
        )

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
    return ops


def count_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """MACs of one forward pass of one ``img_size`` x ``img_size`` image."""
    return sum(op.macs for op in op_costs(model, img_size, in_chans))


def model_cost(config: ArchConfig) -> ModelCost:
    """Params and MACs of ``config`` at its own ``img_size`` (builds the model on CPU)."""
    model = build_model(config)
    return ModelCost(params=count_params(model), macs=count_macs(model, config.img_size))
