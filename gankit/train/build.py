"""Pieces the training loop, sampling and evaluation share: device, data, nets, noise."""

from __future__ import annotations

import torch
from torch import nn

from gankit.config import Config, DataConfig, ModelConfig
from gankit.data import Dataset, DatasetInfo, load_dataset, to_float
from gankit.errors import GankitError
from gankit.nets import build_nets
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
