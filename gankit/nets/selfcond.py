"""Self-conditioning on unsupervised clusters (after Liu et al. 2020, "Diverse image generation via
self-conditioned GANs"; here the clusters are k-means clusters of the training images' pixels).

The training images are split into K clusters by k-means on their pixels, with no labels. G and D
are then the class-conditional nets of the same architecture with the cluster as the class
(conditional batch norm in G, projection in D), which gives G a discrete choice of what kind of
image to draw and D a per-kind judgement: on MNIST, a cluster is mostly one digit written one way.

Outside training the model stays unconditional. :class:`ClusterGenerator` takes the cluster from
its own noise, by the inverse CDF of the first latent coordinate over the clusters' sizes, so
``G(z)`` draws clusters as often as the data has them, and the same ``z`` always gives the same
image (sampling, evaluation, interpolation, grids and exact resume need nothing new).
:class:`ClusterDiscriminator` keeps the cluster centres and, given no labels, judges an image as
a member of its nearest cluster.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def nearest_centre(x: torch.Tensor, centres: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """The index of the nearest row of ``centres [K, F]`` (Euclidean) for each image or row of ``x``."""
    flat = x.reshape(len(x), -1).to(centres.dtype)
    c2 = centres.pow(2).sum(1)  # [K]; |x|^2 is the same for every centre, so it is left out
    parts = [(c2 - 2.0 * part @ centres.T).argmin(1) for part in flat.split(chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=x.device)


def kmeans(x: torch.Tensor, k: int, *, seed: int = 0, iters: int = 25) -> torch.Tensor:
    """k-means++ then at most ``iters`` Lloyd iterations on the rows of ``x [N, F]``; the centres ``[k, F]``.

    Deterministic for a given ``seed`` on the CPU (on a GPU, ``index_add_``'s float sums are not);
    a cluster that empties keeps its centre.
    """
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"cannot make {k} clusters of {n} points")
    gen = torch.Generator().manual_seed(seed)
    pts = x.reshape(n, -1).float()
    # k-means++: each new centre drawn with probability proportional to its squared distance to the chosen
    first = int(torch.randint(len(pts), (1,), generator=gen))
    centres = [pts[first]]
    d2 = (pts - pts[first]).pow(2).sum(1)
    for _ in range(k - 1):
        weights = d2.cpu().double()
        i = int(torch.multinomial(weights, 1, generator=gen)) if weights.sum() > 0 else \
            int(torch.randint(len(pts), (1,), generator=gen))
        centres.append(pts[i])
        d2 = torch.minimum(d2, (pts - pts[i]).pow(2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        a = nearest_centre(pts, c)
        count = torch.bincount(a, minlength=k).to(pts.dtype)
        total = torch.zeros_like(c).index_add_(0, a, pts)
        moved = torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None], c)
        if torch.equal(moved, c):
            break
        c = moved
    return c


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """Phi(z), the standard normal's CDF."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


class ClusterGenerator(nn.Module):
    """A conditional generator ``net`` over K clusters that picks its cluster from its noise."""

    def __init__(self, net: nn.Module, clusters: int, *, noise: str = "normal") -> None:
        super().__init__()
        if clusters < 1:
            raise ValueError(f"clusters must be >= 1, got {clusters}")
        self.net, self.clusters, self.noise = net, clusters, noise
        # cumulative cluster frequencies (set from the data by set_sizes; saved with the weights)
        self.register_buffer("cdf", torch.arange(1, clusters + 1, dtype=torch.float32) / clusters)

    def set_sizes(self, counts: torch.Tensor) -> None:
        """Draw clusters in proportion to ``counts [K]`` (their sizes in the training data)."""
        p = counts.double() / counts.sum()
        self.cdf.copy_(p.cumsum(0).to(self.cdf))

    def labels_for(self, z: torch.Tensor) -> torch.Tensor:
        """The cluster of each latent ``z [N, latent]``: its first coordinate's quantile, by cluster size."""
        u = normal_cdf(z[:, 0]) if self.noise == "normal" else (z[:, 0] + 1.0) * 0.5  # uniform in [-1, 1]
        return torch.searchsorted(self.cdf.to(u.dtype), u.contiguous(), right=True).clamp_(max=self.clusters - 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z, self.labels_for(z) if labels is None else labels)


class ClusterDiscriminator(nn.Module):
    """A conditional discriminator ``net`` over K clusters; unlabelled images go to their nearest centre."""

    def __init__(self, net: nn.Module, clusters: int, features: int) -> None:
        super().__init__()
        self.net, self.clusters = net, clusters
        self.register_buffer("centres", torch.zeros(clusters, features))  # [K, C*H*W], in the model's range

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Each image's cluster: the nearest centre."""
        return nearest_centre(x.detach().float(), self.centres)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kw: Any) -> Any:
        return self.net(x, self.assign(x) if labels is None else labels, **kw)
