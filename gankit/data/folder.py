"""``folder:PATH``: any folder or archive (.tar, .tar.gz, .zip) of PNG/JPEG images.

First-level subfolders become class labels. Images are resized (shorter side) and centre-cropped
to the requested resolution. Unreadable, empty or truncated files are skipped and counted.
"""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from gankit.data.dataset import Dataset, DatasetInfo
from gankit.errors import GankitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _entries(path: Path) -> Iterator[tuple[str, bytes]]:
    """(relative posix path, bytes) of every image-named file in a folder or archive."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                yield p.relative_to(path).as_posix(), p.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES and not name.endswith("/"):
                    yield name, zf.read(name)
    elif path.is_file():
        try:
            with tarfile.open(path) as tar:
                members = sorted((m for m in tar if m.isfile()), key=lambda m: m.name)
                for m in members:
                    if PurePosixPath(m.name).suffix.lower() in IMAGE_SUFFIXES:
                        yield m.name, tar.extractfile(m).read()  # type: ignore[union-attr]
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise GankitError(f"{path}: not a readable folder, .zip, .tar or .tar.gz archive ({exc})") from None
    else:
        raise GankitError(f"folder dataset: {path} does not exist")


def _fit(im: object, resolution: int) -> object:
    """Resize the shorter side to ``resolution`` and centre-crop a square."""
    from PIL import Image

    w, h = im.size  # type: ignore[attr-defined]
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)  # type: ignore[attr-defined]
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return im.crop((left, top, left + resolution, top + resolution))  # type: ignore[attr-defined]


def _eight_bit(im: object) -> object:
    """16-bit, 32-bit and float greyscale scaled to 8 bits (Pillow's own convert("L") clips them at 255,
    which turns a 16-bit PNG white)."""
    from PIL import Image

    mode = im.mode  # type: ignore[attr-defined]
    if not (mode.startswith("I") or mode == "F"):
        return im
    arr = np.asarray(im, dtype=np.float64)
    if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0  # 0..65535 -> 0..255
    elif mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0  # floats in [0, 1]
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))  # uint8 [H, W]: mode L


def load_folder(path: str | Path, *, resolution: int | None = None, channels: int | None = None) -> Dataset:
    """Load every image under ``path`` into memory (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    decoded: list[tuple[str, object]] = []
    skipped: list[str] = []
    for name, blob in _entries(path):
        if not blob:
            skipped.append(f"{name} (empty)")
            continue
        try:
            im = Image.open(io.BytesIO(blob))
            im.load()  # decode now, so truncated files fail here rather than later
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped.append(f"{name} ({type(exc).__name__})")
            continue
        decoded.append((name, im))
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} unreadable file(s): {', '.join(skipped[:5])}"
                      + (" ..." if len(skipped) > 5 else ""), stacklevel=2)
    if not decoded:
        raise GankitError(f"{path}: no readable images found" + (f" ({len(skipped)} unreadable)" if skipped else ""))
    if channels is None:
        grey = all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for _, im in decoded)  # type: ignore[attr-defined]
        channels = 1 if grey else 3
    if channels not in (1, 3):
        raise GankitError(f"folder dataset: channels must be 1 or 3, got {channels}")
    if resolution is None:
        sizes = {im.size for _, im in decoded}  # type: ignore[attr-defined]
        if len(sizes) == 1 and (size := sizes.pop())[0] == size[1]:
            resolution = size[0]
        else:
            raise GankitError(f"{path}: images have different or non-square sizes; set data.resolution")
    # Classes: the first folder under the root. An archive often wraps everything in one top folder:
    # strip such a shared wrapper first, so its subfolders become the classes.
    paths = [PurePosixPath(n).parts for n, _ in decoded]
    while len({p[0] for p in paths}) == 1 and all(len(p) >= 3 for p in paths):
        paths = [p[1:] for p in paths]
    nested = all(len(p) >= 2 for p in paths)
    class_names = tuple(sorted({p[0] for p in paths})) if nested else ("all",)
    mode = "L" if channels == 1 else "RGB"
    images = np.empty((len(decoded), resolution, resolution, channels), dtype=np.uint8)
    labels = np.zeros(len(decoded), dtype=np.int64)
    for i, ((_, im), parts) in enumerate(zip(decoded, paths)):
        im = _eight_bit(im)
        im = im.convert("RGBA").convert(mode) if im.mode in ("P", "LA", "PA") else im.convert(mode)  # type: ignore[attr-defined]
        arr = np.asarray(_fit(im, resolution))
        images[i] = arr.reshape(resolution, resolution, channels)
        if nested:
            labels[i] = class_names.index(parts[0])
    info = DatasetInfo(name=f"folder:{path}", resolution=resolution, channels=channels, class_names=class_names)
    return Dataset(images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels=torch.from_numpy(labels),
                   info=info, files=[str(path)])
