"""An exponential moving average of the generator's weights (G_ema), sampled and evaluated in G's place.

Averaging the weights of the last few thousand G steps smooths out the oscillation of the game;
it is the cheapest large quality gain in modern GANs (Yazici et al. 2019; StyleGAN, BigGAN).
Buffers (batch-norm running statistics, spectral-norm vectors) are copied, not averaged.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ramped_decay(decay: float, step: int, rampup: float) -> float:
    """The decay to use after ``step`` steps when the EMA's half-life may be at most ``rampup x step``.

    StyleGAN2-ADA's ramp-up: early in a run G changes fast and a long average would hold G_ema back,
    late in a run a long average smooths the most. ``decay`` caps it (its half-life is
    ln 0.5 / ln decay steps: 693 for 0.999); ``rampup`` = 0 turns the ramp off."""
    if rampup <= 0:
        return decay
    cap = math.log(0.5) / math.log(decay)  # decay's half-life in steps
    half_life = min(cap, rampup * max(step, 1))
    return 0.5 ** (1.0 / half_life) if half_life > 0 else 0.0


class EMA:
    """``G_ema = decay * G_ema + (1 - decay) * G`` after every G step from ``start`` on; before
    that (the first, fast-moving steps) G_ema is a plain copy of G. With ``rampup`` the decay grows
    with the run (:func:`ramped_decay`) up to ``decay``."""

    def __init__(self, G: nn.Module, *, decay: float, start: int = 0, rampup: float = 0.0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if rampup < 0:
            raise ValueError(f"EMA rampup must be >= 0, got {rampup}")
        self.decay, self.start, self.rampup = decay, start, rampup
        self.model = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        """Fold G's current weights in; ``step`` counts completed training steps."""
        # a function of the step alone, so a resumed run averages exactly as an unbroken one
        decay = ramped_decay(self.decay, step - self.start, self.rampup)
        ema_params, params = list(self.model.parameters()), [p.detach() for p in G.parameters()]
        if len(ema_params) != len(params):
            raise ValueError(f"G_ema has {len(ema_params)} parameters and G {len(params)}")
        # one multi-tensor kernel per list instead of a Python loop of small ones (same arithmetic)
        if step >= self.start:
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)  # p_ema + (1 - decay) * (p - p_ema)
        else:
            torch._foreach_copy_(ema_params, params)
        ema_buffers, buffers = list(self.model.buffers()), list(G.buffers())
        if len(ema_buffers) != len(buffers):
            raise ValueError(f"G_ema has {len(ema_buffers)} buffers and G {len(buffers)}")
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, buffers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

