"""Precision and recall (Kynkäänniemi et al. 2019, k = 3) and density and coverage (Naeem et al.
2020, k = 5), from k-nearest-neighbour balls in feature space.

All four come from one pass over the fake-to-real distances (plus each set's own k-NN radii),
in chunks, so 10k x 10k sets take seconds and little memory.
"""

from __future__ import annotations

import torch

from gankit.metrics.fid import check_finite

CHUNK = 2048


def knn_radii(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Distance from each row of ``x`` to its k-th nearest other row, for each k ``{k: [N]}``."""
    top = max(ks) + 1  # +1: each point is its own nearest neighbour, at distance 0
    vals = [torch.cdist(x[i : i + CHUNK], x).topk(top, dim=1, largest=False).values for i in range(0, len(x), CHUNK)]
    d = torch.cat(vals).float()  # [N, top], ascending; float32: see prdc
    return {k: d[:, k] for k in ks}


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """precision, recall, density, coverage of ``fake [F, D]`` against ``real [R, D]``.

    Ball membership follows each method's reference code: precision and recall count a point on a
    ball's boundary as inside (``<=``, NVlabs' improved-precision-recall), density and coverage as
    outside (``<``, clovaai's prdc).
    """
    # Distances are computed in float64 and compared in float32. float32's matrix-product distances
    # are not symmetric (1e-5) and put points up to 1e-2 from themselves; float64's differ between
    # d(a, b) and d(b, a) by about 1e-13, and rounding that away makes equal distances (a generated
    # image that copies a real one) compare equal, so the tie rule decides them as the reference's exact
    # distances do: a set scored against itself gets density 1. (scipy's exact distances would make
    # the default evaluation about 6x slower.)
    real, fake = real.double(), fake.double()
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need features [R, D] and [F, D], got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) <= max(k_pr, k_dc) or len(fake) <= k_pr:
        raise ValueError(f"precision/recall and density/coverage need more than {max(k_pr, k_dc)} real and "
                         f"{k_pr} generated samples (k nearest neighbours), got {len(real)} and {len(fake)}")
    check_finite(real, "precision/recall")
    check_finite(fake, "precision/recall")
    r = knn_radii(real, (k_pr, k_dc))
    f = knn_radii(fake, (k_pr,))[k_pr]
    precise = torch.zeros(len(fake), dtype=torch.bool)
    density = torch.zeros(len(fake), dtype=torch.float64)
    recalled = torch.zeros(len(real), dtype=torch.bool)
    covered = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(fake), CHUNK):
        d = torch.cdist(fake[i : i + CHUNK], real).float()  # [c, R]
        precise[i : i + CHUNK] = (d <= r[k_pr][None, :]).any(1)
        in_dc = d < r[k_dc][None, :]
        density[i : i + CHUNK] = in_dc.sum(1).double()
        covered |= in_dc.any(0)
        recalled |= (d <= f[i : i + CHUNK, None]).any(0)
    return {"precision": precise.double().mean().item(), "recall": recalled.double().mean().item(),
            "density": density.mean().item() / k_dc, "coverage": covered.double().mean().item()}


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """Precision: the fraction of fakes inside some real k-NN ball; recall: of reals inside some fake ball."""
    m = prdc(real, fake, k_pr=k, k_dc=k)
    return m["precision"], m["recall"]


def density_coverage(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5) -> tuple[float, float]:
    """Density: real balls containing each fake, averaged and divided by k (about 1 for matching sets);
    coverage: the fraction of real balls containing at least one fake."""
    m = prdc(real, fake, k_pr=k, k_dc=k)
    return m["density"], m["coverage"]
