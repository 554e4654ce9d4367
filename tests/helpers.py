"""Small builders the tests share: synthetic IDX datasets and tiny configs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from gankit import config as C
from gankit.data.idx import write_idx


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(write_idx(array)))
    return path


def fake_mnist(root: Path, *, folder: str = "mnist", n_train: int = 50, n_test: int = 20, seed: int = 0,
               prefix: str = "") -> Path:
    """An MNIST-layout folder of random 28x28 digits with labels 0..9."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx_gz(root / folder / f"{prefix}{split}-images-idx3-ubyte.gz",
                     rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx_gz(root / folder / f"{prefix}{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return root


# mnist-best without its self-conditioning (for pieces that exclude it, such as PacGAN)
UNCLUSTERED = ["model.clusters=0", "model.g.label_input=false", "model.d.classifier=false"]


def tiny_overrides(steps: int = 6) -> list[str]:
    """Overrides that make any preset a seconds-long run."""
    # one thread: tiny nets spend more time synchronising threads than computing
    return [f"train.steps={steps}", "train.threads=1", "train.tensorboard=false", "train.log_every=2",
            "train.sample_every=3", "train.checkpoint_every=3",
            "train.sample_grid=4", "data.limit=256", "data.batch_size=4", "train.g_batch_size=4",
            "schedule.every=2", "schedule.max_phase_steps=2", "schedule.val_size=8"]


def data_overrides(preset: str, shared: Path) -> list[str]:
    """A small real dataset that fits the preset's nets: the embedded MNIST set for 28x28 grey nets
    (EMNIST has no offline copy), the shared Fashion-MNIST and CIFAR-10 files for the others."""
    cfg = C.build(preset)
    name = cfg.data.dataset.split(":")[0]
    if name in ("mnist", "emnist-letters", "emnist-byclass", "emnist-byclass-letters"):
        return ["data.dataset='mnist-demo'"]
    folder = "mnist" if name == "stacked-mnist" else name  # Stacked MNIST is built from the MNIST files
    if not (shared / folder).exists():
        pytest.skip(f"{name} not found in {shared}")
    return [f"data.root='{shared}'"]


def narrow_overrides(preset: str) -> list[str]:
    """Width 8 for the width-parametrised nets (dcgan, resnet): the preset's structure at a test's cost."""
    model = C.build(preset).model
    return [f"model.{side}.width=8" for side in ("g", "d")
            if getattr(model, side).arch in ("dcgan", "resnet")]


def tiny_config(preset: str, shared: Path, steps: int = 6, extra: list[str] = ()) -> C.Config:
    """``preset`` on a small slice of fitting real data, a few steps long."""
    return C.build(preset, overrides=[*tiny_overrides(steps), *data_overrides(preset, shared),
                                      *narrow_overrides(preset), *extra])
