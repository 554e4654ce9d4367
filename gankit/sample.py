"""Sampling from a run directory's checkpoint, without the training code's state."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gankit.config import Config
from gankit.data import DatasetInfo, to_uint8
from gankit.data.files import atomic_write_bytes, available_memory
from gankit.errors import GankitError, first_line
from gankit.run import RunDir, latest_good_checkpoint, load_checkpoint
from gankit.train.build import make_nets, resolve_device, sample_noise, value_range
from gankit.train.speed import FastPath, fast_path, inference_batch, inference_channels_last
from gankit.viz.grid import default_scale, make_grid, save_image


@dataclass
class LoadedGenerator:
    """A generator ready to sample, with the config and dataset metadata it was trained with."""

    G: nn.Module
    cfg: Config
    info: DatasetInfo
    step: int
    device: torch.device
    D: nn.Module | None = None  # the same checkpoint's discriminator, when asked for
    weights: str = "G"  # which generator weights: "G" or "G_ema"
    # the classes it was trained on: all of info's, or those a class filter (mnist:3,5) kept
    classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes) or tuple(range(self.info.num_classes))


def load_generator(run_dir: str | Path, *, device: str = "cpu", checkpoint: str | None = None,
                   ema: bool = True, with_discriminator: bool = False) -> LoadedGenerator:
    """The generator of a run's latest good checkpoint (or of ``checkpoint``, a folder name), in eval mode.

    Runs that keep an average of G's weights (model.ema) give that average, G_ema, unless ``ema`` is False.
    ``with_discriminator`` also loads that checkpoint's D into ``.D``.
    """
    run = RunDir(run_dir)
    cfg = run.config()
    if checkpoint is not None and not checkpoint.strip():
        raise GankitError(f"--checkpoint is empty: give a folder name from {run.checkpoints}, or leave it out for "
                          "the latest good checkpoint")
    # "latest" is also the name of the pointer file beside the checkpoints: it means the newest good one
    path = run.checkpoints / checkpoint if checkpoint not in (None, "latest") else latest_good_checkpoint(run)
    if path is not None and not path.exists() and checkpoint and checkpoint.startswith("step-") \
            and checkpoint[5:].isascii() and checkpoint[5:].isdigit():
        path = run.checkpoints / f"step-{int(checkpoint[5:]):08d}"  # step-500 for step-00000500
    if path is None:
        raise GankitError(f"{run.path}: no checkpoint to sample from")
    if not path.is_dir():
        names = sorted(p.name for p in run.checkpoints.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if run.checkpoints.is_dir() else []
        raise GankitError(f"{run.path}: no checkpoint {checkpoint!r}; choose from "
                          f"{', '.join(names) if names else '(none)'}, or latest")
    weights, state = load_checkpoint(path)
    di = state["data_info"]
    info = DatasetInfo(name=di["name"], resolution=di["resolution"], channels=di["channels"],
                       class_names=tuple(di["class_names"]))
    G, D = make_nets(cfg, info)
    prefix = "G_ema." if ema and any(k.startswith("G_ema.") for k in weights) else "G."
    try:
        G.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        if with_discriminator:
            D.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("D.")})
    except RuntimeError as exc:
        raise GankitError(f"{path} does not fit {run.config_path}: {first_line(exc)} (the checkpoint was made "
                          "with other net settings)") from None
    dev = resolve_device(device)
    lg = LoadedGenerator(G=G.to(dev).eval(), cfg=cfg, info=info, step=state["step"], device=dev,
                         weights=prefix[:-1], classes=tuple(di.get("classes", ())))  # (older runs: all)
    if with_discriminator:
        lg.D = D.to(dev).eval()
    return lg


def load_discriminator(run_dir: str | Path, *, device: str = "cpu", checkpoint: str | None = None,
                       ema: bool = True) -> LoadedGenerator:
    """Like :func:`load_generator`, with the same checkpoint's discriminator in ``.D`` (eval mode)."""
    return load_generator(run_dir, device=device, checkpoint=checkpoint, ema=ema, with_discriminator=True)


def class_indices(requested: list[str], info: DatasetInfo, trained: tuple[int, ...] | None = None) -> list[int]:
    """Class names or numbers to indices for a conditional generator; a warning for any not among the
    ``trained`` classes (a run on a class filter: G was never asked for the others)."""
    from gankit.data import resolve_classes

    idx = resolve_classes(requested, info.class_names, dataset=info.name)
    untrained = [info.class_names[i] for i in dict.fromkeys(idx) if trained is not None and i not in trained]
    if untrained:
        warnings.warn(f"class {', '.join(untrained)} was not among this run's training images (it trained on "
                      f"{', '.join(info.class_names[i] for i in trained)}): G never learned to draw it", stacklevel=2)
    return idx


