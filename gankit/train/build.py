"""Pieces the training loop, sampling and evaluation share: device, data, nets, noise."""

from __future__ import annotations

import math

import torch
from torch import nn

from gankit.config import Config, DataConfig, ModelConfig
from gankit.data import Dataset, DatasetInfo, load_dataset, to_float
from gankit.errors import GankitError
from gankit.nets import build_nets, traced_forward
from gankit.nets.selfcond import kmeans


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GankitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GankitError(f"device {name!r}, but PyTorch sees no CUDA GPU (this is a CPU build or no GPU)")
    return device


def load_training_data(cfg: DataConfig, *, root: str | None = None) -> Dataset:
    """The configured dataset (``root`` overrides data.root)."""
    return load_dataset(cfg.dataset, root=root or cfg.root, split=cfg.split, verify=cfg.verify,
                        resolution=cfg.resolution, channels=cfg.channels, limit=cfg.limit,
                        stacked_size=cfg.stacked_size, stacked_seed=cfg.stacked_seed)


def make_nets(cfg: Config, info: DatasetInfo) -> tuple[nn.Module, nn.Module]:
    """G and D for images like ``info``'s, seeded by train.seed so every run starts identically."""
    torch.manual_seed(cfg.train.seed)
    shape = (info.channels, info.resolution, info.resolution)
    return build_nets(cfg.model, image_shape=shape, num_classes=info.num_classes)


def check_setup(cfg: Config, info: DatasetInfo, G: nn.Module, D: nn.Module, *, batch: int, g_batch: int,
                classes: list[int] | None) -> None:
    """The checks of a config that need the data's description and the built nets, run before a run's
    folder is touched (and by ``train --dry-run``, which would otherwise pass a config training refuses).
    ``batch`` and ``g_batch`` are one process's real and G batches, ``classes`` the labels the training
    images hold (a class filter such as ``mnist:3`` keeps the dataset's class list; None: not known)."""
    from gankit.train.speed import batch_independent

    if cfg.model.conditional and classes is not None and len(classes) < 2:
        hint = " (put its images in one subfolder per class)" if info.name.startswith("folder:") else ""
        held = info.class_names[classes[0]] if classes else "none"
        raise GankitError(f"{cfg.name} is a conditional model (model.conditional = true), but the training images "
                          f"({cfg.data.dataset}) hold one class ({held}){hint}; train an unconditional preset on "
                          "them, or --set model.conditional=false")
    pack = cfg.model.pack
    if batch % pack or g_batch % pack:  # a packed D judges whole groups on every rank
        raise GankitError(f"each process's batches ({batch} real, {g_batch} for G) must be multiples of "
                          f"model.pack = {pack}; change data.batch_size or the number of processes")
    if (cfg.loss.gp_weight or cfg.loss.r1_gamma) and not batch_independent(D):
        raise GankitError("loss.gp_weight and loss.r1_gamma penalise the gradient at each image, and batch norm in "
                          "D mixes the images of a batch, so the penalty would be taken on the wrong gradients "
                          "(WGAN-GP, section 4): take batch norm out of D (model.d.bn = false, or the layer list)")
    # batch norm in training mode divides by the batch's spread: a layer with one value per channel and
    # image (dense features, a 1x1 map) has none at a batch of one image (one group of a packed D), and
    # PyTorch stops at the first step with "Expected more than 1 value per channel"
    smallest = {"G": min(batch, g_batch), "D": min(batch, g_batch) // pack}
    for name, net in (("G", G), ("D", D)):
        if smallest[name] < 2 and not batch_independent(net):
            flat = _single_value_norms(net, *_probe_inputs(cfg, info, name))
            if flat:
                what = "image" if name == "G" or pack == 1 else f"group of model.pack = {pack} images"
                raise GankitError(f"{name}'s batch norm {flat[0]} has one value per channel and image, so it needs "
                                  f"at least 2 images a batch, and one of its batches is one {what} ({batch} real, "
                                  f"{g_batch} for G, per process); use a larger batch")


def _probe_inputs(cfg: Config, info: DatasetInfo, net: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs for a shape-only forward pass of G or D: two images (groups), zeros (no random draws)."""
    n = 2 * (cfg.model.pack if net == "D" else 1)
    labels = torch.zeros(n, dtype=torch.long) if cfg.model.conditional or cfg.model.clusters else None
    if net == "G":
        return torch.zeros(n, cfg.model.latent_dim), labels
    return torch.zeros(n, info.channels, info.resolution, info.resolution), labels


def _single_value_norms(net: nn.Module, *inputs: torch.Tensor | None) -> list[str]:
    """The batch norm layers of ``net`` that see one value per channel of each image (their input's
    spatial size is 1), found by a forward pass in eval mode (no statistics change)."""
    found: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: found.append(name)
                                         if math.prod(args[0].shape[2:]) == 1 else None)
             for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    traced_forward(net, hooks, *inputs)
    return found


def value_range(model: ModelConfig) -> tuple[float, float]:
    """The range images live in for this model: ``model.image_range`` if set, else [-1, 1] for tanh
    and [0, 1] for sigmoid outputs."""
    if model.image_range is not None:
        low, high = model.image_range
        return (float(low), float(high))
    return (-1.0, 1.0) if model.output == "tanh" else (0.0, 1.0)


def sample_noise(n: int, model: ModelConfig, *, device: torch.device,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Latent vectors ``[n, latent_dim]``: standard normal, or uniform in [-1, 1] (seed 001)."""
    if model.noise == "normal":
        return torch.randn(n, model.latent_dim, generator=generator, device=device)
    return torch.rand(n, model.latent_dim, generator=generator, device=device).mul_(2).sub_(1)


def sample_labels(n: int, num_classes: int, *, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniformly random class labels ``[n]`` for a conditional generator."""
    return torch.randint(0, num_classes, (n,), generator=generator, device=device)


def cluster_labels(D: nn.Module, images: torch.Tensor, *, value_range: tuple[float, float],
                   chunk: int = 10_000) -> torch.Tensor:
    """Each uint8 image's cluster under a self-conditioned D's centres (converted to float a chunk at a time)."""
    parts = [D.assign(to_float(part, value_range=value_range)) for part in images.split(chunk)]
    return torch.cat(parts)


def fit_clusters(G: nn.Module, D: nn.Module, images: torch.Tensor, k: int, *, seed: int,
                 value_range: tuple[float, float], fit_on: int = 10_000) -> torch.Tensor:
    """k-means of the training images' pixels into D's centres and G's cluster sizes; the clusters.

    The centres are fitted on at most ``fit_on`` images chosen by ``seed`` (seconds on a CPU), then
    every image goes to its nearest centre.
    """
    if k > len(images):
        raise GankitError(f"model.clusters = {k} but the dataset has only {len(images)} images")
    rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:fit_on]
    # on the CPU whatever the device: a GPU's index_add_ sums in no fixed order (two runs of mnist-best on
    # an H200 fitted different centres), and the CPU gives the same clusters on every machine
    sample = to_float(images[rows.to(images.device)].cpu(), value_range=value_range)
    D.centres.copy_(kmeans(sample.flatten(1), k, seed=seed))
    labels = cluster_labels(D, images, value_range=value_range)
    G.set_sizes(torch.bincount(labels, minlength=k))
    return labels
