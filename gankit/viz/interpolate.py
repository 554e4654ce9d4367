"""Seed 003's conditional pictures and latent walks for any generator.

* class interpolation: the label input is a mixture ``(1 - t) * onehot(a) + t * onehot(b)``, with
  t = 0, 1/9, ..., 1 across the columns and one noise vector per row (the seed's ``randn / 2``);
* class scaling: one class's input alone, scaled from 0 to 9/4 (the seed's ``target[4] = n / 4``);
* latent interpolation: spherical, between two seeded noise vectors per row;
* the digital clock: digits whose label input cross-fades to the next digit with the seed's easing
  ``0.5 - cos(pi * k / 60) / 2`` over 60 frames, with zero noise, as the seed's clock loop does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gankit.data import to_uint8
from gankit.errors import GankitError
from gankit.sample import LoadedGenerator
from gankit.train.build import sample_noise, value_range
from gankit.viz.grid import default_scale, make_grid, save_image

FADE_FRAMES = 60  # the seed's frames per digit change
MINUTES_A_DAY = 24 * 60  # the most minutes a clock shows: after a day its displays repeat


def ease(k: int | np.ndarray, frames: int = FADE_FRAMES) -> np.ndarray:
    """The seed's cosine easing: 0 at k = 0, rising smoothly towards 1 at k = frames."""
    return 0.5 - np.cos(np.pi * np.asarray(k, dtype=np.float64) / frames) / 2


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``z0`` and ``z1`` ``[R, d]`` at fractions ``t`` ``[S]``.

    Returns ``[R, S, d]``; exactly ``z0`` at t = 0 and ``z1`` at t = 1; linear where they are parallel.
    """
    a, b = z0.double(), z1.double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))[:, None]  # [R, 1]
    tt = t.double()[None, :]  # [1, S]
    so = torch.sin(omega)
    parallel = so.abs() < 1e-6
    wa = torch.where(parallel, 1 - tt, torch.sin((1 - tt) * omega) / torch.where(parallel, 1.0, so))
    wb = torch.where(parallel, tt, torch.sin(tt * omega) / torch.where(parallel, 1.0, so))
    return (wa[..., None] * a[:, None, :] + wb[..., None] * b[:, None, :]).to(z0.dtype)


def render(lg: LoadedGenerator, z: torch.Tensor, labels: torch.Tensor | None, *, batch: int = 500) -> torch.Tensor:
    """G's images (uint8 ``[N, C, H, W]``) for noise ``z`` and labels: indices ``[N]`` or mixtures ``[N, K]``."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(z), batch):
            y = labels[i : i + batch].to(lg.device) if labels is not None else None
            out.append(to_uint8(lg.G(z[i : i + batch].to(lg.device), y), value_range=value_range(lg.cfg.model)).cpu())
    return torch.cat(out)


def _need_conditional(lg: LoadedGenerator, what: str, *, latent_hint: bool = True) -> None:
    if not lg.cfg.model.conditional:
        hint = ", or `gankit interpolate --latent` for any generator" if latent_hint else ""
        raise GankitError(f"{what} feeds class labels to the generator: this run's generator is not conditional "
                          f"(try a conditional preset such as seed003-cgan-mnist{hint})")


