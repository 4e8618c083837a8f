"""The scaled SiLU activation used throughout LEIGNN."""

from __future__ import annotations

import itertools

import torch
from torch import nn


class ScaledSiLU(nn.Module):
    """SiLU divided by 0.6, which keeps unit-variance inputs at roughly unit variance."""

    scale: float = 1.0 / 0.6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(x) * self.scale


def mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    """Linear layers with biases and ScaledSiLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2 or final_activation:
            layers.append(ScaledSiLU())
    return nn.Sequential(*layers)


def reset_linear_layers(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