def check_samples_out(out: str | Path) -> Path:
    """A samples file name gankit can write (.png/.jpg grid or .npz arrays), checked before sampling."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".npz"):
        raise GankitError(f"--out {out}: use a .png, .jpg or .npz file name")
    return out


def check_room(lg: LoadedGenerator, n: int) -> None:
    """A clear error, before any work, when ``n`` images (and their noise) would not fit in the memory free now
    (a mistyped count would otherwise run until stopped, or end in the kernel's out-of-memory kill)."""
    free = available_memory()
    need = n * (lg.info.channels * lg.info.resolution**2 + 4 * lg.cfg.model.latent_dim + 8)
    if free is not None and need > free:
        size = f"{lg.info.channels}x{lg.info.resolution}x{lg.info.resolution}"
        raise GankitError(f"{n:,} images of {size} need {need / 2**30:,.1f} GiB with their noise, and "
                          f"{free / 2**30:,.1f} GiB is free; ask for fewer")


def generate(lg: LoadedGenerator, n: int, *, seed: int = 0, labels: torch.Tensor | None = None,
             batch: int | None = None, rows: tuple[int, int] | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``n`` images as uint8 ``[n, C, H, W]``, their labels (conditional) and the noise, from ``seed``.

    ``rows=(start, stop)`` makes only those images of the ``n`` (all labels and noise are still returned):
    ranks of a distributed evaluation each make their share of the same samples. ``batch``: images per
    forward pass (default: :func:`~gankit.train.speed.inference_batch`'s choice for this generator).
    """
    if n <= 0:
        raise GankitError(f"--n must be positive, got {n}")
    check_room(lg, n)
    cfg = lg.cfg
    gen = torch.Generator().manual_seed(seed)
    z = sample_noise(n, cfg.model, device=torch.device("cpu"), generator=gen)
    if cfg.model.conditional and labels is None:
        # their own stream, so that the first k of n samples are the k samples of the same seed (drawn after
        # the noise, the labels of --n 16 and --n 32 differed)
        pick = torch.randint(0, len(lg.classes), (n,), generator=torch.Generator().manual_seed(seed + 1))
        labels = torch.as_tensor(lg.classes)[pick]  # of the classes it was trained on
    elif not cfg.model.conditional and labels is not None:
        raise GankitError("this run's generator is not conditional: --class does not apply")
    out = []
    # the run's precision (bf16 autocast where the hardware has bf16 units)
    fast = fast_path(precision=cfg.train.precision, channels_last=False, compile="off", device=lg.device,
                     nets=(lg.G,))
    G = lg.G
    if inference_channels_last(G, lg.device, fast.dtype):  # a channels_last copy: lg.G stays as loaded
        G = FastPath(device=lg.device, channels_last=True).prepare(copy.deepcopy(G))
    with torch.inference_mode(), fast.autocast():
        if batch is None:
            batch = inference_batch(G, (z[:2].to(lg.device), None if labels is None else labels[:2].to(lg.device)),
                                    lg.device)
        lo, hi = rows or (0, n)
        for i in range(lo, hi, batch):
            j = min(i + batch, hi)
            zb = z[i:j].to(lg.device)
            yb = labels[i:j].to(lg.device) if labels is not None else None
            x = G(zb, yb).float()
            if not bool(torch.isfinite(x).all()):  # uint8 would turn NaN into black and score it as such
                raise GankitError(f"the generator in {lg.weights} produced NaN or infinite pixels (it has "
                                  "diverged); sample or evaluate an earlier checkpoint (--checkpoint)")
            out.append(to_uint8(x, value_range=value_range(cfg.model)).cpu())
    return torch.cat(out), labels, z


def write_samples(out: str | Path, images: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor, *,
                  resolution: int, nrow: int | None = None) -> Path:
    """A grid picture (.png/.jpg) or the arrays (.npz: images [N, H, W, C] uint8, labels, z)."""
    out = check_samples_out(out)
    if out.suffix.lower() == ".npz":
        import io

        buf = io.BytesIO()
        arrays = {"images": images.permute(0, 2, 3, 1).numpy(), "z": z.numpy()}
        if labels is not None:
            arrays["labels"] = labels.numpy().astype(np.int64)
        np.savez(buf, **arrays)
        atomic_write_bytes(out, buf.getvalue())
        return out
    return save_image(make_grid(images, nrow=nrow, scale=default_scale(resolution)), out)
