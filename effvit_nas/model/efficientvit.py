"""The EfficientViT model family (Liu et al., CVPR 2023) for any valid :class:`ArchConfig`.

Module names follow ``timm.models.efficientvit_msra`` so that state-dict keys are the same
(see :mod:`effvit_nas.model.timm_compat`); the differences from timm are what the search needs:

* per-stage Q/K dim, value ratio and FFN ratio (timm fixes V = split width and FFN = 2x);
* feature-map sizes from conv arithmetic, so any ``img_size`` builds a consistent model;
* a deployment form (:meth:`EfficientViT.deploy`) that folds every conv+BN and BN+Linear,
  folds the ``x + dwconv(x)`` residuals into the conv (RepVGG-style), folds the attention
  scale into the Q conv and keeps the gathered attention biases as a constant;
* an attention-bias cache keyed by the parameter's storage and version counter, so it can
  never go stale (timm clears a dict on ``train()``/``_apply`` and misses in-place loads).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from effvit_nas.arch.config import PRESETS, ArchConfig, preset


def _bn_affine(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``y = x * scale + shift``."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def _truncated_normal(weight: torch.Tensor, std: float, bound: float = 2.0) -> None:
    """N(0, std) cut at +-``bound`` (absolute), drawn by inverting the normal CDF on a uniform
    draw: the draws timm's initialisation makes for the same seed (torch's own
    ``trunc_normal_`` now rejects and redraws, which gives other weights), so trained results
    stay reproducible."""

    cdf = lambda v: 0.5 * (1.0 + math.erf(v / std / math.sqrt(2.0)))  # noqa: E731
    weight.uniform_(2 * cdf(-bound) - 1, 2 * cdf(bound) - 1).erfinv_().mul_(std * math.sqrt(2.0)).clamp_(-bound, bound)


def fuse_modules(module: nn.Module) -> None:
    """Replace, recursively and in place, every child that has a ``fuse()`` by its result."""
    for name, child in module.named_children():
        fuse = getattr(child, "fuse", None)
        if fuse is not None:
            setattr(module, name, fuse())
        else:
            fuse_modules(child)


class ConvNorm(nn.Sequential):
    """Conv2d (no bias, 'same' padding) followed by BatchNorm2d."""

    def __init__(self, in_chs: int, out_chs: int, ks: int = 1, stride: int = 1, groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, ks, stride, ks // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        c = self.conv
        scale, shift = _bn_affine(self.bn)
        # torch's stubs type the stored sizes tuple[int, ...] while the constructor wants pairs
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation, c.groups, bias=True)  # type: ignore[arg-type]
        fused.weight.copy_(c.weight * scale[:, None, None, None])
        assert fused.bias is not None  # built with bias=True
        fused.bias.copy_(shift)
        return fused.to(c.weight.device)


class NormLinear(nn.Sequential):
    """BatchNorm1d -> Dropout -> Linear (the classifier head)."""

    def __init__(self, in_features: int, out_features: int, drop: float = 0.0, std: float = 0.02):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_features, out_features)
        _truncated_normal(self.linear.weight, std)
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        lin = self.linear
        scale, shift = _bn_affine(self.bn)
        fused = nn.Linear(lin.in_features, lin.out_features)
        fused.weight.copy_(lin.weight * scale[None, :])
        fused.bias.copy_(lin.bias + lin.weight @ shift)
        return fused.to(lin.weight.device)


class Residual(nn.Module):
    """``x + m(x)``, with per-sample stochastic depth of rate ``drop`` in training."""

    def __init__(self, m: nn.Module, drop: float = 0.0):
        super().__init__()
        self.m = m
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop > 0:
            keep = torch.rand(x.size(0), 1, 1, 1, device=x.device).ge_(self.drop).div_(1 - self.drop)
            return x + self.m(x) * keep
        return x + self.m(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        fuse = getattr(self.m, "fuse", None)
        inner = fuse() if fuse is not None else self.m
        if inner is self.m:
            fuse_modules(inner)
        if (
            isinstance(inner, nn.Conv2d)
            and inner.in_channels == inner.out_channels == inner.groups
            and inner.stride == (1, 1)
            and inner.padding == (inner.kernel_size[0] // 2, inner.kernel_size[1] // 2)
        ):
            # x + dwconv(x) == dwconv'(x) with 1 added at the kernel centre: one op, one
            # memory pass fewer per block in the memory-bound part of the network.
            kh, kw = inner.kernel_size
            inner.weight[:, 0, kh // 2, kw // 2] += 1.0
            return inner
        return Residual(inner)


class ConvMlp(nn.Module):
    """FFN: 1x1 ConvNorm (dim -> hidden) -> ReLU -> 1x1 ConvNorm (hidden -> dim, BN weight 0)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.pw1 = ConvNorm(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = ConvNorm(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


def _relative_offset_index(side: int) -> torch.Tensor:
    """(N, N) index of the offset (|dy|, |dx|) between every pair of the side x side points."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    # Same numbering as timm/official code: offsets in order of first appearance, which for
    # a raster scan is dy * side + dx.
    return dy * side + dx


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention over one window of ``resolution x resolution`` tokens.

    Head ``j`` sees split ``j`` of the input plus the output of head ``j-1`` (the cascade).
    When the per-head value dim differs from the split width (``v_ratio != 1``) the previous
    head's output is truncated or zero-padded to the split width before the add: this keeps
    the cascade parameter-free, as in the paper, instead of adding a projection per head.

    Args:
        dim: input/output channels.
        key_dim: per-head Q/K dim.
        num_heads: heads; ``dim`` must be divisible by it.
        v_dim: per-head value dim.
        resolution: window side (tokens per window = resolution**2).
        kernels: depthwise kernel on Q of each head.
    """

    attention_bias_idxs: torch.Tensor  # a buffer; declared so it is not typed as a submodule

    def __init__(self, dim: int, key_dim: int, num_heads: int, v_dim: int, resolution: int, kernels: tuple[int, ...]):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = v_dim
        self.split_dim = dim // num_heads
        self.scale = key_dim**-0.5
        self.resolution = resolution
        self.qkvs = nn.ModuleList(ConvNorm(self.split_dim, 2 * key_dim + v_dim) for _ in range(num_heads))
        self.dws = nn.ModuleList(ConvNorm(key_dim, key_dim, kernels[j], groups=key_dim) for j in range(num_heads))
        self.proj = nn.Sequential(nn.ReLU(), ConvNorm(v_dim * num_heads, dim, bn_weight_init=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", _relative_offset_index(resolution), persistent=False)
        self._bias_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self.dense_bias = False  # True once fuse() stored the gathered (heads, N, N) biases

    def attention_bias(self) -> torch.Tensor:
        """(heads, N, N) additive attention bias gathered from the learned table."""
        table = self.attention_biases
        if self.dense_bias:
            return table
        if self.training or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return table[:, self.attention_bias_idxs]
        # The key changes whenever the table is written in place (load_state_dict, optimizer
        # steps bump _version) or moved/cast (.to() gives new storage), so a hit is never stale.
        # The cache holds the table itself: a table passed in per call (a supernet's slice)
        # could otherwise be freed and a new one allocated at the same address, version 0.
        key = (table.data_ptr(), table._version, table.dtype, table.device, self.attention_bias_idxs.data_ptr())
        if self._bias_cache is None or self._bias_cache[0] != key:
            with torch.no_grad():
                self._bias_cache = (key, table[:, self.attention_bias_idxs], table)
        return self._bias_cache[1]

    def _cascade_input(self, split: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        if self.val_dim == self.split_dim:
            return split + prev
        if self.val_dim > self.split_dim:
            return split + prev[:, : self.split_dim]
        return split + F.pad(prev, (0, 0, 0, 0, 0, self.split_dim - self.val_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        bias = self.attention_bias()
        splits = x.chunk(self.num_heads, dim=1)
        outs = []
        feat = splits[0]
        for j in range(self.num_heads):
            if j > 0:
                feat = self._cascade_input(splits[j], feat)
            q, k, v = self.qkvs[j](feat).split([self.key_dim, self.key_dim, self.val_dim], dim=1)
            q = self.dws[j](q).flatten(2)
            if self.scale != 1.0:
                q = q * self.scale
            attn = (q.transpose(-2, -1) @ k.flatten(2) + bias[j]).softmax(dim=-1)
            feat = (v.flatten(2) @ attn.transpose(-2, -1)).view(B, self.val_dim, H, W)
            outs.append(feat)
        return self.proj(torch.cat(outs, dim=1))

    @torch.no_grad()
    def fuse(self) -> CascadedGroupAttention:
        """In place: fused convs, scale folded into the Q depthwise conv, constant biases."""
        dense = self.attention_bias().detach().clone()
        fuse_modules(self)
        for dw in self.dws:
            for p in dw.parameters():  # the fused conv's weight and bias
                p.mul_(self.scale)
        self.scale = 1.0
        del self.attention_biases
        self.register_buffer("attention_biases", dense)
        self.dense_bias = True
        self._bias_cache = None
        return self


class LocalWindowAttention(nn.Module):
    """Cascaded group attention inside non-overlapping windows (zero-padded to fit)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, v_dim: int, resolution: int, window: int, kernels: tuple[int, ...]):
        super().__init__()
        self.resolution = resolution
        self.window = min(window, resolution)
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, v_dim, self.window, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.window
        if ws == H and ws == W:
            return self.attn(x)
        pad_b, pad_r = -H % ws, -W % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        pH, pW = H + pad_b, W + pad_r
        nH, nW = pH // ws, pW // ws
        # Partition straight from NCHW: one permute+copy each way (timm goes through NHWC).
        x = x.view(B, C, nH, ws, nW, ws).permute(0, 2, 4, 1, 3, 5).reshape(B * nH * nW, C, ws, ws)
        x = self.attn(x)
        x = x.view(B, nH, nW, C, ws, ws).permute(0, 3, 1, 4, 2, 5).reshape(B, C, pH, pW)
        if pad_b or pad_r:
            x = x[:, :, :H, :W]
        return x


def _dw_residual(dim: int, bn_weight_init: float, drop: float) -> Residual:
    return Residual(ConvNorm(dim, dim, 3, groups=dim, bn_weight_init=bn_weight_init), drop)


class EfficientViTBlock(nn.Module):
    """Sandwich block: dw conv -> FFN -> window CGA -> dw conv -> FFN, each residual."""

    def __init__(self, config: ArchConfig, stage: int, resolution: int, drop_path: float = 0.0):
        super().__init__()
        dim = config.widths[stage]
        hidden = config.ffn_hidden(stage)
        self.dw0 = _dw_residual(dim, 0.0, drop_path)
        self.ffn0 = Residual(ConvMlp(dim, hidden), drop_path)
        self.mixer = Residual(
            LocalWindowAttention(
                dim,
                config.qk_dims[stage],
                config.heads[stage],
                config.v_dim(stage),
                resolution,
                config.windows[stage],
                config.kernels,
            ),
            drop_path,
        )
        self.dw1 = _dw_residual(dim, 0.0, drop_path)
        self.ffn1 = Residual(ConvMlp(dim, hidden), drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


class SqueezeExcite(nn.Module):
    """Channel gate: global mean -> 1x1 conv to ``ratio`` x channels (a multiple of 8, at least
    8) -> ReLU -> 1x1 conv back -> sigmoid, times the input. timm's ``SqueezeExcite`` with the
    same names and reduced width (so the state dicts match); ours because importing timm pulls
    in torchvision and torch._dynamo, about 7 s of CPU in every process that builds a model."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        reduced = max(8, int(channels * ratio + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()


class PatchMerging(nn.Module):
    """Stride-2 downsampling: 1x1 (dim -> 4 dim) -> dw 3x3 s2 -> SE(0.25) -> 1x1 (-> out_dim)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        hid = 4 * dim
        self.conv1 = ConvNorm(dim, hid)
        self.act = nn.ReLU()
        self.conv2 = ConvNorm(hid, hid, 3, 2, groups=hid)
        self.se = SqueezeExcite(hid, 0.25)
        self.conv3 = ConvNorm(hid, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


class EfficientViTStage(nn.Module):
    """One stage: (subsample from the previous width, unless first) then ``depth`` blocks."""

    def __init__(self, config: ArchConfig, stage: int, resolution: int, drop_path: float = 0.0):
        super().__init__()
        dim = config.widths[stage]
        if stage == 0:
            self.downsample: nn.Module = nn.Identity()
        else:
            prev = config.widths[stage - 1]
            self.downsample = nn.Sequential(
                OrderedDict(
                    res1=nn.Sequential(
                        _dw_residual(prev, 1.0, drop_path),
                        Residual(ConvMlp(prev, config.ffn_hidden(stage - 1)), drop_path),
                    ),
                    patchmerge=PatchMerging(prev, dim),
                    res2=nn.Sequential(
                        _dw_residual(dim, 1.0, drop_path),
                        Residual(ConvMlp(dim, config.ffn_hidden(stage)), drop_path),
                    ),
                )
            )
        self.blocks = nn.Sequential(*(EfficientViTBlock(config, stage, resolution, drop_path) for _ in range(config.depths[stage])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class PatchEmbedding(nn.Sequential):
    """Overlapping patch embedding: four 3x3 stride-2 ConvNorms (dim/8, /4, /2, dim)."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.conv1 = ConvNorm(in_chans, dim // 8, 3, 2)
        self.relu1 = nn.ReLU()
        self.conv2 = ConvNorm(dim // 8, dim // 4, 3, 2)
        self.relu2 = nn.ReLU()
        self.conv3 = ConvNorm(dim // 4, dim // 2, 3, 2)
        self.relu3 = nn.ReLU()
        self.conv4 = ConvNorm(dim // 2, dim, 3, 2)


class EfficientViT(nn.Module):
    """EfficientViT classifier for one :class:`ArchConfig` at its ``img_size``.

    Args:
        config: the architecture.
        in_chans: input channels (3 for RGB).
        drop_rate: dropout before the classifier.
        drop_path: stochastic-depth rate of every residual branch (training only).
    """

    def __init__(self, config: ArchConfig, in_chans: int = 3, drop_rate: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.deployed = False
        self.patch_embed = PatchEmbedding(in_chans, config.widths[0])
        res = config.resolutions()
        self.stages = nn.Sequential(*(EfficientViTStage(config, i, res[i], drop_path) for i in range(config.num_stages)))
        self.num_features = config.widths[-1]
        self.head: nn.Module = NormLinear(self.num_features, config.num_classes, drop=drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.patch_embed(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay besides 1-D params (timm convention)."""
        return {n for n, _ in self.named_parameters() if "attention_biases" in n}

    @torch.no_grad()
    def deploy(self) -> EfficientViT:
        """Convert in place to the inference form (eval mode, every BN folded). Returns self.

        The result computes the same function as the eval-mode model it came from; it has no
        BatchNorm left and cannot be trained. Deep-copy first to keep the training form.
        """
        if not self.deployed:
            self.eval()
            fuse_modules(self)
            self.deployed = True
        return self


def build_model(config: ArchConfig, *, img_size: int | None = None, **kwargs) -> EfficientViT:
    """Build the EfficientViT for ``config`` (optionally at another input size).

    Keyword arguments go to :class:`EfficientViT` (``in_chans``, ``drop_rate``, ``drop_path``).
    """
    if img_size is not None:
        config = config.replace(img_size=img_size)
    return EfficientViT(config, **kwargs)


def create_model(name: str, **kwargs) -> EfficientViT:
    """Build a registered model by name: ``M0``..``M5`` or ``efficientvit_m0``..``_m5``.

    ``img_size`` and ``num_classes`` override the preset's; other kwargs go to the model.
    """
    overrides = {k: kwargs.pop(k) for k in ("img_size", "num_classes") if k in kwargs}
    return EfficientViT(preset(name).replace(**overrides), **kwargs)


def list_models() -> list[str]:
    return [f"efficientvit_{n.lower()}" for n in PRESETS]
