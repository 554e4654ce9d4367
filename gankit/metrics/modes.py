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


def channel_kls(digits: torch.Tensor) -> list[float]:
    """KL to uniform of each channel's digit frequencies, from predictions ``[N, 3]``.

    The mode KL is their sum plus what the channels share (dependence, and the chance spread of N
    samples over 1000 modes): a G whose channels each draw the ten digits evenly, independently,
    scores close to the sampling noise alone."""
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    return [kl_divergence(class_histogram(digits[:, c], 10), uniform) for c in range(digits.shape[1])]
