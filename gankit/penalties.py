"""Gradient penalties on the discriminator, kept apart from the adversarial objectives (gankit.losses).

Both take D as a function of its input images and return a scalar to add to D's loss (the caller
applies the weight). The gradient of each sample's logit is taken with respect to that sample only,
and its norm is over all of the sample's dimensions ``[C, H, W]`` (never across the batch). A packed
D (PacGAN, :mod:`gankit.nets.pack`) gives one logit per group of consecutive images; its "sample" is
the group, so the norm is over the whole group's ``[pack, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def per_sample_grad(logits: Tensor, inputs: Tensor) -> Tensor:
    """d logits[i] / d inputs[i] for every sample, with a graph so a penalty on it can be trained.

    Summing the logits is exact here: sample i's logit depends only on inputs[i] (D has no
    batch-mixing layers when a gradient penalty is used; batch norm in D would break this).
    """
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad  # [N, C, H, W]


def grouped(grad: Tensor, logits: Tensor) -> Tensor:
    """``grad [N, C, H, W]`` flattened to one row per logit: ``[N, C*H*W]``, or ``[N / pack, pack*C*H*W]``
    when D judged groups of consecutive images (one logit per group)."""
    return grad.reshape(logits.shape[0], -1)


def gradient_penalty(D: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *, center: float = 1.0,
                     generator: torch.Generator | None = None, pack: int = 1) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean over samples of (||grad_x D(x)||_2 - center)^2 at
    x = eps * real + (1 - eps) * fake, with one eps ~ U[0, 1) per sample.

    ``real`` and ``fake`` are ``[N, C, H, W]``; ``generator`` (CPU) draws eps reproducibly. With a
    packed D (``pack`` consecutive images are one sample) each group shares its eps, so the point lies
    on the line between a real and a fake sample, as the definition asks.
    """
    n = real.shape[0]
    eps = torch.rand(n // pack, *([1] * (real.dim() - 1)), generator=generator)
    eps = eps.repeat_interleave(pack, dim=0).to(real.device, real.dtype)  # [N, 1, 1, 1]
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    logits = D(x)
    norms = grouped(per_sample_grad(logits, x), logits).norm(2, dim=1)  # one norm per sample (or group)
    return (norms - center).pow(2).mean()


def r1_penalty(logits: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): mean over samples of ||grad_x D(x)||^2 on real images.

    ``logits`` must come from ``real`` with ``real.requires_grad`` set (so the forward pass of D's
    normal loss is reused); the caller scales it by gamma / 2 (and by k when applied every k steps).
    """
    return grouped(per_sample_grad(logits, real), logits).pow(2).sum(1).mean()
