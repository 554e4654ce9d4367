"""Image grids from uint8 tensors, with Pillow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gankit.errors import GankitError


def make_grid(images: torch.Tensor, *, nrow: int | None = None, pad: int = 2, scale: int = 1,
              pad_value: int = 255) -> Image.Image:
    """Tile uint8 images ``[N, C, H, W]`` (C = 1 or 3) into one picture, ``nrow`` per row.

    ``scale`` enlarges each image by pixel repetition (small 28x28 digits stay crisp).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"make_grid wants uint8 [N, 1|3, H, W], got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / ncol)
    hs, ws = h * scale, w * scale
    canvas = np.full((rows * (hs + pad) + pad, ncol * (ws + pad) + pad, c), pad_value, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, C]
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (hs + pad), pad + col * (ws + pad)
        canvas[y : y + hs, x : x + ws] = arr[i]
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode="L" if c == 1 else "RGB")


def default_scale(resolution: int) -> int:
    """Enlarge small images so a grid is comfortable to look at (about 64 px per image)."""
    return max(1, 64 // resolution)


def labelled_grid(images: torch.Tensor, labels: list[str], *, nrow: int | None = None, scale: int = 2) -> Image.Image:
    """A grid with a caption under each image (used for `gankit data show`)."""
    n, c, h, w = images.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / ncol)
    cap = 12
    cell_w, cell_h = w * scale + 4, h * scale + cap + 4
    canvas = Image.new("RGB", (ncol * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, col = divmod(i, ncol)
        im = make_grid(images[i : i + 1], pad=0, scale=scale).convert("RGB")
        x, y = col * cell_w + 2, r * cell_h + 2
        canvas.paste(im, (x, y))
        draw.text((x, y + h * scale), labels[i][: max(3, cell_w // 6)], fill=(0, 0, 0))
    return canvas


JPEG_MAX_SIDE = 65_500  # libjpeg's limit


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Save a picture, creating its folder, atomically (a reader never sees half a PNG)."""
    import io

    from gankit.data.files import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise GankitError(f"{path}: give a .png or .jpg file name")
    buf = io.BytesIO()
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    if fmt == "JPEG" and max(image.size) > JPEG_MAX_SIDE:  # (libjpeg's own message says only "broken data stream")
        raise GankitError(f"{path}: a JPEG can be at most {JPEG_MAX_SIDE:,} pixels on a side, and this picture is "
                          f"{image.size[0]:,} x {image.size[1]:,}; write a .png, or ask for fewer images a row")
    image.save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
    return path
