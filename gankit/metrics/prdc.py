"""Precision and recall (Kynkäänniemi et al. 2019, k = 3) and density and coverage (Naeem et al.
2020, k = 5), from k-nearest-neighbour balls in feature space.

All four come from one pass over the fake-to-real distances (plus each set's own k-NN radii),
in chunks, so 10k x 10k sets take seconds and little memory.
"""

from __future__ import annotations

import torch

CHUNK = 2048


def knn_radii(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Distance from each row of ``x`` to its k-th nearest other row, for each k ``{k: [N]}``."""
    top = max(ks) + 1  # +1: each point is its own nearest neighbour, at distance 0
    vals = [torch.cdist(x[i : i + CHUNK], x).topk(top, dim=1, largest=False).values for i in range(0, len(x), CHUNK)]
    d = torch.cat(vals)  # [N, top], ascending
    return {k: d[:, k] for k in ks}


def prdc(real: torch.Tensor, fake: torch.Tensor, *, k_pr: int = 3, k_dc: int = 5) -> dict[str, float]:
    """precision, recall, density, coverage of ``fake [F, D]`` against ``real [R, D]``."""
    real, fake = real.float(), fake.float()
    r = knn_radii(real, (k_pr, k_dc))
    f = knn_radii(fake, (k_pr,))[k_pr]
    precise = torch.zeros(len(fake), dtype=torch.bool)
    density = torch.zeros(len(fake))
    recalled = torch.zeros(len(real), dtype=torch.bool)
    covered = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(fake), CHUNK):
        d = torch.cdist(fake[i : i + CHUNK], real)  # [c, R]
        precise[i : i + CHUNK] = (d <= r[k_pr][None, :]).any(1)
        in_dc = d <= r[k_dc][None, :]
        density[i : i + CHUNK] = in_dc.sum(1).float()
        covered |= in_dc.any(0)
        recalled |= (d <= f[i : i + CHUNK, None]).any(0)
    return {"precision": precise.float().mean().item(), "recall": recalled.float().mean().item(),
            "density": density.mean().item() / k_dc, "coverage": covered.float().mean().item()}


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3) -> tuple[float, float]:
    """Precision: the fraction of fakes inside some real k-NN ball; recall: of reals inside some fake ball."""
    m = prdc(real, fake, k_pr=k, k_dc=k)
    return m["precision"], m["recall"]


def density_coverage(real: torch.Tensor, fake: torch.Tensor, *, k: int = 5) -> tuple[float, float]:
    """Density: real balls containing each fake, averaged and divided by k (about 1 for matching sets);
    coverage: the fraction of real balls containing at least one fake."""
    m = prdc(real, fake, k_pr=k, k_dc=k)
    return m["density"], m["coverage"]
