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

from gankit.errors import GankitError, did_you_mean
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


# What each op takes: (most positional numbers, its key=value options)
_OPS: dict[str, tuple[int, tuple[str, ...]]] = {
    "dense": (1, ()), "conv": (2, ("s", "pad")), "convT": (2, ("s", "pad")), "bn": (0, ("momentum", "eps")),
    "lrelu": (1, ()), "relu": (0, ()), "tanh": (0, ()), "sigmoid": (0, ()), "sigmoid-stretch": (2, ()),
    "dropout": (1, ()), "up": (1, ()), "maxpool": (1, ()), "reshape": (3, ()), "flatten": (0, ()), "label": (0, ()),
}


class _Spec:
    """One parsed layer string: ``op``, positional numbers, ``key=value`` options, each checked against
    what the op takes (a misspelt option would otherwise be ignored, a fraction of a channel rounded)."""

    def __init__(self, spec: str, shape: Shape) -> None:
        if not isinstance(spec, str):
            raise GankitError(f"layer {spec!r}: each layer is a string such as \"conv 64 5 s=2 pad=same\"")
        parts = spec.split()
        if not parts:
            raise GankitError("empty layer spec")
        self.op = parts[0]
        self.where = f"layer {spec!r} (input shape {list(shape)})"
        if self.op not in _OPS:
            raise GankitError(f"layer {spec!r}: unknown op {self.op!r}{did_you_mean(self.op, _OPS)}; known: "
                              f"{' '.join(_OPS)}")
        most, options = _OPS[self.op]
        self.pos: list[float] = []
        self.opts: dict[str, str] = {}
        for tok in parts[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                if k not in options:
                    takes = f"takes {', '.join(o + '=' for o in options)}" if options else "takes no options"
                    raise GankitError(f"{self.where}: unknown option {k!r}{did_you_mean(k, options)}; "
                                      f"{self.op} {takes}")
                self.opts[k] = v
            else:
                try:
                    self.pos.append(float(tok))
                except ValueError:
                    raise GankitError(f"{self.where}: {tok!r} is not a number (options are key=value)") from None
                if not math.isfinite(self.pos[-1]):
                    raise GankitError(f"{self.where}: {tok!r} is not a finite number")
        if self.op != "reshape" and len(self.pos) > most:
            raise GankitError(f"{self.where}: {self.op} takes at most {most} number{'s' * (most != 1)}, "
                              f"got {len(self.pos)}")
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

    def count(self, i: int, default: int | None = None, *, what: str = "size") -> int:
        """Positional number ``i`` as a whole number >= 1 (channels, a kernel side, a factor)."""
        return self._count(self.arg(i, default), f"its {what} (argument {i + 1})")

    def opt_count(self, key: str, default: int) -> int:
        return self._count(self.opt_number(key, default), f"{key}=")

    def opt_number(self, key: str, default: float) -> float:
        raw = self.opts.get(key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise GankitError(f"{self.where}: {key}={raw} is not a number") from None
        if not math.isfinite(value):
            raise GankitError(f"{self.where}: {key}={raw} is not a finite number")
        return value

    def in_range(self, value: float, what: str, low: float, high: float, *, open_low: bool = False,
                 open_high: bool = False) -> float:
        ok = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
        if not ok:
            span = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
            raise GankitError(f"{self.where}: {what} must be in {span}, got {value:g}")
        return value

    def _count(self, value: float, what: str) -> int:
        if value != int(value) or value < 1:
            raise GankitError(f"{self.where}: {what} must be a whole number >= 1, got {value:g}")
        return int(value)


def _conv_out(size: int, k: int, s: int, pad: str, transposed: bool) -> int:
    if pad == "same":
        return size * s if transposed else math.ceil(size / s)
    p = 0 if pad == "valid" else int(pad)
    return (size - 1) * s - 2 * p + k if transposed else (size + 2 * p - k) // s + 1


def build_layers(specs: list[str], in_shape: Shape, num_classes: int) -> tuple[nn.ModuleList, Shape]:
    """Modules for ``specs`` starting from per-sample ``in_shape``; returns them and the output shape."""
    if isinstance(specs, str) or not isinstance(specs, list | tuple):
        raise GankitError(f"layers: give a list of layer strings, e.g. [\"dense 256\", \"relu\"], got {specs!r}")
    layers: list[nn.Module] = []
    shape = tuple(in_shape)
    for text in specs:
        spec = _Spec(text, shape)
        op, pos, opts, where, need, arg = spec.op, spec.pos, spec.opts, spec.where, spec.need, spec.arg
        if op == "dense":
            need(1)
            n = spec.count(0, what="width")
            layers.append(nn.Linear(shape[0], n))
            shape = (n,)
        elif op in ("conv", "convT"):
            need(3)
            out, k = spec.count(0, what="channels"), spec.count(1, what="kernel size")
            s = spec.opt_count("s", 1)
            pad = opts.get("pad", "valid")
            if pad not in ("same", "valid") and not (pad.isascii() and pad.isdigit()):
                raise GankitError(f"{where}: pad={pad} is not same, valid or a whole number of pixels")
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
            momentum = spec.in_range(spec.opt_number("momentum", 0.99), "momentum= (Keras')", 0, 1)
            eps = spec.in_range(spec.opt_number("eps", 1e-3), "eps=", 0, math.inf, open_low=True)
            bn = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
            layers.append(bn(shape[0], momentum=1.0 - momentum, eps=eps))
        elif op == "lrelu":
            layers.append(nn.LeakyReLU(spec.in_range(arg(0, 0.3), "the slope", 0, 1)))
        elif op in ("relu", "tanh", "sigmoid"):
            layers.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[op]())
        elif op == "sigmoid-stretch":
            layers.append(StretchedSigmoid(arg(0, 1.2), arg(1, -0.1)))
        elif op == "dropout":
            layers.append(nn.Dropout(spec.in_range(arg(0), "the rate", 0, 1, open_high=True)))
        elif op == "up":
            need(3)
            f = spec.count(0, 2, what="factor")
            layers.append(nn.Upsample(scale_factor=f, mode="nearest"))
            shape = (shape[0], shape[1] * f, shape[2] * f)
        elif op == "maxpool":
            need(3)
            f = spec.count(0, 2, what="window")
            layers.append(nn.MaxPool2d(f, ceil_mode=True))  # TensorFlow's "same" pooling
            shape = (shape[0], math.ceil(shape[1] / f), math.ceil(shape[2] / f))
        elif op == "reshape":
            new = tuple(spec.count(i, what="size") for i in range(len(pos)))
            if not new or math.prod(new) != math.prod(shape):
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
