"""ResNet generator and discriminator in the style of SNGAN (Miyato et al. 2018, appendix B; the
CIFAR-10 nets), with the projection discriminator and conditional batch norm of Miyato & Koyama 2018.

Generator: dense to ``[width, s, s]`` (s = 4 for 32x32, 7 for 28x28), n up-blocks
(norm-ReLU-upsample-conv3-norm-ReLU-conv3, plus an upsample-conv1 shortcut) to full size, then
norm-ReLU-conv3 to the image. SNGAN's CIFAR generator is ``width = 256`` at 32x32.

Discriminator: an "optimised" first block (conv3-ReLU-conv3-avgpool, shortcut avgpool-conv1), down
blocks (ReLU-conv3-ReLU-conv3-avgpool, shortcut conv1-avgpool) to 8x8 or less, ``depth`` blocks at
that size with identity shortcuts, ReLU, global sum pooling and the (projection) head, with
``classifier`` also an AC-GAN class head. SNGAN's is
``width = 128``, ``depth = 2``, spectrally normalised (``sn = true``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit.nets.conditional import LatentLinear, Norm2d, ProjectionHead, apply_spectral_norm
from gankit.nets.dcgan import stages
from gankit.nets.layers import Reshape
from gankit.nets.mlp import output_activation
from gankit.registry import register


class UpBlock(nn.Module):
    """A generator residual block that doubles the resolution."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.n1, self.n2 = Norm2d(c_in, num_classes), Norm2d(c_out, num_classes)
        self.c1, self.c2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.n1(x, labels)), scale_factor=2.0, mode="nearest")
        h = self.c2(F.relu(self.n2(self.c1(h), labels)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """A discriminator residual block; ``first`` is SNGAN's optimised block on the raw image."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.c1, self.c2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (down or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x if self.first else F.relu(x))
        h = self.c2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.skip is not None:
            if self.first:  # pool first: the 1x1 conv then runs on a quarter of the pixels
                s = self.skip(F.avg_pool2d(s, 2))
            else:
                s = self.skip(s)
                s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


@register("generator", "resnet")
class ResNetGenerator(nn.Module):
    """See the module docstring."""

    def __init__(self, *, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 output: str = "tanh", width: int = 256, sn: bool = False, label_input: bool = False) -> None:
        super().__init__()
        channels, res, _ = image_shape
        self.start, n = stages(res)
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width = width
        self.fc = LatentLinear(latent_dim, width * self.start * self.start, num_classes=num_classes,
                               label_input=label_input)  # with label_input the one-hot class joins z
        self.unflatten = Reshape(width, self.start, self.start)  # [N, W, s, s]
        self.blocks = nn.ModuleList([UpBlock(width, width, num_classes) for _ in range(n)])
        self.norm = Norm2d(width, num_classes)
        self.to_image = nn.Conv2d(width, channels, 3, 1, 1)
        self.out = output_activation(output)
        if sn:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.unflatten(self.fc(z, labels))  # [N, W, s, s]
        for block in self.blocks:
            h = block(h, labels)
        return self.out(self.to_image(F.relu(self.norm(h, labels))))  # [N, C, H, W]


@register("discriminator", "resnet")
class ResNetDiscriminator(nn.Module):
    """See the module docstring."""

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int = 0, width: int = 128, depth: int = 2,
                 sn: bool = False, classifier: bool = False) -> None:
        super().__init__()
        channels, res, _ = image_shape
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got width={width}, depth={depth}")
        n_down, r = 1, res // 2  # the first block always halves
        while r > 8 and r % 2 == 0:
            r //= 2
            n_down += 1
        blocks = [DownBlock(channels, width, down=True, first=True)]
        blocks += [DownBlock(width, width, down=True) for _ in range(n_down - 1)]
        blocks += [DownBlock(width, width, down=False) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.head = ProjectionHead(width, num_classes, classifier=classifier)
        if sn:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                with_classes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # [N, W]: global sum pooling
        return self.head(h, labels, with_classes=with_classes)  # [N] logits (, [N, K])
