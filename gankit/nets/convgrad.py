"""Convolutions whose weight gradient is a matrix product of patches, for bf16 on a CPU.

Under bf16 autocast with channels_last activations, oneDNN's backward-weights kernels on the AMX
CPU ran 1.6-2.8x slower than the rest of the layer's work would suggest: for a transposed
convolution 64 -> 32 channels at 7x7 (batch 64) the backward took 1.5 ms, of which the input
gradient is 0.23. Written out, a convolution's weight gradient is one matrix product: the output
gradient ``[N*Ho*Wo, O]`` against the input's patches ``[N*Ho*Wo, kh*kw*C]``. With channels_last
tensors the patches are a strided view of the padded input, copied out once, and the product runs
on the AMX matrix units. The input gradient stays oneDNN's (``aten.convolution_backward`` asked for
that alone).

:class:`Conv2d` and :class:`ConvTranspose2d` are PyTorch's layers with that backward switched on
where it was measured faster (:func:`split_is_faster`: the DCGAN layers, kernel 4 and
stride 2, with 64 input channels or more and patch matrices up to 16 MB); elsewhere, and whenever a graph of the
gradient is being built (R1, WGAN-GP), they are PyTorch's layers unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CL = torch.channels_last


def patches(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
            ) -> torch.Tensor:
    """The sliding windows of ``x`` ``[N, C, H, W]`` as rows ``[N*Ho*Wo, kh*kw*C]`` (columns in (ky, kx, c)
    order): what a convolution with this kernel, stride and zero padding multiplies its weights with."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    x = x.contiguous(memory_format=CL)
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph)).contiguous(memory_format=CL)
    n, c, h, w = x.shape
    s_n, s_c, s_h, s_w = x.stride()
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    windows = x.as_strided((n, ho, wo, kh, kw, c), (s_n, sh * s_h, sw * s_w, s_h, s_w, s_c))
    return windows.reshape(n * ho * wo, kh * kw * c)


