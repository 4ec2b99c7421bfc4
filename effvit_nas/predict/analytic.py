"""The features of :func:`effvit_nas.predict.features.arch_features` by arithmetic on the
config, without building the model (building it and hooking a forward pass costs ~0.1 s, too
slow for the ten thousand candidates of a predicted search; this costs tens of microseconds).

It walks the module tree of :mod:`effvit_nas.model.efficientvit` (stem, per stage the
downsampling and the blocks, the head) and counts each conv, linear and attention call exactly
as the hooks of :func:`effvit_nas.model.cost.op_costs` do, and the parameters as
``count_params`` does (BN affine, biases, attention-bias tables included). A test holds the
two equal on the presets and sampled configs, so a change of the model code that this file
does not follow fails there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from effvit_nas.arch.config import ArchConfig
from effvit_nas.predict.features import KINDS


@dataclass
class _Tally:
    """Running sums of the features; ``stage``: the stage (``s0``..) the ops now counted sit
    in, or "" for the stem and the head (which have no per-stage features)."""

    f: dict[str, float] = field(default_factory=dict)
    stage: str = ""

    def add(self, key: str, value: float) -> None:
        self.f[key] = self.f.get(key, 0.0) + value

    def params(self, n: int) -> None:
        self.add("params", n)
        if self.stage:
            self.add(f"params_{self.stage}", n)

    def op(self, kind: str, macs: int, activations: int, calls: int = 1, taps: int = 0) -> None:
        self.add("macs", macs)
        if kind == "dwconv":
            self.add("dw_taps", taps)
        self.add(f"macs_{kind}", macs)
        self.add("activations", activations)
        self.add("calls", calls)
        if self.stage:
            self.add(f"macs_{self.stage}", macs)
            self.add(f"act_{self.stage}", activations)

    def conv_norm(self, c_in: int, c_out: int, side: int, k: int = 1, stride: int = 1, groups: int = 1, windows: int = 1) -> int:
        """A ConvNorm on ``windows`` maps of ``side``; returns the output side."""
        out_side = (side + 2 * (k // 2) - k) // stride + 1
        out = windows * c_out * out_side**2
        self.op("dwconv" if groups > 1 else "conv", out * (c_in // groups) * k * k, windows * c_in * side**2 + out, taps=k * k)
        self.params(c_out * (c_in // groups) * k * k + 2 * c_out)
        return out_side

    def mlp(self, dim: int, hidden: int, side: int) -> None:
        self.conv_norm(dim, hidden, side)
        self.conv_norm(hidden, dim, side)

    def dw_residual_mlp(self, dim: int, hidden: int, side: int) -> None:
        self.conv_norm(dim, dim, side, 3, groups=dim)
        self.mlp(dim, hidden, side)


def _attention(t: _Tally, config: ArchConfig, i: int, side: int) -> None:
    """LocalWindowAttention: windows of ``ws`` (padded), per head QKV 1x1, depthwise on Q,
    the two matmuls, then the projection."""
    dim, heads, k, v = config.widths[i], config.heads[i], config.qk_dims[i], config.v_dim(i)
    ws = min(config.windows[i], side)
    windows = 1 if ws == side else math.ceil(side / ws) ** 2
    for j in range(heads):
        t.conv_norm(dim // heads, 2 * k + v, ws, windows=windows)
        t.conv_norm(k, k, ws, config.kernels[j], groups=k, windows=windows)
    n = ws * ws
    t.op("attention", windows * heads * n * n * (k + v), windows * heads * (3 * n * n + n * (2 * k + 2 * v)), 3 * heads)
    t.params(heads * n)  # the attention-bias table
    t.conv_norm(v * heads, dim, ws, windows=windows)


def _patch_merging(t: _Tally, dim: int, out_dim: int, side: int) -> int:
    hid = 4 * dim
    t.conv_norm(dim, hid, side)
    out_side = t.conv_norm(hid, hid, side, 3, 2, groups=hid)
    reduced = max(8, int(hid * 0.25 + 4) // 8 * 8)  # SqueezeExcite's, on the 1x1 pooled map
    t.op("conv", reduced * hid, hid + reduced)
    t.op("conv", hid * reduced, reduced + hid)
    t.params(2 * reduced * hid + reduced + hid)
    t.conv_norm(hid, out_dim, out_side)
    return out_side


def analytic_features(config: ArchConfig) -> dict[str, float]:
    """What :func:`~effvit_nas.predict.features.arch_features` returns for ``config``, by arithmetic."""
    t = _Tally()
    w0, side = config.widths[0], config.img_size
    for c_in, c_out in ((3, w0 // 8), (w0 // 8, w0 // 4), (w0 // 4, w0 // 2), (w0 // 2, w0)):
        side = t.conv_norm(c_in, c_out, side, 3, 2)
    for i in range(config.num_stages):
        t.stage = f"s{i}"
        t.add(f"macs_s{i}", 0.0)
        t.add(f"act_s{i}", 0.0)
        t.add(f"params_s{i}", 0.0)
        dim, hidden = config.widths[i], config.ffn_hidden(i)
        if i > 0:
            prev = config.widths[i - 1]
            t.dw_residual_mlp(prev, config.ffn_hidden(i - 1), side)
            side = _patch_merging(t, prev, dim, side)
            t.dw_residual_mlp(dim, hidden, side)
        for _ in range(config.depths[i]):
            t.dw_residual_mlp(dim, hidden, side)
            _attention(t, config, i, side)
            t.dw_residual_mlp(dim, hidden, side)
    t.stage = ""
    w, classes = config.widths[-1], config.num_classes
    t.op("linear", classes * w, w + classes)
    t.params(2 * w + w * classes + classes)
    f = {"const": 1.0, "dw_taps": 0.0, **{f"macs_{kind}": 0.0 for kind in KINDS}, **t.f}
    f["head_calls"] = float(sum(d * h for d, h in zip(config.depths, config.heads, strict=True)))
    return f
