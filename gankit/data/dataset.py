"""The in-memory dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What a dataset is: name, image geometry and classes."""

    name: str
    resolution: int
    channels: int
    class_names: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(kw_only=True)
class Dataset:
    """Images as uint8 ``[N, C, H, W]`` and int64 labels ``[N]``, with their metadata."""

    images: torch.Tensor  # [N, C, H, W] uint8
    labels: torch.Tensor  # [N] int64
    info: DatasetInfo
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.dtype == torch.int64 and self.labels.shape == (self.images.shape[0],)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_counts(self) -> list[int]:
        """How many images of each class (index = label)."""
        return torch.bincount(self.labels, minlength=self.info.num_classes).tolist()

    def subset(self, index: torch.Tensor) -> Dataset:
        """The images at ``index`` (a bool mask or integer indices), same metadata."""
        return Dataset(images=self.images[index], labels=self.labels[index], info=self.info, files=self.files)


def to_float(batch: torch.Tensor, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` to float in ``value_range`` (per batch, so memory stays uint8)."""
    lo, hi = value_range
    return batch.float().mul_((hi - lo) / 255.0).add_(lo)


def to_uint8(images: torch.Tensor, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Float images in ``value_range`` back to uint8, clamped and rounded."""
    lo, hi = value_range
    scaled = (images.detach().float() - lo) * (255.0 / (hi - lo))
    return scaled.round_().clamp_(0, 255).to(torch.uint8)
