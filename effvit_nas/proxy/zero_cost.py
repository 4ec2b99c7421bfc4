"""Zero-cost proxies: scores of an untrained network from one minibatch (or none).

* ``synflow`` (Tanaka et al. 2020): sum |theta * dR/dtheta| with R the output sum of the
  network with absolute weights on an all-ones input (data-free), in float64.
* ``naswot`` (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the
  ReLU activation patterns of a minibatch.
* ``gradnorm``: L2 norm of the cross-entropy gradient over all weights on a minibatch.
* ``dss`` (Zhou et al., "Training-free Transformer Architecture Search", CVPR 2022, TF-TAS):
  the DSS indicator, built for vision transformers. The network is linearised (absolute
  weights), fed an all-ones image, and R = sum of its outputs is back-propagated. Attention
  (MSA) weights score their synaptic *diversity*, ||dR/dW||_nuc * ||W||_nuc per weight
  matrix (the paper's eq. 4: a rank-collapsed attention has a small nuclear norm); MLP
  weights and the classifier score their synaptic *saliency*, sum |W * dR/dW| (eq. 5);
  everything else (patch embedding, depthwise token mixing) counts 0, as in the paper. In
  EfficientViT the MSA matrices are each head's Q/K/V 1x1 projection and the output
  projection of cascaded group attention; the MLPs are the sandwich's 1x1 FFNs.

EfficientViT closes every residual branch with a BatchNorm whose weight starts at 0, which
would hide those branches from every score (zero output, zero gradient); scores are taken
with those weights set to 1 so that the whole architecture is seen. Models are scored in
train mode (batch statistics), as the proxies' authors do, except synflow (eval mode: its
constant input has no batch statistics).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from effvit_nas.arch.config import ArchConfig
from effvit_nas.data import Dataset, normalize
from effvit_nas.model.efficientvit import CascadedGroupAttention, ConvMlp, build_model


def _scoring_model(config: ArchConfig, data: Dataset, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(config.replace(img_size=data.img_size, num_classes=data.num_classes))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.fill_(1.0)
    return model


def _batch(data: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_y), generator=g)[:n]
    return normalize(data.train_x[idx]), data.train_y[idx]


def synflow(config: ArchConfig, data: Dataset, seed: int = 0) -> float:
    model = _scoring_model(config, data, seed).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    x = torch.ones(1, 3, data.img_size, data.img_size, dtype=torch.float64)
    model(x).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in model.parameters() if p.grad is not None))


def naswot(config: ArchConfig, data: Dataset, seed: int = 0, batch: int = 64) -> float:
    model = _scoring_model(config, data, seed).train()
    x, _ = _batch(data, batch, seed)
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m, _inp, out):
        codes = (out.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def _matrix(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def _grad(w: torch.Tensor) -> torch.Tensor:
    if w.grad is None:
        raise RuntimeError("a scored weight got no gradient from the backward pass")
    return w.grad


def _attention_weights(model: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in model.modules():
        if isinstance(m, CascadedGroupAttention):
            # the conv of each Q/K/V ConvNorm, then the one of the output projection
            out += [c.weight for c in m.qkvs.modules() if isinstance(c, nn.Conv2d)]
            out += [c.weight for c in m.proj.modules() if isinstance(c, nn.Conv2d)]
    return out


def _mlp_weights(model: nn.Module) -> list[torch.Tensor]:
    out = [w for m in model.modules() if isinstance(m, ConvMlp) for w in (m.pw1.conv.weight, m.pw2.conv.weight)]
    return out + [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


def dss(config: ArchConfig, data: Dataset, seed: int = 0) -> float:
    # float64 as for synflow: products of absolute weights over the depth overflow fp32
    model = _scoring_model(config, data, seed).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones(1, 3, data.img_size, data.img_size, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        diversity = sum(
            (
                torch.linalg.matrix_norm(_matrix(w), "nuc") * torch.linalg.matrix_norm(_matrix(_grad(w)), "nuc")
                for w in _attention_weights(model)
            ),
            torch.zeros(()),
        )
        saliency = sum(((w * _grad(w)).abs().sum() for w in _mlp_weights(model)), torch.zeros(()))
    return float(diversity + saliency)


def grad_norm(config: ArchConfig, data: Dataset, seed: int = 0, batch: int = 64) -> float:
    model = _scoring_model(config, data, seed).train()
    x, y = _batch(data, batch, seed)
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        return float(torch.sqrt(sum(((p.grad**2).sum() for p in model.parameters() if p.grad is not None), torch.zeros(()))))
