"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
Inception's, "dFID" when they are a domain evaluator's).

The matrix square root term uses tr(sqrt(S1 S2)) = sum(sqrt(eig(sqrt(S1) S2 sqrt(S1)))): a
symmetric eigendecomposition in float64, which is stable for singular covariances (few samples,
many features) where scipy's ``sqrtm`` can return complex noise.
"""

from __future__ import annotations

import numpy as np
import torch


def feature_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, float64) of features ``[N, D]``."""
    x = np.asarray(features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features,
                   dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {x.shape}")
    check_finite(x, "FID")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def check_finite(x: torch.Tensor | np.ndarray, metric: str) -> None:
    """A clear error for NaN or infinite features (a metric would otherwise fail obscurely or return a
    plausible-looking number)."""
    bad = int((~torch.isfinite(x)).sum()) if isinstance(x, torch.Tensor) else int((~np.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{metric}: {bad} feature values are NaN or infinite")


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2))."""
    s1 = _sqrt_psd(sigma1)
    cross = np.linalg.eigvalsh(s1 @ sigma2 @ s1)
    tr_sqrt = float(np.sqrt(np.clip(cross, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt)


def fid(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))
