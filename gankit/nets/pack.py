"""PacGAN packing (Lin et al. 2018): D judges groups of ``pack`` images at once.

The wrapped discriminator is built for ``pack x C`` input channels; ``Packed`` stacks each run of
``pack`` consecutive images of a batch along the channel axis, so D gives one logit per group
(``[N / pack]``). A group of fakes from a collapsed G looks alike in a way a group of real images
does not, and D can see it; that is PacGAN's remedy for mode collapse, at no extra cost (D's
first layer is ``pack`` times wider, and it sees ``pack`` times fewer inputs).

Groups never mix real and fake images as long as every real and fake batch is a multiple of
``pack`` (the config checks it): the losses, which average over logits, then need no change, and
the gradient penalties take one gradient norm per group (see :mod:`gankit.penalties`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Packed(nn.Module):
    """``net`` (a discriminator built for ``pack x C`` channels) applied to groups of ``pack`` images."""

    def __init__(self, net: nn.Module, pack: int) -> None:
        super().__init__()
        if pack < 1:
            raise ValueError(f"pack must be >= 1, got {pack}")
        self.net, self.pack = net, pack

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kw: Any) -> Any:
        """Logits ``[N / pack]`` for images ``[N, C, H, W]``, N a multiple of ``pack``."""
        n, c, *hw = x.shape
        if n % self.pack:
            raise ValueError(f"a packed discriminator (model.pack = {self.pack}) needs batches that are a "
                             f"multiple of {self.pack}, got {n} images")
        # images 0..pack-1 become group 0's channels, pack..2*pack-1 group 1's, and so on
        return self.net(x.reshape(n // self.pack, self.pack * c, *hw), labels, **kw)


def packed_shape(image_shape: tuple[int, int, int], pack: int) -> tuple[int, int, int]:
    """The input shape a discriminator is built for when it judges ``pack`` images at once."""
    c, h, w = image_shape
    return (c * pack, h, w)
