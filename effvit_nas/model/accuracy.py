"""Top-1 accuracy of a network on held-out images: what every accuracy proxy (short training,
a supernet's inherited weights) and the fidelity study report."""

from __future__ import annotations

import torch

from effvit_nas.data import normalize


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 images ``x``."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        xb = normalize(x[i : i + batch]).contiguous(memory_format=torch.channels_last)
        correct += (model(xb).argmax(1) == y[i : i + batch]).sum().item()
    model.train(was)
    return correct / max(len(x), 1)
