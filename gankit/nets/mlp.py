"""Fully-connected generator and discriminator (seed 002)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gankit.nets.layers import one_hot
from gankit.registry import register


def check_hidden(hidden: list[int] | tuple[int, ...], net: str) -> None:
    """A clear error for layer widths a dense net cannot have."""
    if not isinstance(hidden, list | tuple):
        raise ValueError(f"model.{net}.hidden: give a list of layer widths, e.g. [256, 512], got {hidden!r}")
    if any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"model.{net}.hidden: every layer width must be a positive integer, got {list(hidden)}")


def check_range(name: str, value: float, low: float, high: float, *, open_high: bool = False) -> None:
    """A clear error for a net setting outside [low, high] (or [low, high) with ``open_high``)."""
    if not (low <= value < high if open_high else low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if open_high else ']'}, got {value}")


def output_activation(output: str) -> nn.Module:
    """The last activation of a generator: tanh for [-1, 1] images, sigmoid for [0, 1]."""
    return nn.Tanh() if output == "tanh" else nn.Sigmoid()


@register("generator", "mlp")
class MLPGenerator(nn.Module):
    """Dense layers, each followed by LeakyReLU then batch norm (the seed's order), then a dense output.

    ``bn_momentum`` is Keras' (the weight of the old running average), so Keras' 0.8 is PyTorch's 0.2.
    """

    def __init__(self, *, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 output: str = "tanh", hidden: list[int] = (256, 512, 1024), leak: float = 0.2,
                 batch_norm: bool = True, bn_momentum: float = 0.8, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        check_hidden(hidden, "g")
        check_range("leak", leak, 0, 1)
        check_range("bn_momentum", bn_momentum, 0, 1)  # Keras': the old average's weight
        if bn_eps <= 0:
            raise ValueError(f"bn_eps must be positive, got {bn_eps}")
        layers: list[nn.Module] = []
        width = latent_dim + num_classes  # a one-hot label joins the noise when conditional
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(leak)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(h, momentum=1.0 - bn_momentum, eps=bn_eps))
            width = h
        layers += [nn.Linear(width, math.prod(self.image_shape)), output_activation(output)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([z, one_hot(labels, self.num_classes, z.dtype)], dim=1)
        return self.net(z).view(-1, *self.image_shape)  # [N, C, H, W]


@register("discriminator", "mlp")
class MLPDiscriminator(nn.Module):
    """Flatten, dense layers with LeakyReLU (and optional dropout), one logit out."""

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int = 0, hidden: list[int] = (512, 256),
                 leak: float = 0.2, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        check_hidden(hidden, "d")
        check_range("leak", leak, 0, 1)
        check_range("dropout", dropout, 0, 1, open_high=True)
        layers: list[nn.Module] = []
        width = math.prod(image_shape) + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(leak)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.num_classes:
            h = torch.cat([h, one_hot(labels, self.num_classes, h.dtype)], dim=1)
        return self.net(h).squeeze(1)  # [N] logits
