"""Animations with Pillow (GIF) and, when ``imageio-ffmpeg`` is installed, MP4.

Seed 001's evolution: the fixed-noise grids a run saves as it trains (RUN/samples/step-NNNNNNNN.png)
become one animated GIF, captioned with the step, and a still strip of a few of them.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gankit.data.files import atomic_write_bytes
from gankit.errors import GankitError, first_line
from gankit.viz.judge import _font

_STEP = re.compile(r"step-(\d+)\.png$")
GIF_MIN_MS = 20  # browsers show GIF frames shorter than 20 ms (delay 0 or 1 centisecond) at 100 ms
GIF_MAX_MS = 655_350  # a GIF frame's delay is a 16-bit count of centiseconds: at most 655.35 s


def sample_frames(samples_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every saved sample grid in ``samples_dir``, in step order."""
    folder = Path(samples_dir)
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.png") if (m := _STEP.search(p.name))]
    return sorted(found)


def captioned(image: Image.Image, caption: str) -> Image.Image:
    """``image`` above a white band with ``caption`` in black (RGB)."""
    size = max(11, min(18, image.width // 20))
    band = size + 8
    out = Image.new("RGB", (image.width, image.height + band), "white")
    out.paste(image.convert("RGB"), (0, 0))
    ImageDraw.Draw(out).text((4, image.height + 3), caption, fill=(0, 0, 0), font=_font(size))
    return out


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``, always with the first and the last."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n - 1]


def gif_bytes(frames: Sequence[Image.Image], *, durations: Sequence[int] | int, loop: int = 0) -> bytes:
    """An animated GIF of ``frames`` (all the same size); ``durations`` in ms, per frame or one for all.

    Durations are rounded to the GIF's centiseconds and kept at or above 20 ms, the shortest delay
    browsers honour. Equal frames in a row become one frame shown for their summed time (Pillow would
    merge them anyway); a GIF cannot show one for longer than 655.35 s, which is a clear error.
    """
    if not frames:
        raise GankitError("no frames to animate")
    if isinstance(durations, int):
        durations = [durations] * len(frames)
    durations = [max(GIF_MIN_MS, 10 * round(d / 10)) for d in durations]
    grey = all(f.mode == "L" for f in frames)
    conv: list[Image.Image] = []
    shown: list[int] = []
    for f, d in zip([f if grey else f.convert("RGB") for f in frames], durations, strict=True):
        if conv and f.size == conv[-1].size and f.tobytes() == conv[-1].tobytes():
            shown[-1] += d
        else:
            conv.append(f)
            shown.append(d)
    if max(shown) > GIF_MAX_MS:
        raise GankitError(f"a GIF can show one picture for at most {GIF_MAX_MS / 1000:g} s, and this animation "
                          f"holds one for {max(shown) / 1000:g} s: give a shorter --hold or a higher --fps, or "
                          "write an MP4")
    durations = shown
    buf = io.BytesIO()
    conv[0].save(buf, format="GIF", save_all=True, append_images=list(conv[1:]), duration=list(durations),
                 loop=loop, optimize=False, disposal=1)
    return buf.getvalue()


def write_gif(path: str | Path, frames: Sequence[Image.Image], *, durations: Sequence[int] | int,
              loop: int = 0) -> Path:
    """:func:`gif_bytes` written atomically to ``path``."""
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, durations=durations, loop=loop))
    return path


