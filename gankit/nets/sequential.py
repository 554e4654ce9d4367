"""Nets written as a list of layers in the config, so a preset reads like the seed's Keras code.

Each layer is one string: an op, positional numbers, then ``key=value`` options::

    dense 12544              lrelu 0.01             bn momentum=0.99 eps=0.001
    reshape 256 7 7          dropout 0.4            up 2
    conv 64 5 s=2 pad=same   convT 128 5 pad=same   maxpool 2
    flatten    label    relu    tanh    sigmoid    sigmoid-stretch 1.2 -0.1

``pad=same`` is TensorFlow's "same" (asymmetric when it must be), ``valid`` no padding, or a
number. ``bn`` takes Keras' momentum (weight of the old average; PyTorch's is 1 - it).
``label`` concatenates the one-hot class label to flat features (a conditional D's injection
point); a conditional G gets the label joined to its noise input. Leaky ReLU's slope defaults to
Keras' 0.3. Shapes are inferred layer by layer; a mismatch is a clear error at build time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gankit.errors import GankitError
from gankit.nets.layers import (
    Conv2dSame,
    ConvTranspose2dSame,
    Flatten,
    LabelConcat,
    Reshape,
    StretchedSigmoid,
    one_hot,
)
from gankit.registry import register

Shape = tuple[int, ...]


class _Spec:
    """One parsed layer string: ``op``, positional numbers, ``key=value`` options."""

    def __init__(self, spec: str, shape: Shape) -> None:
        parts = spec.split()
        if not parts:
            raise GankitError("empty layer spec")
        self.op = parts[0]
        self.where = f"layer {spec!r} (input shape {list(shape)})"
        self.pos: list[float] = []
        self.opts: dict[str, str] = {}
        for tok in parts[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                self.opts[k] = v
            else:
                try:
                    self.pos.append(float(tok))
                except ValueError:
                    raise GankitError(f"{self.where}: {tok!r} is not a number (options are key=value)") from None
        self.shape = shape

    def need(self, n_dims: int) -> None:
        if len(self.shape) != n_dims:
            kind = "flat [features]" if n_dims == 1 else "image [C, H, W]"
            raise GankitError(f"{self.where}: needs {kind} input")

    def arg(self, i: int, default: float | None = None) -> float:
        if i < len(self.pos):
            return self.pos[i]
        if default is None:
            raise GankitError(f"{self.where}: missing argument {i + 1}")
        return default


def _conv_out(size: int, k: int, s: int, pad: str, transposed: bool) -> int:
    if pad == "same":
        return size * s if transposed else math.ceil(size / s)
    p = 0 if pad == "valid" else int(pad)
    return (size - 1) * s - 2 * p + k if transposed else (size + 2 * p - k) // s + 1


def build_layers(specs: list[str], in_shape: Shape, num_classes: int) -> tuple[nn.ModuleList, Shape]:
    """Modules for ``specs`` starting from per-sample ``in_shape``; returns them and the output shape."""
    layers: list[nn.Module] = []
    shape = tuple(in_shape)
    for text in specs:
        spec = _Spec(text, shape)
        op, pos, opts, where, need, arg = spec.op, spec.pos, spec.opts, spec.where, spec.need, spec.arg
        if op == "dense":
            need(1)
            layers.append(nn.Linear(shape[0], int(arg(0))))
            shape = (int(arg(0)),)
        elif op in ("conv", "convT"):
            need(3)
            out, k, s = int(arg(0)), int(arg(1)), int(opts.get("s", 1))
            pad = opts.get("pad", "valid")
            transposed = op == "convT"
            if pad == "same":
                cls = ConvTranspose2dSame if transposed else Conv2dSame
                layers.append(cls(shape[0], out, k, s))
            else:
                p = 0 if pad == "valid" else int(pad)
                cls2 = nn.ConvTranspose2d if transposed else nn.Conv2d
                layers.append(cls2(shape[0], out, k, stride=s, padding=p))
            h, w = (_conv_out(d, k, s, pad, transposed) for d in shape[1:])
            if h <= 0 or w <= 0:
                raise GankitError(f"{where}: output would be empty")
            shape = (out, h, w)
        elif op == "bn":
            momentum = float(opts.get("momentum", 0.99))
            eps = float(opts.get("eps", 1e-3))
            bn = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            layers.append(bn(shape[0], momentum=1.0 - momentum, eps=eps))
        elif op == "lrelu":
            layers.append(nn.LeakyReLU(arg(0, 0.3)))
        elif op in ("relu", "tanh", "sigmoid"):
            layers.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[op]())
        elif op == "sigmoid-stretch":
            layers.append(StretchedSigmoid(arg(0, 1.2), arg(1, -0.1)))
        elif op == "dropout":
            layers.append(nn.Dropout(arg(0)))
        elif op == "up":
            need(3)
            f = int(arg(0, 2))
            layers.append(nn.Upsample(scale_factor=f, mode="nearest"))
            shape = (shape[0], shape[1] * f, shape[2] * f)
        elif op == "maxpool":
            need(3)
            f = int(arg(0, 2))
            layers.append(nn.MaxPool2d(f, ceil_mode=True))  # TensorFlow's "same" pooling
            shape = (shape[0], math.ceil(shape[1] / f), math.ceil(shape[2] / f))
        elif op == "reshape":
            new = tuple(int(v) for v in pos)
            if math.prod(new) != math.prod(shape):
                raise GankitError(f"{where}: cannot reshape {math.prod(shape)} values to {list(new)}")
            layers.append(Reshape(*new))
            shape = new
        elif op == "flatten":
            layers.append(Flatten())
            shape = (math.prod(shape),)
        elif op == "label":
            need(1)
            if num_classes:
                layers.append(LabelConcat(num_classes))
                shape = (shape[0] + num_classes,)
        else:
            ops = "dense conv convT bn lrelu relu tanh sigmoid sigmoid-stretch dropout up maxpool reshape flatten label"
            raise GankitError(f"layer {text!r}: unknown op {op!r}; known: {ops}")
    return nn.ModuleList(layers), shape


def _run(layers: nn.ModuleList, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    for layer in layers:
        x = layer(x, labels) if isinstance(layer, LabelConcat) else layer(x)
    return x


@register("generator", "layers")
class LayersGenerator(nn.Module):
    """A generator from a list of layer specs; the last must produce the image shape."""

    def __init__(self, *, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 output: str = "tanh", layers: list[str]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.layers, out = build_layers(list(layers), (latent_dim + num_classes,), num_classes)
        if tuple(out) != tuple(image_shape):
            raise GankitError(f"generator layers end with shape {list(out)}, the images are {list(image_shape)}")
        last = next((m for m in reversed(self.layers) if not isinstance(m, nn.Dropout)), None)
        want = nn.Tanh if output == "tanh" else (nn.Sigmoid, StretchedSigmoid)
        if not isinstance(last, want):
            raise GankitError(f"model.output = {output!r} but the generator's last layer is "
                              f"{type(last).__name__}; end with {'tanh' if output == 'tanh' else 'sigmoid'}")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = torch.cat([one_hot(labels, self.num_classes, z.dtype), z], dim=1)
        return _run(self.layers, z, None)  # [N, C, H, W]


@register("discriminator", "layers")
class LayersDiscriminator(nn.Module):
    """A discriminator from a list of layer specs ending in one value per image (a logit)."""

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int = 0, layers: list[str]) -> None:
        super().__init__()
        specs = list(layers)
        if num_classes and not any(s.split()[0] == "label" for s in specs if s.split()):
            raise GankitError("a conditional discriminator's layers need a 'label' layer (where the label joins)")
        self.layers, out = build_layers(specs, tuple(image_shape), num_classes)
        if math.prod(out) != 1:
            raise GankitError(f"discriminator layers must end with one value per image, got shape {list(out)}")

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return _run(self.layers, x, labels).reshape(x.shape[0])  # [N] logits
