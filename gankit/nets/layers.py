"""Layers the seed systems need beyond PyTorch's: TensorFlow's "same" padding, reshape, label injection.

TensorFlow pads "same" convolutions asymmetrically when the total padding is odd (the extra
row/column goes at the bottom/right); PyTorch's symmetric ``padding=`` shifts such outputs by one
pixel. These modules reproduce TensorFlow's alignment exactly with the same parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``Conv2d`` with TensorFlow's ``padding='same'`` (output = ceil(input / stride))."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_pads(x.shape[-2], k, s)
        left, right = _same_pads(x.shape[-1], k, s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, s, (top, left))
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``ConvTranspose2d`` with TensorFlow's ``padding='same'`` (output = input * stride).

    TensorFlow crops the full transposed output like the padding of the matching forward
    convolution: the smaller half at the top/left.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        crop_h, crop_w = kh - sh, kw - sw  # the full output, (h0 - 1) * s + k, less the "same" size h0 * s
        if crop_h >= 0 and crop_w >= 0 and crop_h % 2 == 0 and crop_w % 2 == 0:
            # an even crop is PyTorch's own symmetric padding: no larger output to compute and slice
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, (crop_h // 2, crop_w // 2))
        h, w = x.shape[-2] * sh, x.shape[-1] * sw
        full = super().forward(x)  # [N, C, (h0-1)*s + k, ...]
        top = (full.shape[-2] - h) // 2
        left = (full.shape[-1] - w) // 2
        # the slice is a strided view; the layers after it (batch norm above all) take PyTorch's slow
        # generic path on such views, so copy it out in the layout the convolution produced
        out = full[..., top : top + h, left : left + w]
        cl = full.is_contiguous(memory_format=torch.channels_last) and not full.is_contiguous()
        return out.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-d tensor is laid out channels_last (and not also plain contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class _FlattenKeepLayout(torch.autograd.Function):
    """Flatten a channels_last ``[N, C, H, W]`` in PyTorch's (channel-first) order, and hand its
    gradient back channels_last too. ``nn.Flatten``'s gradient comes back plain contiguous, so the
    layer before it (an activation whose input is channels_last) ran its backward on two tensors of
    different layouts, PyTorch's slow strided path: 2.1 ms against 0.14 for leaky ReLU's backward at
    ``[64, 64, 7, 7]``, a tenth of a small DCGAN's step on the AMX CPU."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.contiguous().view(x.shape[0], -1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # differentiable: R1 and WGAN-GP go through it
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


@torch.compiler.disable
def _flatten_outside_graph(x: torch.Tensor) -> torch.Tensor:
    return _FlattenKeepLayout.apply(x)


class Flatten(nn.Flatten):
    """``nn.Flatten`` (to ``[N, features]``) that keeps a channels_last input's gradient channels_last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.start_dim == 1 and self.end_dim == -1 and is_channels_last(x):
            if x.device.type == "cpu":
                # under torch.compile on a CPU, inductor fuses this reordering into the kernels around it
                # as scalar code with an integer division per element: mnist-best's D took 43.8 against
                # 17.8 ms eager (forward + backward). The compiled graph breaks here instead, and the copy
                # runs eagerly. (On a GPU the fused code is fast, and a break would split a CUDA graph.)
                return _flatten_outside_graph(x)
            return _FlattenKeepLayout.apply(x)
        return super().forward(x)


class Reshape(nn.Module):
    """Reshape each sample to ``shape`` (Keras' ``Reshape`` in channel-first order).

    ``channels_last`` (set by the fast path when the net's weights are channels_last) lays a 4-d
    result out channels_last, so the convolutions after it, and the activations' backward passes
    between them, see one layout throughout instead of converting (or taking PyTorch's slow path for
    mixed layouts) at every layer.
    """

    channels_last = False

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.reshape(x.shape[0], *self.shape)
        if self.channels_last and out.dim() == 4:
            return out.contiguous(memory_format=torch.channels_last)
        return out

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class StretchedSigmoid(nn.Module):
    """``clip(sigmoid(x) * scale + shift, 0, 1)``: seed 003's generator output."""

    def __init__(self, scale: float = 1.2, shift: float = -0.1) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(x) * self.scale + self.shift, 0.0, 1.0)


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Class indices ``[N]`` to one-hot ``[N, K]``; float ``[N, K]`` label mixtures pass through.

    Mixtures (e.g. 0.3 x "7" + 0.7 x "9") are how seed 003 interpolates between classes.
    """
    if labels.dtype in (torch.int64, torch.int32):
        return F.one_hot(labels.long(), num_classes).to(dtype)
    return labels.to(dtype)


class LabelConcat(nn.Module):
    """Marks where a one-hot class label joins the (flat) features; the net feeds it the labels."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("this conditional network needs class labels")
        return torch.cat([x, one_hot(labels, self.num_classes, x.dtype)], dim=1)


class ToImage(nn.ConvTranspose2d):
    """A DCGAN generator's last layer, ``ConvTranspose2d``, computed as one matrix product and a fold
    where PyTorch's own kernel is slow: on a CPU, for one output channel (grey images).

    PyTorch's CPU transposed convolution runs a small matrix product and a col2im per image; for a
    one-channel output at batch 64 that took 5.7 ms forward and 19 ms forward + backward here,
    against 4 ms for the same arithmetic as one product over the whole batch followed by
    ``F.fold`` (col2im). Same parameters and results (to float rounding) as the plain layer.

    That holds in fp32 on contiguous tensors only. Under bf16 autocast with channels_last (the fast
    path on AMX CPUs) PyTorch's kernel wins: mnist-best's G forward + backward (batch 64, two threads)
    took 7.2 and 7.5 ms with it against 9.2 and 9.0 ms folded, in two runs. So any other case (bf16,
    channels_last, GPU, colour images, other strides) runs the plain layer.
    """

    def _folds(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dim() == 4 and self.out_channels == 1 and self.groups == 1
                and self.dilation == (1, 1) and self.output_padding == (0, 0) and self.padding_mode == "zeros"
                and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and not is_channels_last(x))

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not self._folds(x):
            return super().forward(x, output_size)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        cols = self.weight.reshape(c, -1).T.to(x.dtype) @ x.transpose(0, 1).reshape(c, n * h * w)  # [Cout*kh*kw, N*H*W]
        cols = cols.view(-1, n, h * w).transpose(0, 1)  # [N, Cout*kh*kw, H*W], fold's layout
        size = ((h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw)
        out = F.fold(cols, size, (kh, kw), stride=(sh, sw), padding=(ph, pw))  # [N, Cout, H', W']
        return out if self.bias is None else out + self.bias.to(out.dtype).view(1, -1, 1, 1)
