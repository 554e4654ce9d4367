"""Adversarial objectives as small pure functions on D's logits.

Each objective is three functions: D's loss on real logits, D's loss on fake logits, and G's loss
on the logits of its fakes. D's total loss is the sum of the first two, so a config can also
update D on the real and fake batches separately (seed 002). Penalties live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gankit.registry import register

Tensor = torch.Tensor


@dataclass(frozen=True)
class Objective:
    """An adversarial loss. ``uses_targets``: D's losses take per-sample targets (label smoothing/noise).
    ``threshold``: the output above which D calls an image real, for its accuracy (the midpoint of the
    targets: 0 for logits and hinge scores, 0.5 for LSGAN's 0 and 1)."""

    d_real: Callable[..., Tensor]
    d_fake: Callable[..., Tensor]
    g: Callable[[Tensor], Tensor]
    uses_targets: bool = False
    threshold: float = 0.0


# ---- binary cross-entropy (the seeds' loss), in logit form for numerical stability ----------------

def d_bce_real(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    """-log sigmoid(D(x)) averaged; ``targets`` replace the 1s (smoothing, noise)."""
    t = torch.ones_like(logits) if targets is None else targets
    return F.binary_cross_entropy_with_logits(logits, t)


def d_bce_fake(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    """-log(1 - sigmoid(D(G(z)))) averaged; ``targets`` replace the 0s."""
    t = torch.zeros_like(logits) if targets is None else targets
    return F.binary_cross_entropy_with_logits(logits, t)


def g_bce(fake_logits: Tensor) -> Tensor:
    """The non-saturating generator loss: -log sigmoid(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


register("loss", "bce")(Objective(d_bce_real, d_bce_fake, g_bce, uses_targets=True))


def g_minimax(fake_logits: Tensor) -> Tensor:
    """The original, saturating generator loss: minimise log(1 - sigmoid(D(G(z)))) = -softplus(logit)."""
    return -F.softplus(fake_logits).mean()


register("loss", "minimax")(Objective(d_bce_real, d_bce_fake, g_minimax, uses_targets=True))


# ---- hinge (SNGAN, BigGAN) ----------------------------------------------------------------------------

def d_hinge_real(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return F.relu(1.0 - logits).mean()


def d_hinge_fake(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return F.relu(1.0 + logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


register("loss", "hinge")(Objective(d_hinge_real, d_hinge_fake, g_hinge))


# ---- Wasserstein (WGAN; add a gradient penalty for WGAN-GP) -------------------------------------------

def d_wasserstein_real(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return -logits.mean()


def d_wasserstein_fake(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return logits.mean()


def g_wasserstein(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


register("loss", "wasserstein")(Objective(d_wasserstein_real, d_wasserstein_fake, g_wasserstein))


# ---- least squares (LSGAN, a=0 b=1 c=1) -------------------------------------------------------------------

def d_lsgan_real(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return 0.5 * (logits - 1.0).pow(2).mean()


def d_lsgan_fake(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    return 0.5 * logits.pow(2).mean()


def g_lsgan(fake_logits: Tensor) -> Tensor:
    return 0.5 * (fake_logits - 1.0).pow(2).mean()


register("loss", "lsgan")(Objective(d_lsgan_real, d_lsgan_fake, g_lsgan, threshold=0.5))


def clip_bound(eps: float) -> float:
    """The logit where Keras' probability clipping to [eps, 1 - eps] starts: log((1 - eps) / eps)."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"the clipping epsilon must be in (0, 0.5), got {eps}")
    return math.log((1.0 - eps) / eps)


def clipped_share(logits: Tensor, eps: float) -> Tensor:
    """The share of ``logits`` beyond :func:`keras_clipped`'s bound, where they get no gradient.

    When every logit D gives, on real and fake images, is beyond it, neither net gets a gradient, so
    nothing brings the logits back (seed 001's recipe can end there); the loop warns when it sees that.
    """
    return (logits.detach().abs() > clip_bound(eps)).float().mean()


def keras_clipped(objective: Objective, eps: float) -> Objective:
    """``objective`` on logits clamped to +-log((1 - eps) / eps), with zero gradient beyond.

    Keras' binary cross-entropy takes D's sigmoid probabilities, clips them to [eps, 1 - eps]
    (epsilon 1e-7) and turns them back into logits, so a logit beyond about +-16.1 neither lowers the
    loss nor gets a gradient. With 0/1 targets that only matters at extreme logits; with seed 004's
    noisy targets above 1 it is what keeps the loss bounded (the pure logit form rewards D without
    limit for ever larger logits on real images, and they run away to the hundreds).
    """
    bound = clip_bound(eps)

    def c(logits: Tensor) -> Tensor:
        return logits.clamp(-bound, bound)

    return Objective(d_real=lambda logits, targets=None: objective.d_real(c(logits), targets),
                     d_fake=lambda logits, targets=None: objective.d_fake(c(logits), targets),
                     g=lambda logits: objective.g(c(logits)), uses_targets=objective.uses_targets,
                     threshold=objective.threshold)


def topk_fraction(epochs: float, *, nu: float, gamma: float) -> float:
    """Top-k training's share of G's fakes after ``epochs`` passes over the data: max(nu, gamma^epochs)."""
    return max(nu, gamma**epochs)


def top_k(fake_logits: Tensor, fraction: float) -> Tensor:
    """The ``ceil(fraction x n)`` largest of G's fake logits (the fakes D finds most real; Sinha et al. 2020).

    G's loss on these alone leaves its worst samples without a gradient: their gradients point at
    whatever D rates less bad nearby, often a mix of modes, and pull samples off the data.
    """
    n = fake_logits.shape[0]
    k = max(1, math.ceil(fraction * n - 1e-9))
    return fake_logits if k >= n else fake_logits.topk(k, dim=0, sorted=False).values


def d_targets(n: int, *, label: float, default: float, noise: float, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> Tensor | None:
    """D's targets for ``n`` samples: ``label`` plus ``noise`` x U[0, 1) (seed 004's noisy labels).

    None when they are the loss's own target for that side (``default``: 1 for real, 0 for fake), so
    the loss takes its fast path; any other label, 0 for real images included, is passed on.
    """
    if noise == 0.0:
        return None if label == default else torch.full((n,), label, device=device)
    u = torch.rand(n, generator=generator, device="cpu").to(device)
    return label + noise * u
