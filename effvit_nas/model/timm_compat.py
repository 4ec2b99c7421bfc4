"""Bridge to ``timm.models.efficientvit_msra``.

Key mapping: our module tree uses timm's names, so a timm state dict loads unchanged::

    patch_embed.conv{1..4}.{conv,bn}.*                       stem ConvNorms
    stages.{i}.downsample.res1.{0,1}.m.*                     dw conv / FFN before merging
    stages.{i}.downsample.patchmerge.{conv1,conv2,conv3,se}.* patch merging with SE
    stages.{i}.downsample.res2.{0,1}.m.*                     dw conv / FFN after merging
    stages.{i}.blocks.{j}.{dw0,ffn0,dw1,ffn1}.m.*            sandwich block
    stages.{i}.blocks.{j}.mixer.m.attn.qkvs.{h}.*            per-head QKV ConvNorm
    stages.{i}.blocks.{j}.mixer.m.attn.dws.{h}.*             per-head depthwise Q ConvNorm
    stages.{i}.blocks.{j}.mixer.m.attn.proj.1.*              output ConvNorm
    stages.{i}.blocks.{j}.mixer.m.attn.attention_biases      (heads, window**2) table
    head.bn.*, head.linear.*                                 BatchNorm1d + Linear

``attention_bias_idxs`` is a non-persistent buffer in both and is rebuilt, not loaded.
timm can express the configs with ``v_ratios == 1``, ``ffn_ratios == 2`` and the same
effective attention windows (timm sizes stage 1 as ``img_size // 16``, we by conv arithmetic;
they agree for every multiple of 16 and for most other sizes).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from effvit_nas.arch.config import ArchConfig
from effvit_nas.errors import ConfigError
from effvit_nas.model.efficientvit import EfficientViT, build_model


def _timm_windows(config: ArchConfig) -> tuple[int, ...]:
    res = config.img_size // 16
    out = []
    for i, w in enumerate(config.windows):
        if i > 0:
            res = (res - 1) // 2 + 1
        out.append(min(w, res))
    return tuple(out)


def _our_windows(config: ArchConfig) -> tuple[int, ...]:
    return tuple(min(w, r) for w, r in zip(config.windows, config.resolutions(), strict=True))


def timm_kwargs(config: ArchConfig) -> dict[str, Any] | None:
    """Constructor kwargs for ``timm.models.efficientvit_msra.EfficientVitMsra``.

    Returns None when timm cannot express the config (v_ratio != 1, ffn_ratio != 2, or an
    img_size at which timm's window sizes differ from ours).
    """
    if any(v != 1.0 for v in config.v_ratios) or any(f != 2.0 for f in config.ffn_ratios):
        return None
    if _timm_windows(config) != _our_windows(config):
        return None
    n = config.num_stages
    return {
        "img_size": config.img_size,
        "num_classes": config.num_classes,
        "embed_dim": list(config.widths),
        "key_dim": list(config.qk_dims),
        "depth": list(config.depths),
        "num_heads": list(config.heads),
        "window_size": list(config.windows),
        "kernels": list(config.kernels),
        "down_ops": [["", 1]] + [["subsample", 2]] * (n - 1),
    }


def create_timm_model(config: ArchConfig) -> nn.Module:
    """timm's own EfficientVitMsra for ``config`` (for parity checks and speed references)."""
    from timm.models.efficientvit_msra import EfficientVitMsra  # lazy: timm loads torch

    kwargs = timm_kwargs(config)
    if kwargs is None:
        raise ConfigError("config is not expressible in timm (needs v_ratios 1.0, ffn_ratios 2.0 and timm-compatible img_size)")
    return EfficientVitMsra(**kwargs)


def config_from_timm(model: nn.Module) -> ArchConfig:
    """Read the architecture of a timm ``EfficientVitMsra`` off its modules."""
    # timm keeps stages, blocks and sizes as plain attributes, which torch types as Tensor | Module
    timm_model: Any = model
    widths, depths, heads, qk, v_ratios, ffn, windows = [], [], [], [], [], [], []
    kernels: list[int] = []
    for stage in timm_model.stages:
        block = stage.blocks[0]
        lwa = block.mixer.m
        attn = lwa.attn
        w = block.dw0.m.conv.out_channels
        widths.append(w)
        depths.append(len(stage.blocks))
        heads.append(attn.num_heads)
        qk.append(attn.key_dim)
        v_ratios.append(attn.val_dim * attn.num_heads / w)
        ffn.append(block.ffn0.m.pw1.conv.out_channels / w)
        windows.append(lwa.window_resolution)
        ks = [dw.conv.kernel_size[0] for dw in attn.dws]
        if len(ks) > len(kernels):
            kernels = kernels + ks[len(kernels) :]
    return ArchConfig(
        widths=tuple(widths),
        depths=tuple(depths),
        heads=tuple(heads),
        qk_dims=tuple(qk),
        v_ratios=tuple(v_ratios),
        ffn_ratios=tuple(ffn),
        kernels=tuple(kernels),
        windows=tuple(windows),
        img_size=int(timm_model.img_size),
        num_classes=int(timm_model.num_classes),
    )


def from_timm(model: nn.Module) -> EfficientViT:
    """Our :class:`EfficientViT` carrying the weights of a timm ``EfficientVitMsra``.

    The result is in the same train/eval mode as ``model``; eval-mode outputs agree with
    timm's to float rounding.
    """
    config = config_from_timm(model)
    ours = build_model(config)
    theirs = model.state_dict()
    mine = ours.state_dict()
    for k, v in mine.items():
        if k not in theirs or theirs[k].shape != v.shape:
            got = tuple(theirs[k].shape) if k in theirs else "missing"
            raise ConfigError(f"timm model does not map onto {config.short_hash()}: {k} expects {tuple(v.shape)}, timm has {got}")
    ours.load_state_dict(theirs, strict=True)
    p = next(model.parameters())
    return ours.to(device=p.device, dtype=p.dtype).train(model.training)