def mp4_available() -> bool:
    """True when the optional ``imageio-ffmpeg`` encoder is installed."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def check_timing(fps: float, hold: float) -> None:
    """A clear error for frame rates and hold times an animation cannot use (NaN, infinite, absurd)."""
    if not (math.isfinite(fps) and 0.01 <= fps <= 1000):
        raise GankitError(f"--fps must be between 0.01 and 1000 frames a second, got {fps}")
    if not (math.isfinite(hold) and 0 <= hold <= 3600):
        raise GankitError(f"--hold must be between 0 and 3600 seconds, got {hold}")


def write_mp4(path: str | Path, frames: Sequence[Image.Image], *, fps: float) -> Path:
    """An H.264 MP4 through ``imageio-ffmpeg`` (``pip install imageio-ffmpeg``, the ``video`` extra)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise GankitError("MP4 needs the optional encoder: pip install 'gankit[video]' (imageio-ffmpeg)") from None
    path = Path(path)
    w, h = frames[0].size
    W, H = w + w % 2, h + h % 2  # yuv420p wants even sides: pad one white column/row where needed
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(tmp), (W, H), fps=fps, codec="libx264", macro_block_size=1,
                                         ffmpeg_log_level="error", output_params=["-crf", "18"])
    try:
        writer.send(None)
        try:
            for f in frames:
                canvas = Image.new("RGB", (W, H), "white")
                canvas.paste(f.convert("RGB"), (0, 0))
                writer.send(np.ascontiguousarray(np.asarray(canvas)).tobytes())
        finally:
            writer.close()
        tmp.replace(path)
    except BaseException as exc:  # an interrupt or a failed encoder leaves no half-written video behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError | RuntimeError):
            raise GankitError(f"could not encode {path} with ffmpeg: {first_line(exc)}") from None
        raise
    return path


def evolution_frames(samples_dir: str | Path, *, max_frames: int | None = None,
                     max_side: int | None = None) -> list[Image.Image]:
    """The saved sample grids as captioned frames (``max_frames`` spread evenly; ``max_side`` shrinks)."""
    found = sample_frames(samples_dir)
    if max_frames:
        found = [found[i] for i in spread(len(found), max_frames)]
    loaded = []
    for step, p in found:
        try:
            with Image.open(p) as im:
                loaded.append((step, im.convert("RGB")))
        except OSError as exc:  # a damaged grid costs its frame, not the animation
            warnings.warn(f"{p}: skipped, not a readable picture ({exc})", stacklevel=2)
    if not loaded:
        raise GankitError(f"{samples_dir}: no readable sample grids (step-NNNNNNNN.png) to animate")
    size = loaded[-1][1].size
    frames = []
    for step, im in loaded:
        if im.size != size:  # a grid of another size (e.g. a changed sample_grid after resume)
            im = im.resize(size, Image.Resampling.NEAREST)
        if max_side and max(size) > max_side:
            f = max_side / max(size)
            im = im.resize((round(size[0] * f), round(size[1] * f)), Image.Resampling.LANCZOS)
        frames.append(captioned(im, f"step {step:,}"))
    return frames


def evolution_strip(samples_dir: str | Path, *, k: int = 8, thumb: int = 256) -> Image.Image:
    """A still: ``k`` sample grids spread over the run, side by side, each at most ``thumb`` px, captioned."""
    frames = evolution_frames(samples_dir, max_frames=k, max_side=thumb)
    gap = 6
    w = sum(f.width for f in frames) + gap * (len(frames) + 1)
    h = max(f.height for f in frames) + 2 * gap
    strip = Image.new("RGB", (w, h), "white")
    x = gap
    for f in frames:
        strip.paste(f, (x, gap))
        x += f.width + gap
    return strip


def animate_run(run_dir: str | Path, *, out: str | Path | None = None, fps: float = 5.0, hold: float = 2.0,
                mp4: bool | None = None, strip: int = 8) -> list[Path]:
    """``gankit animate``: RUN/evolution.gif (or ``out``), the strip beside it, and an MP4 when possible.

    ``hold`` seconds on the last frame; ``mp4``: None = when imageio-ffmpeg is installed.
    """
    from gankit.viz.grid import save_image

    check_timing(fps, hold)
    run = Path(run_dir)
    if not (run / "config.toml").exists():
        raise GankitError(f"{run} is not a gankit run directory (no config.toml)")
    gif = Path(out) if out else run / "evolution.gif"
    if gif.suffix.lower() != ".gif":
        raise GankitError(f"--out {gif}: give a .gif file name (the MP4 and the strip are written beside it)")
    frames = evolution_frames(run / "samples")
    ms = round(1000 / fps)
    written = [write_gif(gif, frames, durations=[ms] * (len(frames) - 1) + [max(ms, round(1000 * hold))])]
    written.append(save_image(evolution_strip(run / "samples", k=strip), gif.with_name(gif.stem + "-strip.png")))
    if mp4 or (mp4 is None and mp4_available()):
        hold_frames = max(1, round(hold * fps))
        written.append(write_mp4(gif.with_suffix(".mp4"), frames + [frames[-1]] * (hold_frames - 1), fps=fps))
    return written
