"""The DCGAN family (Radford et al. 2016), sized by ``width`` and ``depth``, for 28x28, 32x32 and 64x64.

Generator: a dense layer to ``[width * 2^(n-1), s, s]`` (s = 7 for 28x28 images, 4 for 32 and 64),
then stride-2 4x4 transposed convolutions, halving the channels as the resolution doubles, each
followed by batch norm and ReLU, and a last transposed convolution to the image. ``depth`` adds
that many 3x3 conv + norm + ReLU layers at each hidden resolution. Conditional: class-conditional
batch norm everywhere, and with ``label_input`` the one-hot class also appended to z.

Discriminator: the mirror image: stride-2 4x4 convolutions with LeakyReLU(0.2), doubling the
channels, ``depth`` 3x3 convs after each, then one linear logit on the flat features (plus the
projection term when conditional, and with ``classifier`` an AC-GAN class head). No batch norm by
default (gradient penalties need per-sample logits; spectral norm replaces it). ``sn = true``
spectrally normalises every weight.
"""

from __future__ import annotations

import torch
from torch import nn

from gankit.nets.conditional import LatentLinear, Norm2d, ProjectionHead, apply_spectral_norm
from gankit.nets.convgrad import Conv2d, ConvTranspose2d
from gankit.nets.layers import Flatten, Reshape, ToImage
from gankit.nets.mlp import check_range, output_activation
from gankit.registry import register


def stages(resolution: int) -> tuple[int, int]:
    """(start side s, number of 2x steps n) with ``resolution = s * 2^n``, s in (4, 7), n >= 1."""
    for start in (4, 7):
        n, r = 0, resolution
        while r > start and r % 2 == 0:
            r //= 2
            n += 1
        if r == start and n >= 1:
            return start, n
    raise ValueError(f"image side {resolution} is not 4 x 2^n or 7 x 2^n (e.g. 28, 32, 64)")


@register("generator", "dcgan")
class DCGANGenerator(nn.Module):
    """See the module docstring; ``width`` is the channels of the last hidden layer."""

    def __init__(self, *, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 output: str = "tanh", width: int = 64, depth: int = 0, sn: bool = False,
                 label_input: bool = False) -> None:
        super().__init__()
        channels, res, _ = image_shape
        start, n = stages(res)
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
        self.num_classes, self.start = num_classes, start
        ch = [width * 2 ** (n - 1 - i) for i in range(n)]  # channels at each resolution before the image
        self.fc = LatentLinear(latent_dim, ch[0] * start * start, num_classes=num_classes, label_input=label_input)
        self.unflatten = Reshape(ch[0], start, start)  # [N, C0, s, s]
        self.norms = nn.ModuleList([Norm2d(ch[0], num_classes)])
        self.convs = nn.ModuleList()
        for i in range(n):
            if i > 0:
                self.convs.append(ConvTranspose2d(ch[i - 1], ch[i], 4, 2, 1))
                self.norms.append(Norm2d(ch[i], num_classes))
            for _ in range(depth):  # extra layers at every hidden resolution
                self.convs.append(Conv2d(ch[i], ch[i], 3, 1, 1))
                self.norms.append(Norm2d(ch[i], num_classes))
        self.to_image = ToImage(ch[-1], channels, 4, 2, 1)  # a faster layer for grey images on a CPU
        self.act = nn.ReLU()
        self.out = output_activation(output)
        if sn:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.unflatten(self.fc(z, labels))  # [N, C0, s, s]
        h = self.act(self.norms[0](h, labels))
        for conv, norm in zip(self.convs, self.norms[1:], strict=True):
            h = self.act(norm(conv(h), labels))
        return self.out(self.to_image(h))  # [N, C, H, W]


@register("discriminator", "dcgan")
class DCGANDiscriminator(nn.Module):
    """See the module docstring; ``width`` is the channels of the first layer."""

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int = 0, width: int = 64, depth: int = 0,
                 sn: bool = False, bn: bool = False, leak: float = 0.2, classifier: bool = False) -> None:
        super().__init__()
        channels, res, _ = image_shape
        start, n = stages(res)
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
        check_range("leak", leak, 0, 1)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(n):
            c = width * 2**i
            layers += [Conv2d(c_in, c, 4, 2, 1)]
            if bn and i > 0:  # DCGAN: no batch norm on the first layer
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(leak))
            for _ in range(depth):
                layers += [Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(leak)]
            c_in = c
        self.features = nn.Sequential(*layers, Flatten())
        self.head = ProjectionHead(c_in * start * start, num_classes, classifier=classifier)
        if sn:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                with_classes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x), labels, with_classes=with_classes)  # [N] logits (, [N, K])