def rows(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` as ``[N*H*W, C]`` (a view when ``x`` is channels_last)."""
    n, c, h, w = x.shape
    return x.contiguous(memory_format=CL).permute(0, 2, 3, 1).reshape(n * h * w, c)


def weight_grad(x: torch.Tensor, grad_out: torch.Tensor, weight_shape: torch.Size, stride: tuple[int, int],
                padding: tuple[int, int], transposed: bool) -> torch.Tensor:
    """The gradient of a convolution's weight (dilation 1, one group) as one matrix product.

    A convolution's output at (n, oy, ox) is its weights against the input's window there, so the
    weight gradient sums grad_out x window over every output position. A transposed convolution is the
    same with input and output swapped: its input at (n, iy, ix) against grad_out's window there.
    """
    kernel = (weight_shape[2], weight_shape[3])
    if transposed:  # weight [C_in, C_out, kh, kw]
        c_in, c_out = weight_shape[0], weight_shape[1]
        g = rows(x).t() @ patches(grad_out, kernel, stride, padding)  # [C_in, kh*kw*C_out]
        return g.view(c_in, *kernel, c_out).permute(0, 3, 1, 2)
    c_out, c_in = weight_shape[0], weight_shape[1]  # weight [C_out, C_in, kh, kw]
    g = rows(grad_out).t() @ patches(x, kernel, stride, padding)  # [C_out, kh*kw*C_in]
    return g.view(c_out, *kernel, c_in).permute(0, 3, 1, 2)


class _ConvPatchGrad(torch.autograd.Function):
    """A convolution (or transposed one) whose backward computes the weight gradient by
    :func:`weight_grad` and the input gradient by oneDNN alone. Inputs are in one dtype already."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int], transposed: bool) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, transposed, bias is not None)
        if transposed:
            return F.conv_transpose2d(x, weight, bias, stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, transposed, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # a graph of this gradient is wanted (R1, WGAN-GP): PyTorch's own,
            # which is differentiable again
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[1] if transposed else weight.shape[0]] if has_bias else None,
                list(stride), list(padding), [1, 1], transposed, [0, 0], 1, [need_x, need_w, need_b and has_bias])
            return gx, gw, gb, None, None, None
        gx = gw = gb = None
        if need_x:
            gx = torch.ops.aten.convolution_backward(grad_out, x, weight, None, list(stride), list(padding), [1, 1],
                                                     transposed, [0, 0], 1, [True, False, False])[0]
        if need_w:
            gw = weight_grad(x, grad_out, weight.shape, stride, padding, transposed)
        if need_b and has_bias:
            gb = grad_out.sum((0, 2, 3))
        return gx, gw, gb, None, None, None


PATCH_LIMIT = 2**23  # elements (16 MB in bf16): larger patch matrices lost to oneDNN's kernel


def split_is_faster(m: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    """Where the patch-product weight gradient beat oneDNN's on the AMX CPU: the DCGAN layers (kernel 4,
    stride 2) with at least 64 input channels whose patch matrix has at most :data:`PATCH_LIMIT` elements.

    ``benchmarks/conv_weight_grad.py`` (bf16 autocast, channels_last, forward + backward of the layer, two
    threads, session 20; several runs) found, by the size of the patch matrix:

    - faster: transposed 64 -> 32, 128 -> 64 and 192 -> 96 channels at 7x7 (batch 64) 1.27-1.99x,
      128 -> 64 at 8x8 1.50-1.78x, 256 -> 128 and 512 -> 256 at 4x4 1.86-2.82x, 64 -> 32 at 16x16 (2^23
      elements) 0.98-1.37x; convolutions (batch 128) 64 -> 128 to 7x7 and 8x8 1.21-1.30x, 128 -> 256 and
      256 -> 512 to 4x4 1.79-2.02x;
    - slower, with larger patch matrices: transposed 128 -> 64 at 16x16 0.92x, convolutions 64 -> 128 to
      16x16 0.47-0.56x, 128 -> 256 to 8x8 0.70-1.19x (the copy outgrows the caches);
    - slower with fewer input channels: 32 -> 64 0.87-0.97x, 1 or 3 channels 0.54-0.84x, transposed
      32 -> 1 0.85-0.91x; and 3x3 stride-1 convolutions 0.32-1.28x (each pixel in nine patches).

    On AMD Zen 5 (AVX512_BF16, session 26, one run of three rounds) the same split held: 1.11-1.42x for
    every picked transposed layer, 0.97x for the picked convolution 64 -> 128 to 7x7, 0.50-0.86x for
    every layer left to oneDNN.
    """
    if m.kernel_size != (4, 4) or m.stride != (2, 2) or m.in_channels < 64:
        return False
    n, _, h, w = x.shape
    if isinstance(m, nn.ConvTranspose2d):  # the output gradient's patches, one row per input pixel
        return n * h * w * 16 * m.out_channels <= PATCH_LIMIT
    # the input's patches, one row per output pixel (about half the side for this kernel and stride)
    return n * (h // 2) * (w // 2) * 16 * m.in_channels <= PATCH_LIMIT


def _eligible(m: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    return (m.patch_grad and x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not torch.compiler.is_compiling()
            and m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"
            and not isinstance(m.padding, str) and not any(getattr(m, "output_padding", (0, 0)))
            and split_is_faster(m, x))


def _apply(m: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor, transposed: bool) -> torch.Tensor:
    dt = torch.bfloat16  # autocast does not reach inside a custom autograd function: cast as it would
    b = None if m.bias is None else m.bias.to(dt)
    return _ConvPatchGrad.apply(x.to(dt), m.weight.to(dt), b, m.stride, m.padding, transposed)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and results) with the patch-product weight gradient under bf16
    autocast on a CPU, where :func:`split_is_faster`. ``patch_grad = False`` turns it off."""

    patch_grad = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _eligible(self, x):
            return _apply(self, x, transposed=False)
        return super().forward(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with the patch-product weight gradient (see :class:`Conv2d`)."""

    patch_grad = True

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and _eligible(self, x):
            return _apply(self, x, transposed=True)
        return super().forward(x, output_size)
