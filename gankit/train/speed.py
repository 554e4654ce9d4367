"""The fast path's switches: precision (bf16 autocast), memory format, threads, torch.compile.

Each switch is resolved once per run from the config and the hardware. ``auto`` turns a switch on
only where it was measured to help (see the README's speed section and ``benchmarks/throughput.py``):

- bf16 autocast pays off on CPUs with bf16 matrix units (Intel AMX) or bf16 dot-product instructions
  (AVX512_BF16, e.g. AMD Zen 5: 790 against 182 GFLOP/s for a 2048 matrix product, and 1.3-2.3x for
  the convolutional presets over fp32, session 26) and on CUDA GPUs that support bf16. On CPUs
  without either (AVX2-only, e.g. the AMD EPYC this was first measured on) PyTorch emulates bf16
  convolutions and they run 5-20x *slower* than fp32, so ``auto`` keeps fp32 there.
  On an AMX CPU it paid for every convolutional preset (1.1x for the small ones, 1.6-4x for the seed
  DCGANs, over gankit's own fp32 step) at the same dFID at equal steps, but the fully-connected
  seed 002 GAN (batch 32, layers of at most 1024) ran 0.77-0.93x of its fp32 speed: its products
  are too small for the casts to pay. So on an AMX CPU ``auto`` takes bf16 only for nets with
  convolutions. On AMD Zen 5 (AVX512_BF16, no AMX) the same MLP ran 1.27x faster in bf16 (eight
  alternations, each 1.20-1.44x) at the same dFID (session 26), so there ``auto`` takes bf16 for it too.
- channels_last helps convolutions on CUDA and together with bf16 on AMX CPUs; on AVX2 CPUs in
  fp32 it measured no faster for whole runs (and some backward passes slower), so ``auto`` follows
  bf16 on CPU, with one exception: a small discriminator alone (:func:`d_channels_last_pays`).
  Sampling there, forward passes alone, does gain from it (:func:`inference_channels_last`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gankit.errors import GankitError, first_line
from gankit.nets.layers import Reshape

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# CPU flags of native bf16 products: Intel's AMX tiles, and the AVX-512 bf16 dot product (Cooper Lake and
# later Xeons, AMD Zen 4 and 5), which oneDNN uses for bf16 convolutions and matrix products
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run natively (faster than fp32) on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(bf16_cpu_flags())
    return False


def bf16_cpu_flags() -> list[str]:
    """This CPU's flags of native bf16 products (:data:`BF16_CPU_FLAGS`); empty: bf16 is emulated."""
    return sorted(BF16_CPU_FLAGS & cpu_flags())


