"""Metrics from a domain classifier's class probabilities: an Inception-Score-like score, the class
histogram and its KL to the real one, classes covered, and a conditional generator's accuracy."""

from __future__ import annotations

import math

import numpy as np
import torch


def inception_score(probs: torch.Tensor, *, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` (Salimans et al. 2016), on ``probs [N, K]``."""
    if len(probs) < splits:
        raise ValueError(f"the class-probability score needs at least {splits} samples, got {len(probs)}")
    scores = []
    probs, n = probs.double(), len(probs)
    # the reference's parts, rows i*N//splits to (i+1)*N//splits (chunk() makes fewer parts when N is
    # not a multiple of splits)
    for part in (probs[i * n // splits : (i + 1) * n // splits] for i in range(splits)):
        py = part.mean(0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-12)) - torch.log(py.clamp_min(1e-12)))).sum(1).mean()
        scores.append(math.exp(kl.item()))
    return float(np.mean(scores)), float(np.std(scores))


def class_histogram(predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Fraction of samples predicted as each class ``[K]``."""
    return torch.bincount(predicted.long(), minlength=num_classes).double() / max(len(predicted), 1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, *, eps: float = 1e-10) -> float:
    """KL(p || q) in nats for two histograms (q floored at eps, so missing classes count heavily)."""
    p, q = p.double(), q.double()
    mask = p > 0
    return float((p[mask] * (p[mask].log() - q[mask].clamp_min(eps).log())).sum())


def classes_covered(predicted: torch.Tensor, num_classes: int, *, min_fraction: float = 0.0) -> int:
    """How many classes get more than ``min_fraction`` of the samples."""
    return int((class_histogram(predicted, num_classes) > min_fraction).sum())


def conditional_accuracy(predicted: torch.Tensor, requested: torch.Tensor,
                         num_classes: int) -> tuple[float, list[float | None]]:
    """Overall and per-class accuracy of the evaluator on samples generated for ``requested`` classes;
    None for a class none was asked for (a model trained on a class filter: JSON's null, not NaN)."""
    ok = (predicted == requested).double()
    per = [float(ok[requested == c].mean()) if (requested == c).any() else None for c in range(num_classes)]
    return float(ok.mean()), per
