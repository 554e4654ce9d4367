"""An exponential moving average of the generator's weights (G_ema), sampled and evaluated in G's place.

Averaging the weights of the last few thousand G steps smooths out the oscillation of the game;
it is the cheapest large quality gain in modern GANs (Yazici et al. 2019; StyleGAN, BigGAN).
Buffers (batch-norm running statistics, spectral-norm vectors) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``G_ema = decay * G_ema + (1 - decay) * G`` after every G step from ``start`` on; before
    that (the first, fast-moving steps) G_ema is a plain copy of G."""

    def __init__(self, G: nn.Module, *, decay: float, start: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        """Fold G's current weights in; ``step`` counts completed training steps."""
        for p_ema, p in zip(self.model.parameters(), G.parameters(), strict=True):
            if step >= self.start:
                p_ema.lerp_(p.detach(), 1.0 - self.decay)  # p_ema + (1 - decay) * (p - p_ema)
            else:
                p_ema.copy_(p)
        for b_ema, b in zip(self.model.buffers(), G.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

