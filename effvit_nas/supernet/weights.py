"""Weight sharing: where each tensor of a subnet lives inside the supernet's tensors.

The supernet stores one EfficientViT at the *container* config (every knob of a space at its
largest, per-head kernels at their largest); a subnet's tensor is a slice of the container's
tensor with the same state-dict name, so a subnet state dict is a pure function of the
container's state dict and the subnet config, and gradients flow back through the slices.

Rules (OFA / AutoFormer weight entanglement), per tensor dimension:

* channels: the first ``n`` (stage widths, FFN hidden widths, Q/K dims, value dims, the stem,
  the SE reduction), so a narrower subnet shares the leading channels of a wider one;
* depth: the first ``d`` blocks of a stage (block names are shared, so nothing to slice);
* depthwise Q kernels: the centre ``k x k`` of the largest kernel (plain cropping, not OFA's
  learned kernel-transform matrices: extraction stays an exact slice with no extra
  parameters to train or ship, and with at most 7 -> 5 -> 3 there are only two crops);
* each head's fused QKV projection: Q, K and V are separate prefixes of the container's
  ``[Q | K | V]`` rows (a subnet's ``[q | k | v]`` is not a prefix of it);
* the attention output projection: per head, the first ``v`` of that head's container value
  channels (its input is the concatenation of the heads' values);
* attention-bias tables: the entry of offset ``(dy, dx)`` in a ``w x w`` window is the
  container's entry of the same offset in its larger window, so every window size sees the
  same learned bias per offset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from effvit_nas.arch.config import ArchConfig

_STAGE = re.compile(r"^stages\.(\d+)\.blocks\.")
_QKV = re.compile(r"\.attn\.qkvs\.\d+\.(conv\.weight|bn\.(weight|bias|running_mean|running_var))$")
_PROJ = re.compile(r"\.attn\.proj\.1\.conv\.weight$")
_BIAS = re.compile(r"\.attn\.attention_biases$")


def _stage(name: str) -> int:
    match = _STAGE.match(name)
    assert match, name  # only attention tensors ask, and they all live in stage blocks
    return int(match.group(1))


def _prefix_or_centre(dim: int, sub: int, full: int, ndim: int) -> slice:
    if sub == full:
        return slice(None)
    if ndim == 4 and dim >= 2:  # a conv kernel's spatial dims
        start = (full - sub) // 2
        return slice(start, start + sub)
    return slice(0, sub)


def _qkv_rows(qk: int, v: int, full_qk: int) -> torch.Tensor:
    return torch.cat([torch.arange(qk), full_qk + torch.arange(qk), 2 * full_qk + torch.arange(v)])


def _proj_columns(heads: int, v: int, full_v: int) -> torch.Tensor:
    return torch.cat([j * full_v + torch.arange(v) for j in range(heads)])


def _bias_offsets(side: int, full_side: int) -> torch.Tensor:
    """Container positions of a ``side x side`` window's offsets ``dy * side + dx``."""
    dy, dx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return (dy * full_side + dx).flatten()


def _special(name: str, sub: ArchConfig, full: ArchConfig, sub_shape: torch.Size) -> dict[int, torch.Tensor]:
    """Dimensions of ``name`` whose slice is not a prefix or centre: {dim: container indices}.
    Where the rule's indices happen to form a prefix, the plain slice (a view) is used, so the
    largest subnet trains the container's tensors in place, BatchNorm statistics included."""
    if _QKV.search(name):
        i = _stage(name)
        if sub.qk_dims[i] < full.qk_dims[i]:
            return {0: _qkv_rows(sub.qk_dims[i], sub.v_dim(i), full.qk_dims[i])}
    elif _PROJ.search(name):
        i = _stage(name)
        if sub.v_dim(i) < full.v_dim(i) and sub.heads[i] > 1:
            return {1: _proj_columns(sub.heads[i], sub.v_dim(i), full.v_dim(i))}
    elif _BIAS.search(name):
        i = _stage(name)
        side, full_side = math.isqrt(sub_shape[1]), min(full.windows[i], full.resolutions()[i])
        if side < full_side:
            return {1: _bias_offsets(side, full_side)}
    return {}


def _slice_tensor(name: str, tensor: torch.Tensor, sub_shape: torch.Size, sub: ArchConfig, full: ArchConfig) -> torch.Tensor:
    """The subnet's ``name`` tensor of shape ``sub_shape`` taken from the container's ``tensor``
    (a view where every dimension is a prefix or centre, else a differentiable gather)."""
    special = _special(name, sub, full, sub_shape)
    dims = enumerate(zip(sub_shape, tensor.shape, strict=True))
    out = tensor[tuple(slice(None) if d in special else _prefix_or_centre(d, s, f, tensor.ndim) for d, (s, f) in dims)]
    for dim, index in special.items():
        out = out.index_select(dim, index.to(out.device))
    if out.shape != sub_shape:  # a config outside the container: a bug, never silently wrong weights
        raise ValueError(f"supernet tensor {name}: slice has shape {tuple(out.shape)}, subnet needs {tuple(sub_shape)}")
    return out


def sub_state(
    container: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size], sub: ArchConfig, full: ArchConfig
) -> dict[str, torch.Tensor]:
    """Every subnet tensor (``shapes``: the subnet's names and shapes) sliced from ``container``."""
    return {name: _slice_tensor(name, container[name], shape, sub, full) for name, shape in shapes.items()}
