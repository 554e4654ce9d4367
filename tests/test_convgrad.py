"""The patch-product weight gradient (gankit.nets.convgrad) against PyTorch's convolutions."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.nets.convgrad import Conv2d, ConvTranspose2d, patches, split_is_faster, weight_grad

CL = torch.channels_last
BF16 = torch.bfloat16


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# (transposed, in, out, kernel, stride, padding, input side)
SHAPES = [(False, 3, 5, 4, 2, 1, 8), (False, 4, 6, 3, 1, 1, 7), (False, 4, 6, 1, 1, 0, 5), (False, 2, 3, 5, 2, 2, 9),
          (True, 6, 4, 4, 2, 1, 5), (True, 5, 3, 3, 1, 1, 6), (True, 4, 2, 5, 2, 2, 4)]


@pytest.mark.parametrize("transposed, c_in, c_out, k, s, p, side", SHAPES)
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_weight_gradient_is_the_patch_product(transposed, c_in, c_out, k, s, p, side, layout):
    """In fp32 the patch product gives autograd's weight gradient to rounding, for convolutions and
    transposed ones, any kernel, stride and padding, from inputs in either layout."""
    torch.manual_seed(0)
    x = torch.randn(3, c_in, side, side).contiguous(memory_format=layout)
    shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
    w = torch.randn(shape, requires_grad=True)
    conv = F.conv_transpose2d if transposed else F.conv2d
    y = conv(x, w, None, s, p)
    g = torch.randn_like(y).contiguous(memory_format=layout)
    (ref,) = torch.autograd.grad(y, w, g)
    torch.testing.assert_close(weight_grad(x, g, w.shape, (s, s), (p, p), transposed), ref, rtol=1e-4, atol=1e-4)


def test_patches_are_the_windows_a_convolution_sees():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    cols = patches(x, (2, 2), (2, 2), (0, 0))  # 2 images x 2x2 windows, each 2x2 pixels of 3 channels
    assert cols.shape == (8, 12)
    # image 1, window (0, 1): rows 0-1, columns 2-3; laid out (ky, kx, channel)
    want = x[1, :, 0:2, 2:4].permute(1, 2, 0).reshape(-1)
    torch.testing.assert_close(cols[5], want, rtol=0, atol=0)
    padded = patches(x, (3, 3), (1, 1), (1, 1))  # zero padding shows up as zeros at the border
    assert padded.shape == (32, 27) and padded[0].view(3, 3, 3)[0].abs().sum() == 0


def _pair(cls, plain_cls, *args):
    torch.manual_seed(0)
    fast, plain = cls(*args), plain_cls(*args)
    plain.load_state_dict(fast.state_dict())
    return fast.to(memory_format=CL), plain.to(memory_format=CL)


LAYERS = [(ConvTranspose2d, nn.ConvTranspose2d, (64, 8, 4, 2, 1), 5),
          (ConvTranspose2d, nn.ConvTranspose2d, (96, 8, 4, 2, 1), 8),
          (Conv2d, nn.Conv2d, (64, 8, 4, 2, 1), 10), (Conv2d, nn.Conv2d, (64, 8, 4, 2, 1), 16)]


@pytest.mark.parametrize("cls, plain_cls, args, side", LAYERS)
def test_layers_under_cpu_autocast_match_pytorchs(cls, plain_cls, args, side):
    """Under bf16 autocast on a CPU the layers run the patch product (their gradient function says so)
    and give PyTorch's outputs and input gradients exactly, and its weight and bias gradients to bf16
    rounding (the two sum in different orders)."""
    fast, plain = _pair(cls, plain_cls, *args)
    x = torch.randn(4, args[0], side, side).contiguous(memory_format=CL)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=BF16):
        ya, yb = fast(xa), plain(xb)
    assert type(ya.grad_fn).__name__ == "_ConvPatchGradBackward"
    assert ya.dtype == yb.dtype == BF16 and ya.is_contiguous(memory_format=CL)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    g = torch.randn(ya.shape).contiguous(memory_format=CL)
    ga = torch.autograd.grad(ya, [xa, fast.weight, fast.bias], g)
    gb = torch.autograd.grad(yb, [xb, plain.weight, plain.bias], g)
    torch.testing.assert_close(ga[0], gb[0], rtol=0, atol=0)
    assert ga[1].dtype == torch.float32 and ga[1].shape == fast.weight.shape
    assert _rel(ga[1], gb[1]) < 1e-2 and _rel(ga[2], gb[2]) < 1e-2


def test_second_order_gradients_take_pytorchs_backward():
    """R1 and WGAN-GP differentiate D's input gradient again: the layer's gradient is then PyTorch's
    own, which is differentiable, and the penalty's gradient matches the plain layer's."""
    fast, plain = _pair(Conv2d, nn.Conv2d, 64, 4, 4, 2, 1)
    x = torch.randn(3, 64, 8, 8).contiguous(memory_format=CL)
    grads = []
    for net in (fast, plain):
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=BF16):
            out = F.leaky_relu(net(xx), 0.2).float().square().sum()
        (gx,) = torch.autograd.grad(out, xx, create_graph=True)
        grads.append(torch.autograd.grad(gx.square().sum(), net.weight)[0])
    assert _rel(grads[0], grads[1]) < 2e-2


def test_the_patch_product_runs_only_where_it_was_measured_faster():
    """Kernel 4, stride 2, at least 64 input channels, a patch matrix of at most 2^23 elements, bf16
    autocast, gradients on, and not switched off; PyTorch's own kernels everywhere else."""

    def patched(layer: nn.Module, side: int, channels: int = 64) -> bool:
        x = torch.randn(2, channels, side, side, requires_grad=True)
        return type(layer(x).grad_fn).__name__ == "_ConvPatchGradBackward"

    conv, deconv = Conv2d(64, 4, 4, 2, 1), ConvTranspose2d(64, 4, 4, 2, 1)
    assert not patched(conv, 16)  # fp32
    with torch.autocast("cpu", dtype=BF16):
        assert patched(conv, 16) and patched(deconv, 8)
        assert not patched(Conv2d(32, 4, 4, 2, 1), 16, channels=32)
        assert not patched(Conv2d(64, 4, 3, 1, 1), 4)
        with torch.no_grad():
            assert conv(torch.randn(2, 64, 16, 16)).grad_fn is None
        conv.patch_grad = False
        assert not patched(conv, 16)
    # the size limit, on shapes alone: D's 64 -> 128 layer at batch 128 down to 8x8 (2^23 elements) and to
    # 16x16; a transposed 64 -> 32 layer at 16x16 (2^23) and a 64 -> 64 one (2^24)
    meta = {"device": "meta"}
    assert split_is_faster(Conv2d(64, 128, 4, 2, 1), torch.empty(128, 64, 16, 16, **meta))
    assert not split_is_faster(Conv2d(64, 128, 4, 2, 1), torch.empty(128, 64, 32, 32, **meta))
    assert split_is_faster(ConvTranspose2d(64, 32, 4, 2, 1), torch.empty(64, 64, 16, 16, **meta))
    assert not split_is_faster(ConvTranspose2d(64, 64, 4, 2, 1), torch.empty(64, 64, 16, 16, **meta))


def test_spectrally_normalised_layers_keep_the_patch_product():
    """Spectral norm (a parametrization on the weight) and the patch product compose: the gradient reaches
    the original weight."""
    conv = torch.nn.utils.parametrizations.spectral_norm(ConvTranspose2d(64, 8, 4, 2, 1))
    x = torch.randn(2, 64, 5, 5).contiguous(memory_format=CL)
    with torch.autocast("cpu", dtype=BF16):
        y = conv(x)
    assert type(y.grad_fn).__name__ == "_ConvPatchGradBackward"
    y.float().sum().backward()
    assert conv.parametrizations.weight.original.grad is not None