def _row_noise(lg: LoadedGenerator, rows: int, seed: int, factor: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sample_noise(rows, lg.cfg.model, device=torch.device("cpu"), generator=gen) * factor


def class_interpolation(lg: LoadedGenerator, a: int, b: int, *, steps: int = 10, rows: int = 10,
                        seed: int = 0) -> torch.Tensor:
    """Images ``[rows, steps, C, H, W]``: label mixtures from class ``a`` to ``b``, one noise per row.

    The noise is halved, as in the seed (``np.random.randn(batch_size, 2) / 2``).
    """
    _need_conditional(lg, "class interpolation")
    k = lg.info.num_classes
    t = torch.linspace(0, 1, steps)  # [S]: n / 9 for the seed's 10 steps
    mix = torch.zeros(steps, k)
    mix[:, a] += 1 - t
    mix[:, b] += t
    z = _row_noise(lg, rows, seed, 0.5).repeat_interleave(steps, 0)  # [R * S, d]
    return render(lg, z, mix.repeat(rows, 1)).reshape(rows, steps, *lg_shape(lg))


def class_scaling(lg: LoadedGenerator, c: int, *, steps: int = 10, top: float = 2.25, rows: int = 10,
                  seed: int = 0) -> torch.Tensor:
    """Images ``[rows, steps, C, H, W]``: only class ``c``'s input, scaled from 0 to ``top`` (seed: n / 4)."""
    _need_conditional(lg, "class scaling")
    mix = torch.zeros(steps, lg.info.num_classes)
    mix[:, c] = torch.linspace(0, top, steps)
    z = _row_noise(lg, rows, seed).repeat_interleave(steps, 0)
    return render(lg, z, mix.repeat(rows, 1)).reshape(rows, steps, *lg_shape(lg))


def latent_interpolation(lg: LoadedGenerator, *, steps: int = 10, rows: int = 8, seed: int = 0,
                         classes: list[int] | None = None) -> torch.Tensor:
    """Images ``[rows, steps, C, H, W]``: per row, a spherical path between two seeded noise vectors.

    Row r goes from the noise of seed ``seed + 2r`` to that of ``seed + 2r + 1``. Uniform noise (seed 001)
    is interpolated linearly instead: its cube is convex, and a spherical path can leave it.
    Conditional generators draw row r's class from ``classes`` (default: all classes in turn).
    """
    d = lg.cfg.model.latent_dim
    z0 = torch.stack([_row_noise(lg, 1, seed + 2 * r)[0] for r in range(rows)])  # [R, d]
    z1 = torch.stack([_row_noise(lg, 1, seed + 2 * r + 1)[0] for r in range(rows)])
    t = torch.linspace(0, 1, steps)
    if lg.cfg.model.noise == "uniform":
        path = z0[:, None] * (1 - t)[None, :, None] + z1[:, None] * t[None, :, None]
    else:
        path = slerp(z0, z1, t)  # [R, S, d]
    labels = None
    if lg.cfg.model.conditional:
        pool = classes or list(lg.classes)
        labels = torch.tensor([pool[r % len(pool)] for r in range(rows)]).repeat_interleave(steps)
    elif classes:
        raise GankitError("this run's generator is not conditional: --class does not apply")
    return render(lg, path.reshape(-1, d), labels).reshape(rows, steps, *lg_shape(lg))


def lg_shape(lg: LoadedGenerator) -> tuple[int, int, int]:
    return lg.info.channels, lg.info.resolution, lg.info.resolution


def write_table(images: torch.Tensor, out: str | Path, *, fps: float = 10.0) -> Path:
    """``[R, S, C, H, W]`` as a grid (.png/.jpg: rows x steps) or an animation over the steps (.gif/.mp4,
    going there and back)."""
    from gankit.viz.animate import write_gif, write_mp4

    out = Path(out)
    rows, steps = images.shape[:2]
    scale = default_scale(images.shape[-1])
    suffix = out.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        return save_image(make_grid(images.reshape(-1, *images.shape[2:]), nrow=steps, scale=scale), out)
    if suffix not in (".gif", ".mp4"):
        raise GankitError(f"--out {out}: use .png, .jpg, .gif or .mp4")
    ncol = max(1, math.ceil(math.sqrt(rows)))
    frames = [make_grid(images[:, s], nrow=ncol, scale=scale) for s in range(steps)]
    frames = frames + frames[-2:0:-1]  # there and back, so the loop has no jump
    if suffix == ".gif":
        return write_gif(out, frames, durations=round(1000 / fps))
    return write_mp4(out, frames, fps=fps)


# ---- the digital clock ----------------------------------------------------------------------------------

def digit_classes(lg: LoadedGenerator) -> list[int]:
    """Class index of each digit 0-9 (the clock needs a generator conditioned on digits, trained on all ten)."""
    _need_conditional(lg, "the clock", latent_hint=False)
    names = list(lg.info.class_names)
    missing = [str(d) for d in range(10) if str(d) not in names]
    if missing:
        raise GankitError(f"the clock needs a generator conditioned on the digits 0-9; {lg.info.name}'s classes "
                          f"lack {', '.join(missing)}")
    untrained = [str(d) for d in range(10) if names.index(str(d)) not in lg.classes]
    if untrained:
        raise GankitError(f"the clock needs a generator trained on the digits 0-9; this run's training images "
                          f"({lg.cfg.data.dataset}) held no {', '.join(untrained)}")
    return [names.index(str(d)) for d in range(10)]


def parse_time(text: str) -> int:
    """``HH:MM`` (24-hour) to minutes after midnight."""
    try:
        h, m = (int(p) for p in text.split(":"))
    except ValueError:
        raise GankitError(f"--time {text!r}: give the time as HH:MM, e.g. 12:34") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise GankitError(f"--time {text!r}: hours 00-23, minutes 00-59")
    return 60 * h + m


def parse_count(text: str) -> list[int]:
    """``A-B`` (digits, A < B) to the digits A..B the loop counts through."""
    try:
        a, b = (int(p) for p in text.split("-"))
    except ValueError:
        raise GankitError(f"--count {text!r}: give two digits as A-B, e.g. 0-9") from None
    if not (0 <= a < b <= 9):
        raise GankitError(f"--count {text!r}: digits 0-9, the first below the second")
    return list(range(a, b + 1))


def _clock_digits(minutes: int) -> list[int]:
    h, m = divmod(minutes % 1440, 60)
    return [h // 10, h % 10, m // 10, m % 10]


def fade_labels(before: list[int], after: list[int], classes: list[int], k: int, num_classes: int) -> torch.Tensor:
    """Label mixtures ``[P, K]`` for frame ``k`` of a fade: each position from ``before`` towards ``after``
    (digits; ``classes`` maps a digit to its class index)."""
    e = float(ease(k))
    mix = torch.zeros(len(before), num_classes)
    for p, (a, b) in enumerate(zip(before, after)):
        mix[p, classes[a]] += 1.0 - e
        mix[p, classes[b]] += e  # the same digit on both sides: a pure one-hot all along
    return mix


def fade_sequence(displays: list[list[int]], classes: list[int], num_classes: int,
                  frames: int = FADE_FRAMES) -> torch.Tensor:
    """Label mixtures ``[F, P, K]``: each display shown, then faded into the next over ``frames`` frames."""
    out = []
    for before, after in zip(displays, displays[1:]):
        out += [fade_labels(before, after, classes, k, num_classes) for k in range(frames)]
    out.append(fade_labels(displays[-1], displays[-1], classes, 0, num_classes))
    return torch.stack(out)


def clock_frames(lg: LoadedGenerator, mixes: torch.Tensor, *, colon: bool, zoom: int = 4) -> list[Image.Image]:
    """Render mixtures ``[F, P, K]`` with zero noise (the seed's), digits side by side, a colon in the middle."""
    n_frames, positions, _ = mixes.shape
    z = torch.zeros(n_frames * positions, lg.cfg.model.latent_dim)
    imgs = render(lg, z, mixes.reshape(n_frames * positions, -1))  # [F * P, C, H, W]
    imgs = imgs.reshape(n_frames, positions, *imgs.shape[1:])
    c, h, w = imgs.shape[2:]
    frames = []
    for f in range(n_frames):
        parts = [imgs[f, p] for p in range(positions)]
        if colon:
            sep = torch.zeros(c, h, max(4, w // 3), dtype=torch.uint8)
            dot = max(2, h // 9)
            x0 = (sep.shape[2] - dot) // 2
            for y0 in (h // 3 - dot // 2, 2 * h // 3 - dot // 2):
                sep[:, y0 : y0 + dot, x0 : x0 + dot] = 255
            parts = parts[:2] + [sep] + parts[2:]
        row = torch.cat(parts, dim=2)  # [C, H, W_total]
        frames.append(make_grid(row[None], pad=0, scale=zoom))
    return frames


def clock(lg: LoadedGenerator, *, start: str | None = None, count: str | None = None, minutes: int = 1,
          ) -> tuple[list[Image.Image], list[int]]:
    """Frames of the clock (``start`` HH:MM, fading through ``minutes`` changes) or of the digit loop
    (``count`` A-B: A, A+1, ..., B and back to A, as the seed's 600-frame 0-9 loop), and the index of each
    frame that shows a settled display (to be held longer)."""
    classes = digit_classes(lg)
    if count is not None:
        digits = parse_count(count)
        displays = [[d] for d in digits] + [[digits[0]]]
        colon = False
    else:
        if not 0 < minutes <= MINUTES_A_DAY:
            raise GankitError(f"--minutes must be 1 to {MINUTES_A_DAY} (a day: the clock comes round again), "
                              f"got {minutes}")
        t0 = parse_time("12:34" if start is None else start)  # an empty --time is an error, not the default
        displays = [_clock_digits(t0 + i) for i in range(minutes + 1)]
        colon = True
    mixes = fade_sequence(displays, classes, lg.info.num_classes)
    settled = list(range(0, len(mixes), FADE_FRAMES))
    frames = clock_frames(lg, mixes, colon=colon)
    if count is not None:
        frames, settled = frames[:-1], settled[:-1]  # the loop's last display is its first: GIF loops to it
    return frames, settled


def write_clock(frames: list[Image.Image], settled: list[int], out: str | Path, *, fps: float = 50.0,
                hold: float = 1.0) -> Path:
    """The clock as .gif or .mp4: fades at ``fps`` (GIF: at most 50), settled displays held ``hold`` s."""
    from gankit.viz.animate import write_gif, write_mp4

    out = check_clock_out(out, fps=fps, hold=hold)
    if out.suffix.lower() == ".gif":
        ms = max(20, round(1000 / fps))
        durations = [max(ms, round(1000 * hold)) if i in settled else ms for i in range(len(frames))]
        return write_gif(out, frames, durations=durations)
    if out.suffix.lower() == ".mp4":
        extra = max(0, round(hold * fps) - 1)
        seq = [f for i, fr in enumerate(frames) for f in [fr] * (1 + (extra if i in settled else 0))]
        return write_mp4(out, seq, fps=fps)
    raise AssertionError(out)  # check_clock_out allows only these two


def check_clock_out(out: str | Path, *, fps: float, hold: float) -> Path:
    """The clock's output file name and timing, checked before any frame is made (a clear error if wrong)."""
    from gankit.viz.animate import check_timing

    out = Path(out)
    check_timing(fps, hold)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise GankitError(f"--out {out}: give a .gif or .mp4 file name")
    return out
