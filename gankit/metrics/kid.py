"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial
kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets, with its standard deviation."""

from __future__ import annotations

import numpy as np
import torch

from gankit.metrics.fid import check_finite


def mmd2_unbiased(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Unbiased MMD^2 between samples ``x [m, d]`` and ``y [n, d]`` under the cubic kernel (float64)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray, *, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over ``subsets`` random subsets of ``subset_size`` from each set."""
    a = torch.as_tensor(np.asarray(features_a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(features_b), dtype=torch.float64)
    check_finite(a, "KID")
    check_finite(b, "KID")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))
