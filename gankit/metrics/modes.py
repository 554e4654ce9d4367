"""Stacked MNIST mode counting (VEEGAN / PacGAN protocol): classify each of the three channels with
the MNIST evaluator; the three digits name one of 1000 modes."""

from __future__ import annotations

import torch

from gankit.metrics.classes import class_histogram, kl_divergence


def stacked_modes(digits: torch.Tensor) -> tuple[int, float]:
    """From per-channel digit predictions ``[N, 3]``: (modes hit, KL of the mode histogram to uniform)."""
    mode = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    hist = class_histogram(mode, 1000)
    return int((hist > 0).sum()), kl_divergence(hist, torch.full((1000,), 1e-3, dtype=torch.float64))
