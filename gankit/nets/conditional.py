"""Building blocks shared by the dcgan and resnet families: (conditional) batch norm, the projection
head, and spectral normalisation.

- Conditional batch norm (de Vries et al. 2017; Miyato & Koyama 2018): batch norm without its own
  affine transform, followed by a per-class scale and shift, the way a class enters the generator.
- Projection discriminator (Miyato & Koyama 2018): ``D(x, y) = w . phi(x) + b + <embed(y), phi(x)>``.
- Auxiliary classifier (Odena et al. 2017, AC-GAN): optionally, a second head on the same features
  that predicts the class, so G can be told directly when its image is not the class it was asked for.
- Spectral normalisation (Miyato et al. 2018): every weight divided by its largest singular value,
  estimated by one power iteration per training forward pass; the power-iteration vectors are
  buffers, so they are in the state dict and a resumed run continues exactly.

Labels are class indices ``[N]`` or mixtures ``[N, K]`` (rows summing to 1), read through one-hot
vectors, so a mixture of classes gives the mixture of their scales, shifts and embeddings.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from gankit.nets.layers import one_hot

SN_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class Norm2d(nn.Module):
    """Batch norm over ``[N, C, H, W]``; with ``num_classes`` > 0 its scale and shift are per class.

    The class scales start at 1 and the shifts at 0 (stored as offsets initialised to zero, which the
    net-wide weight initialisation leaves alone), so every class starts from plain batch norm.
    """

    def __init__(self, channels: int, num_classes: int = 0, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(channels, momentum=momentum, eps=eps, affine=not num_classes)
        if num_classes:
            self.gain = nn.Parameter(torch.zeros(num_classes, channels))  # scale - 1 per class
            self.shift = nn.Parameter(torch.zeros(num_classes, channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if not self.num_classes:
            return h
        if labels is None:
            raise ValueError("this conditional network needs class labels")
        gain, shift = class_rows(self.gain, labels, self.num_classes, h.dtype), \
            class_rows(self.shift, labels, self.num_classes, h.dtype)  # [N, C] each
        return h * (1.0 + gain)[:, :, None, None] + shift[:, :, None, None]


class ProjectionHead(nn.Module):
    """D's last layer on features ``[N, F]``: a linear logit, plus ``<embed(y), features>`` when conditional.

    With ``classifier`` it also has a linear class head (AC-GAN), read with ``with_classes=True``.
    """

    def __init__(self, features: int, num_classes: int = 0, *, classifier: bool = False) -> None:
        super().__init__()
        if classifier and not num_classes:
            raise ValueError("classifier needs class labels: model.conditional = true, or model.clusters > 0")
        self.num_classes = num_classes
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Linear(num_classes, features, bias=False) if num_classes else None
        self.classify = nn.Linear(features, num_classes) if classifier else None

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None, *,
                with_classes: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[N]``; with ``with_classes`` also the class logits ``[N, K]`` of the class head."""
        if h.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # one output is a matrix-vector product, which bf16 only slows on a CPU (1.2 against 0.3 ms
            # forward + backward at [64, 3136] on the AMX machine): compute it in fp32
            with torch.autocast(h.device.type, enabled=False):
                out = self.linear(h.float()).squeeze(1)  # [N]
        else:
            out = self.linear(h).squeeze(1)  # [N]
        if self.embed is not None:
            if labels is None:
                raise ValueError("this conditional network needs class labels")
            # a product with the one-hot labels, not a gather of embedding rows: the gather and its
            # elementwise backward measured slower here (2.9-3.9 against 2.2 ms for this head)
            e = self.embed(one_hot(labels, self.num_classes, h.dtype))  # [N, F]: the class embeddings
            out = out + (e * h).sum(1)
        if not with_classes:
            return out
        if self.classify is None:
            raise ValueError("this discriminator has no class head (model.d.classifier = true)")
        return out, self.classify(h)


def class_rows(table: torch.Tensor, labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Each sample's row of a per-class ``table`` ``[K, C]``, as ``[N, C]`` in ``dtype``.

    The same as ``one_hot(labels) @ table``; class indices gather their rows (a product with a one-hot
    matrix costs a matrix product forward and two backward), mixtures ``[N, K]`` take the product.
    """
    if labels.dtype in (torch.int64, torch.int32):
        return table.index_select(0, labels.long()).to(dtype)
    return one_hot(labels, num_classes, dtype) @ table.to(dtype)


def has_classifier(net: nn.Module) -> bool:
    """Whether ``net`` (a discriminator) has an auxiliary class head."""
    return any(isinstance(m, ProjectionHead) and m.classify is not None for m in net.modules())


class LatentLinear(nn.Linear):
    """A generator's first dense layer: ``z`` in, or with ``label_input`` ``z`` and the one-hot class.

    Conditional batch norm starts class-blind (every class's scale 1, shift 0) and Adam moves those
    parameters by about one learning rate a step, so in a short run G ignores the class for hundreds
    of steps; the one-hot in the first dense layer gives G the class from the first step. A plain
    ``nn.Linear`` underneath, so weights keep their names and initialisation.
    """

    def __init__(self, latent_dim: int, out_features: int, *, num_classes: int = 0, label_input: bool = False) -> None:
        if label_input and not num_classes:
            raise ValueError("label_input needs class labels: model.conditional = true, or model.clusters > 0")
        super().__init__(latent_dim + (num_classes if label_input else 0), out_features)
        self.num_classes = num_classes if label_input else 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("this conditional network needs class labels")
            z = torch.cat([z, one_hot(labels, self.num_classes, z.dtype)], dim=1)
        return super().forward(z)


class SpectralNorm(_SpectralNorm):
    """PyTorch's spectral-norm parametrization with a leaner power iteration: the same operations and
    values (a test compares the vectors, weights and gradients bit for bit), fewer Python calls.

    PyTorch's step runs ``F.normalize`` (whose norm goes through ``torch.functional.norm``'s Python
    wrapper) and re-assigns both vectors as module attributes (``Module.__setattr__``) every forward
    pass; for ``mnist-best``'s five normalised layers, at two D passes a step, that Python was about
    half of spectral norm's time on a CPU. Here the vectors are written in place.
    """

    @torch.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        u, v, eps = self._u, self._v, self.eps
        for _ in range(n_power_iterations):
            # F.normalize(x, dim=0, eps=eps, out=...) is x / max(||x||, eps): the same kernels, in place
            x = torch.mv(weight_mat, v)
            torch.div(x, torch.linalg.vector_norm(x, 2, 0, True).clamp_min_(eps), out=u)
            x = torch.mv(weight_mat.H, u)
            torch.div(x, torch.linalg.vector_norm(x, 2, 0, True).clamp_min_(eps), out=v)


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  ) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm`` with :class:`SpectralNorm` (the same buffers and
    state-dict keys, so checkpoints of either load into the other)."""
    weight = getattr(module, name)
    dim = 1 if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) else 0
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectrally normalise every linear and convolutional weight of ``net`` not normalised yet."""
    for m in list(net.modules()):
        if isinstance(m, SN_LAYERS) and not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)
    return net


def has_spectral_norm(m: nn.Module) -> bool:
    """Whether ``m``'s weight is spectrally normalised (by gankit's or PyTorch's parametrization)."""
    return parametrize.is_parametrized(m, "weight") and any(
        isinstance(p, _SpectralNorm) for p in m.parametrizations.weight)
