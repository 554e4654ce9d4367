"""Seed 000's judged grid: real and generated images side by side, each titled with D's verdict.

Titles are D's probability that the image is real (sigmoid of its logit) for the probabilistic
objectives (bce, minimax); for the others (hinge, wasserstein, lsgan) a logit is not a probability,
so the raw score is shown instead. Titles are green over real images and red over generated ones.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from gankit.data import to_float, to_uint8
from gankit.errors import GankitError
from gankit.viz.grid import default_scale, make_grid, save_image

PROBABILISTIC_LOSSES = ("bce", "minimax")  # D's logit is log(p / (1 - p)) for these
JUDGE_OFFSET = 4_000_037  # the judged grid's real images and noise come from seed + this
MAX_JUDGED = 1024  # gankit judge --n
REAL_COLOUR = (0, 140, 0)
FAKE_COLOUR = (200, 0, 0)


@dataclass
class Judged:
    """Real and generated images (uint8 ``[n, C, H, W]``) with D's verdict on each."""

    real: torch.Tensor
    real_scores: torch.Tensor  # [n] probability (or raw score) that each is real
    fake: torch.Tensor
    fake_scores: torch.Tensor
    probabilities: bool  # scores are probabilities, not raw logits
    step: int = 0


def judge(G: nn.Module, D: nn.Module, *, real: torch.Tensor, real_y: torch.Tensor | None, z: torch.Tensor,
          value_range: tuple[float, float], loss: str, step: int = 0) -> Judged:
    """D's verdict on ``real`` (uint8 ``[n, C, H, W]``) and on G's images from ``z`` (same classes).

    Both nets run in eval mode (no dropout, batch-norm running statistics) and get their modes back.
    """
    modes = (G.training, D.training)
    G.eval()
    D.eval()
    dev = next(D.parameters()).device
    try:
        with torch.inference_mode():
            x_real = to_float(real.to(dev), value_range=value_range)
            y = real_y.to(dev) if real_y is not None else None
            fake = G(z.to(dev), y)  # [n, C, H, W] in value_range
            r, f = D(x_real, y).float(), D(fake, y).float()  # [n] logits
    finally:
        G.train(modes[0])
        D.train(modes[1])
    prob = loss in PROBABILISTIC_LOSSES
    if prob:
        r, f = torch.sigmoid(r), torch.sigmoid(f)
    return Judged(real=real.cpu(), real_scores=r.cpu(), fake=to_uint8(fake, value_range=value_range).cpu(),
                  fake_scores=f.cpu(), probabilities=prob, step=step)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError):
        return ImageFont.load_default()


def title(score: float, probabilities: bool) -> str:
    """``87.3%`` for a probability, ``+1.25`` for a raw score."""
    return f"{100 * score:.1f}%" if probabilities else f"{score:+.2f}"


def judged_grid(j: Judged, *, per_row: int | None = None, scale: int | None = None) -> Image.Image:
    """A picture: real images on the left, generated on the right, each under its coloured title."""
    n = len(j.real)
    if n == 0 or len(j.fake) != n:
        raise GankitError("the judged grid needs the same positive number of real and generated images")
    _, _, h, w = j.real.shape
    scale = scale or default_scale(h)
    half = per_row or max(1, math.ceil(math.sqrt(n)))  # images per side in a row
    rows = math.ceil(n / half)
    cw, ch = w * scale, h * scale
    fsize = max(10, min(16, cw // 5))
    font = _font(fsize)
    tpad, gap, pad = fsize + 4, 24, 4
    head = fsize + 10
    side_w = half * (cw + pad)
    canvas = Image.new("RGB", (2 * side_w + gap + pad, head + rows * (ch + tpad + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    what = "D's probability that the image is real" if j.probabilities else "D's score (higher: more real)"
    draw.text((pad, 2), f"real (green)  |  generated (red)  -  {what}, step {j.step}", fill=(0, 0, 0), font=font)
    for side, (imgs, scores, colour) in enumerate(((j.real, j.real_scores, REAL_COLOUR),
                                                   (j.fake, j.fake_scores, FAKE_COLOUR))):
        x0 = pad + side * (side_w + gap)
        for i in range(n):
            r, c = divmod(i, half)
            x, y = x0 + c * (cw + pad), head + r * (ch + tpad + pad)
            text = title(float(scores[i]), j.probabilities)
            tw = draw.textlength(text, font=font)
            draw.text((x + (cw - tw) / 2, y), text, fill=colour, font=font)
            canvas.paste(make_grid(imgs[i : i + 1], pad=0, scale=scale).convert("RGB"), (x, y + tpad))
    return canvas


def fixed_judge_inputs(cfg: object, images: torch.Tensor, labels: torch.Tensor, *, n: int, seed: int,
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``n`` real images (uint8), their labels (conditional runs) and ``n`` noise vectors, all from ``seed``.

    The same seed gives the same inputs at every step, so successive judged grids compare.
    """
    from gankit.train.build import sample_noise

    gen = torch.Generator().manual_seed(seed + JUDGE_OFFSET)
    idx = torch.randperm(len(images), generator=gen)[: min(n, len(images))]
    z = sample_noise(len(idx), cfg.model, device=torch.device("cpu"), generator=gen)  # type: ignore[attr-defined]
    idx_dev = idx.to(images.device)
    real_y = labels[idx_dev].cpu() if cfg.model.conditional else None  # type: ignore[attr-defined]
    return images[idx_dev].cpu(), real_y, z


def judge_run(run_dir: str | Path, *, out: str | Path | None = None, n: int = 16, seed: int | None = None,
              checkpoint: str | None = None, root: str | None = None, device: str = "cpu") -> Path:
    """``gankit judge``: the judged grid of a run's checkpoint; returns the picture's path.

    Default ``out``: RUN/judge/step-NNNNNNNN.png. Real images come from the run's own dataset.
    """
    from gankit.run import RunDir
    from gankit.sample import load_discriminator
    from gankit.train.build import load_training_data, value_range

    if not 0 < n <= MAX_JUDGED:  # one picture of titled pairs: more would not fit a screen (or memory)
        raise GankitError(f"--n must be between 1 and {MAX_JUDGED:,} (real images, and as many generated), got {n:,}")
    lg = load_discriminator(run_dir, device=device, checkpoint=checkpoint)
    assert lg.D is not None
    data = load_training_data(lg.cfg.data, root=root)
    if len(data) < n:
        warnings.warn(f"the run's dataset has {len(data):,} images: the grid shows {len(data):,} real and as many "
                      f"generated, not {n:,}", stacklevel=2)
    real, real_y, z = fixed_judge_inputs(lg.cfg, data.images, data.labels, n=n,
                                         seed=lg.cfg.train.seed if seed is None else seed)
    j = judge(lg.G, lg.D, real=real, real_y=real_y, z=z, value_range=value_range(lg.cfg.model),
              loss=lg.cfg.loss.name, step=lg.step)
    path = Path(out) if out else RunDir(run_dir).path / "judge" / f"step-{lg.step:08d}.png"
    return save_image(judged_grid(j), path)
