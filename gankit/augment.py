"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020).

The same random transforms are applied to every image D sees, real and fake, in D's step and in
G's step; they are differentiable, so G learns through them. With little data (the 6,000 ships)
this keeps D from memorising the training set. Each transform draws its randomness per sample
from a CPU ``torch.Generator`` owned by the caller, so a run's augmentations are reproducible and
its state can be saved in a checkpoint for an exact resume.

Policies (``train.augment = "translation,cutout,color"``):

- ``color``: brightness shift U[-0.5, 0.5), saturation x U[0, 2), contrast x U[0.5, 1.5), per image.
- ``translation``: shift by up to 1/8 of the side in x and y, filling with zeros.
- ``cutout``: zero a square of half the side at a random centre.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gankit.errors import GankitError, did_you_mean
from gankit.nets.layers import is_channels_last
from gankit.registry import get, names, register

Tensor = torch.Tensor
Augment = Callable[[Tensor, torch.Generator], Tensor]


def _uniform(n: int, gen: torch.Generator, like: Tensor, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """``[n, 1, 1, 1]`` uniform numbers in [lo, hi) from the CPU generator, on ``like``'s device."""
    u = torch.rand(n, 1, 1, 1, generator=gen)
    return (lo + (hi - lo) * u).to(like.device, like.dtype)


@register("augment", "color")
def color(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random brightness, saturation and contrast per image (``[N, C, H, W]`` in, same out)."""
    n = x.shape[0]
    x = x + _uniform(n, gen, x, -0.5, 0.5)
    mean_c = x.mean(dim=1, keepdim=True)  # grey level per pixel (a no-op for one channel)
    x = (x - mean_c) * _uniform(n, gen, x, 0.0, 2.0) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, gen, x, 0.5, 1.5) + mean


@register("augment", "translation")
def translation(x: Tensor, gen: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Shift each image by a random whole number of pixels, up to ``ratio`` of its size, zero-filled."""
    n, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(-sw, sw + 1, (n,), generator=gen).to(x.device)
    padded = torch.nn.functional.pad(x, (sw, sw, sh, sh))  # [N, C, H + 2sh, W + 2sw]
    rows = torch.arange(h, device=x.device)[None, :] + sh - dy[:, None]  # [N, H]: source row of each output row
    cols = torch.arange(w, device=x.device)[None, :] + sw - dx[:, None]  # [N, W]
    # two gathers, rows then columns: 1.2-1.6x faster than one advanced index over both (forward +
    # backward, 64-128 images of 32x32x3 on a CPU); done in the input's layout, which the output keeps
    if is_channels_last(x):
        nhwc = padded.permute(0, 2, 3, 1)  # [N, H + 2sh, W + 2sw, C]
        out = nhwc.gather(1, rows[:, :, None, None].expand(n, h, w + 2 * sw, c))
        return out.gather(2, cols[:, None, :, None].expand(n, h, w, c)).permute(0, 3, 1, 2)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * sw))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


@register("augment", "cutout")
def cutout(x: Tensor, gen: torch.Generator, ratio: float = 0.5) -> Tensor:
    """Zero a square of ``ratio`` of the side at a random centre (it may hang over the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n,), generator=gen).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n,), generator=gen).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None])  # [N, H]
    in_x = (xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None])  # [N, W]
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout,color"`` -> its names, checked against the registry (``""`` = none)."""
    out = tuple(p.strip() for p in policy.split(",") if p.strip())
    known = names("augment")
    for p in out:
        if p not in known:
            raise GankitError(f"train.augment: unknown augmentation {p!r}{did_you_mean(p, known)}; "
                              f"known: {', '.join(known)}")
    return out


def diff_augment(x: Tensor, policy: tuple[str, ...], gen: torch.Generator,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Apply the policy's transforms in its order (``[N, C, H, W]`` in and out). DiffAugment's reference
    order is ``color,translation,cutout`` (its zero fills then stay 0); see the README on ``ships-best``.

    The transforms' constants are the reference's, for images in [-1, 1] (a brightness shift of up to half
    that range, fills of 0: mid-grey): images in another ``value_range`` (a sigmoid G's [0, 1]) are mapped
    there and back, so the transforms mean the same.
    """
    lo, hi = value_range
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    if (mid, half) != (0.0, 1.0):
        x = (x - mid) / half
    for name in policy:
        x = get("augment", name)(x, gen)
    return x if (mid, half) == (0.0, 1.0) else x * half + mid