def has_convolutions(*nets: nn.Module) -> bool:
    """Whether any of ``nets`` holds a convolution (plain or transposed, any dimension)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for net in nets for m in net.modules())


def batch_independent(net: nn.Module) -> bool:
    """Whether ``net`` in training mode computes each sample's output from that sample alone: no batch
    norm (plain or synced), whose statistics mix the batch. Then one forward pass over real and fake
    images together gives the logits two passes would (D's "joint" update runs it that way)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def resolve_precision(name: str, device: torch.device, *, convolutional: bool = True) -> torch.dtype:
    """``auto``: bf16 where the hardware has bf16 matrix units (on an AMX CPU: for convolutional nets
    only, see the module doc), else fp32; ``fp32``/``bf16`` as asked."""
    if name not in PRECISIONS:
        raise GankitError(f"train.precision = {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        # fully-connected nets: slower in bf16 on AMX (0.77-0.93x), faster with AVX512_BF16 alone (Zen 5,
        # session 26: seed 002's MLP 1.27x, the same dFID at step 5,000), whose products need no tile setup
        dense_pays = device.type != "cpu" or "amx_bf16" not in cpu_flags()
        pays = fast_bf16(device) and (convolutional or dense_pays)
        return torch.bfloat16 if pays else torch.float32
    return torch.bfloat16 if name == "bf16" else torch.float32


def resolve_channels_last(setting: bool | None, device: torch.device, dtype: torch.dtype) -> bool:
    """``None`` (auto): on for CUDA, and on CPU only together with bf16 (measured, see module doc)."""
    if setting is not None:
        return setting
    return device.type == "cuda" or dtype == torch.bfloat16


D_CHANNELS_LAST_MAX_WIDTH = 64


def d_channels_last_pays(D: nn.Module, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``auto`` lays the discriminator alone out channels_last: on a CPU without bf16 units, in
    fp32, for a D whose convolutions all have at most ``D_CHANNELS_LAST_MAX_WIDTH`` output channels.

    oneDNN's channel-first fp32 kernels on an AVX2 CPU are slow for small convolutions, a 1-channel
    first layer most of all: forward + backward at batch 128 (two threads, session 23) took 6.4-15 ms
    channel-first against 2.6-2.8 ms channels_last for 1 -> 32 channels at 28x28, and 23-26 against
    14-19 ms for 32 -> 64 at 14x14, while 3 -> 64 at 32x32 lost (0.83-0.95x) and 64 -> 128 went either
    way (0.79-1.27x). In gankit's loop, a channels_last D with G left contiguous against both nets
    contiguous (the two alternating in one process; paired medians of a scratch script, then
    ``benchmarks/throughput.py --also``'s ratio of medians): ``mnist-best`` 1.09x, 1.08x, 1.07x;
    ``fashion-best`` 1.13x, 1.05x; ``mnist-cond-best`` 1.12x, 1.03x, 1.05x; ``seed003-cgan-mnist``
    1.03x, 1.05x. Presets with wider Ds did not gain (``letters-best`` 0.98x, ``ships-best`` 0.99x,
    ``stacked-mnist-best`` 0.89x, one run each). G stays contiguous: its transposed convolutions'
    forward + backward were no faster channels_last, and its fp32 ``ToImage`` folds only
    channel-first tensors.
    """
    convs = [m for m in D.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return (device.type == "cpu" and dtype == torch.float32 and not fast_bf16(device) and bool(convs)
            and all(m.out_channels <= D_CHANNELS_LAST_MAX_WIDTH for m in convs))


def inference_channels_last(net: nn.Module, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether sampling lays ``net`` out channels_last on a CPU: in bf16, for every convolutional
    generator; in fp32 on a CPU without bf16 units, for generators whose convolutions are all transposed
    ones. Forward passes alone do not pay the slower channels_last backward that keeps training
    contiguous on such CPUs.

    bf16 (session 26, AMD Zen 5 with AVX512_BF16, two threads, ``gankit sample``'s path, 2,000 images,
    three alternations, medians, img/s contiguous -> channels_last): ``seed003-cgan-mnist`` 2,100 -> 3,084,
    ``mnist-best`` 22,284 -> 34,436, ``ships-best`` 7,403 -> 9,572, ``stacked-mnist-best`` 13,009 ->
    18,510, ``letters-best`` 5,683 -> 7,077, ``seed001-dcgan-mnist`` 286 -> 805, ``seed004-dcgan-ships``
    71 -> 86 (1.21-2.8x; contiguous bf16 was slower than fp32 for seed 003's generator: its 3x3
    transposed convolution to one channel took 65 ms against 32 in fp32 at batch 500, 7 channels_last).
    On an AMX CPU sampling has not been timed in both layouts; its training runs bf16 channels_last.

    Measured (session 21, AMD CPU with AVX2, two threads, ``gankit sample``'s path, 2,000 images, the
    two layouts alternating 3-5 times; two or three runs): ``seed003-cgan-mnist`` 1.52-1.56x,
    ``ships-best`` 1.35-1.42x, ``letters-best`` 1.13-1.18x, ``stacked-mnist-best`` 1.03-1.14x, the
    width-32 presets 0.88-1.08x (as far apart between runs as from 1), seeds 000 and 001 1.00x and
    1.11x (one run each). ``seed004-dcgan-ships``, whose generator is mostly 5x5 stride-1 convolutions
    over 256 channels, lost: 0.88x, every pair below 1, so nets with plain convolutions stay
    contiguous. The images are the same (identical uint8 for all but seed 000, one pixel level apart).
    """
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if device.type != "cpu" or not convs:
        return False
    if dtype == torch.bfloat16:
        return True
    return (dtype == torch.float32 and not fast_bf16(device)
            and all(isinstance(m, nn.modules.conv._ConvTransposeNd) for m in convs))


# Forward-only passes on a CPU (sampling, evaluator features) take batches whose layer outputs add up to
# about this many bytes. Larger batches were slower, not faster: glibc serves big blocks with fresh
# pages from the kernel and PyTorch's CPU allocator keeps no cache, so every large output is paid for in
# page faults and zeroing (a ReLU over 100 MB took 60 ms out of place against 6 in place), and a smaller
# working set also stays in cache. Measured in :func:`inference_batch`'s docstring.
CPU_INFERENCE_BYTES = 48 * 2**20
INFERENCE_BATCH_RANGE = (64, 1000)  # fewest and most items a batch takes; the most is also the GPU's


def activation_bytes(net: nn.Module, *inputs: object) -> int:
    """Bytes of the storage behind the tensors ``net``'s leaf modules output in one forward pass of
    ``inputs``, each storage once (an in-place activation or a reshape returns its input's)."""
    seen: dict[int, torch.Tensor] = {}  # held until the end, so that no later output reuses a freed address

    def count(_m: nn.Module, _i: object, out: object) -> None:
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                seen[t.untyped_storage().data_ptr()] = t

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.inference_mode():
            net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return sum(t.untyped_storage().nbytes() for t in seen.values())


def inference_batch(net: nn.Module, inputs: tuple[object, ...], device: torch.device) -> int:
    """How many items a forward-only pass of ``net`` takes at a time. On a GPU the most of
    :data:`INFERENCE_BATCH_RANGE`; on a CPU as many as keep one batch's layer outputs near
    :data:`CPU_INFERENCE_BYTES`, measured with ``inputs``, a few example items (call it under the
    autocast the passes will run in: bf16 outputs are half the bytes).

    Measured (session 28, AMD Zen 3 with AVX2, fp32, two threads, ``gankit sample``'s path, 2,000
    images, budgets of 24, 48 and 96 MB and a batch of 1,000 alternating three times, medians, img/s at
    1,000 -> at 48 MB, with the batch it chose): ``seed003-cgan-mnist`` 1,916 -> 3,417 (216),
    ``letters-best`` 1,336 -> 1,982 (145), ``ships-best`` 1,555 -> 1,957 (136), ``mnist-cond-best`` 5,394
    -> 8,383 (422), ``mnist-best`` 5,404 -> 7,509, ``fashion-best`` 5,760 -> 7,539, ``stacked-mnist-best``
    2,440 -> 3,015 (205). 24 MB was 2-23% slower than 48 on every one of these, 96 MB 6-31% slower on
    all but ``stacked-mnist-best`` (3,150, 4% faster). The fully-connected presets take 1,000 either way;
    the seed DCGANs (2-7 MB of outputs an image) were as fast at 25, 64 and 400 (seed 000 125, 134
    and 118 img/s), so the floor is 64. The evaluators: MNIST 1,243 -> 1,692 img/s (126 a batch),
    Fashion-MNIST 1,168 -> 1,665 (126), CIFAR-10 484 -> 692 (97), the same features to the bit.
    """
    lo, hi = INFERENCE_BATCH_RANGE
    if device.type != "cpu":
        return hi
    n = len(inputs[0]) if isinstance(inputs[0], torch.Tensor) else 1
    per_item = activation_bytes(net, *inputs) / max(n, 1)
    return max(lo, min(hi, int(CPU_INFERENCE_BYTES // max(per_item, 1.0))))


@dataclass(frozen=True)
class FastPath:
    """The resolved switches for one run, and the helpers the loop calls."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    channels_last: bool = False  # both nets (and the real batches)
    compile: str = "off"
    d_channels_last: bool = False  # D (and the real batches it judges) channels_last even where G is not

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Autocast to bf16 for forward passes when enabled; a no-op in fp32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A real image batch ``[N, C, H, W]`` in the memory format D uses."""
        if (self.channels_last or self.d_channels_last) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, net: nn.Module, *, d: bool = False) -> nn.Module:
        """Move a net's 4-d weights to channels_last when enabled for it (``d``: the discriminator; in
        place, parameters stay the same), and have its reshapes to images produce channels_last
        activations to match them."""
        if self.channels_last or (d and self.d_channels_last):
            net.to(memory_format=torch.channels_last)
            for m in net.modules():
                if isinstance(m, Reshape):
                    m.channels_last = True
        return net

    def compiled(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``fn`` through torch.compile in the chosen mode, or unchanged when off.

        The compiled function shares the module's parameters, so checkpoints and optimizers
        see the same tensors; only the forward call is replaced.
        """
        if self.compile == "off":
            return fn
        return torch.compile(fn, mode=None if self.compile == "default" else self.compile, dynamic=False)

    def describe(self) -> str:
        name = "bf16 autocast" if self.dtype == torch.bfloat16 else "fp32"
        if self.channels_last:
            parts = [name, "channels_last"]
        else:
            parts = [name, "channels_last D, contiguous G" if self.d_channels_last else "contiguous"]
        if self.compile != "off":
            parts.append(f"torch.compile({self.compile})")
        parts.append(f"{torch.get_num_threads()} threads" if self.device.type == "cpu" else self.device.type)
        return ", ".join(parts)


def fast_path(*, precision: str, channels_last: bool | None, compile: str, device: torch.device,
              nets: tuple[nn.Module, ...] = (), d: nn.Module | None = None) -> FastPath:
    """Resolve the config's speed switches for ``device`` and ``nets`` (none given: taken as convolutional);
    ``d``, the discriminator among them, may get a layout of its own under ``auto``."""
    if compile not in COMPILE_MODES:
        raise GankitError(f"train.compile = {compile!r}; choose one of {', '.join(COMPILE_MODES)}")
    dtype = resolve_precision(precision, device, convolutional=not nets or has_convolutions(*nets))
    both = resolve_channels_last(channels_last, device, dtype)
    d_alone = channels_last is None and not both and d is not None and d_channels_last_pays(d, device, dtype)
    return FastPath(device=device, dtype=dtype, channels_last=both, compile=compile, d_channels_last=d_alone)


@contextlib.contextmanager
def deterministic_kernels(on: bool) -> Iterator[None]:
    """While inside: PyTorch's deterministic kernels when ``on`` (``train.deterministic``); the caller's
    settings afterwards.

    An op with no deterministic kernel on the device then raises a GankitError that names it. cuBLAS
    needs a fixed workspace for repeatable sums (``CUBLAS_WORKSPACE_CONFIG``, read when its first handle
    is made), so it is set unless the user set it, and unset again afterwards (the handle keeps it).
    """
    if not on:
        yield
        return
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    set_workspace = "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    except RuntimeError as exc:
        if "deterministic" not in str(exc):
            raise
        raise GankitError(f"train.deterministic = true, but an op has no deterministic kernel on this device "
                          f"({first_line(exc)}); train with train.deterministic = false (the default), or "
                          "without the feature that uses it") from None
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
        if set_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
