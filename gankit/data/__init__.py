"""Datasets by name, loaded into memory as uint8 tensors.

``load_dataset("cifar10:ship", split="train+test")`` is seed 004's 6000 ships;
``load_dataset("folder:~/pics", resolution=64)`` any folder or archive of images.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gankit import registry
from gankit.data import cifar, sources  # noqa: F401  (registers the loaders)
from gankit.data.dataset import Dataset, DatasetInfo, to_float, to_uint8
from gankit.data.files import data_root
from gankit.data.folder import load_folder
from gankit.data.sampler import BatchSampler
from gankit.errors import GankitError

__all__ = ["BatchSampler", "Dataset", "DatasetInfo", "dataset_names", "describe", "load_dataset", "parse_spec",
           "resolve_classes", "to_float", "to_uint8"]


def dataset_names() -> list[str]:
    """Every dataset name (``folder:PATH`` aside)."""
    return registry.names("dataset")


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """``"cifar10:ship,8"`` -> ``("cifar10", ["ship", "8"])``; ``"folder:PATH"`` -> ``("folder", [PATH])``."""
    if spec.startswith("folder:"):
        return "folder", [spec[len("folder:"):]]
    name, _, filt = spec.partition(":")
    return name, [c.strip() for c in filt.split(",") if c.strip()] if filt else []


def resolve_classes(requested: list[str], class_names: tuple[str, ...], *, dataset: str) -> list[int]:
    """Class names or numbers to label indices, with a clear error for unknown ones.

    A name wins over a number: in a folder dataset whose classes are folders named 0, 1, 2 and 10
    (sorted as text: 0, 1, 10, 2), ``2`` is the folder named 2, not the third class. A number that
    names no class is a position in the class list.
    """
    out = []
    lowered = [c.lower() for c in class_names]
    for c in requested:
        if c in class_names:
            out.append(class_names.index(c))
        elif c.lower() in lowered:
            out.append(lowered.index(c.lower()))
        elif c.isascii() and c.isdigit() and int(c) < len(class_names):  # not "²" or "٣"
            out.append(int(c))
        else:
            from gankit.errors import did_you_mean

            raise GankitError(f"dataset {dataset!r} has no class {c!r}{did_you_mean(c, class_names)}; "
                              f"classes: {', '.join(class_names)} (or 0..{len(class_names) - 1})")
    return out


# What each named dataset is, known without reading its files (for --dry-run and help texts).
_INFO = {
    "mnist": (28, 1, sources.MNIST_CLASSES),
    "mnist-demo": (28, 1, sources.MNIST_CLASSES),
    "fashion-mnist": (28, 1, sources.FASHION_CLASSES),
    "emnist-letters": (28, 1, sources.LETTERS_CLASSES),
    "emnist-byclass": (28, 1, sources.BYCLASS_CLASSES),
    "emnist-byclass-letters": (28, 1, sources.BYCLASS_CLASSES[10:]),
    "cifar10": (32, 3, cifar.CLASSES),
    "stacked-mnist": (28, 3, tuple(f"{i:03d}" for i in range(1000))),
}


def files_state(name: str, root: Path) -> str:
    """Whether a named dataset's files are under ``root``: ``present`` (every file of both splits),
    ``partial`` (some of them), ``absent``, or ``embedded`` (the demo set ships with gankit)."""
    if name == "mnist-demo":
        return "embedded"
    if name in ("cifar10",):
        folder = root / "cifar10"
        batches = folder / "cifar-10-batches-py"
        whole = [folder / cifar.PYTHON_ARCHIVE.name, folder / cifar.JPEG_ARCHIVE.name]
        if any(f.is_file() for f in whole) or all((batches / b).is_file() for bs in cifar.SPLIT_BATCHES.values()
                                                  for b in bs):
            return "present"
        trees = [folder / "cifar-10-images-jpg", folder]
        some = batches.is_dir() or any((t / part).is_dir() for t in trees for part in ("train", "test"))
        return "partial" if some else "absent"
    if name.startswith("emnist"):
        subset = "letters" if name == "emnist-letters" else "byclass"
        names = [f"emnist-{subset}-{p}-{k}-idx{3 if k == 'images' else 1}-ubyte.gz"
                 for p in ("train", "test") for k in ("images", "labels")]
        folders = [root / "emnist", root / "emnist" / "gzip"]
    else:
        specs = sources.FASHION_FILES if name == "fashion-mnist" else sources.MNIST_FILES
        names = [spec.name for spec in specs.values()]
        folders = [root / ("fashion-mnist" if name == "fashion-mnist" else "mnist")]
    found = max(sum((f / n).is_file() for n in names) for f in folders)
    return "present" if found == len(names) else "partial" if found else "absent"


def describe(spec: str, *, resolution: int | None = None, channels: int | None = None) -> DatasetInfo | None:
    """A dataset's metadata without loading it; None for ``folder:`` datasets (read them to know)."""
    name, args = parse_spec(spec)
    if name == "folder":
        if resolution is None or channels is None:
            return None
        return DatasetInfo(name=spec, resolution=resolution, channels=channels, class_names=("all",))
    registry.get("dataset", name)
    res, ch, classes = _INFO[name]
    # the checks load_dataset makes, so a dry run refuses what training would
    if args:
        resolve_classes(args, classes, dataset=name)
    for what, asked, actual in (("resolution", resolution, res), ("channels", channels, ch)):
        if asked is not None and asked != actual:
            raise GankitError(f"dataset {name!r} has {what} {actual}; data.{what}={asked} does not match (leave it "
                              "unset)")
    return DatasetInfo(name=name, resolution=res, channels=ch, class_names=classes)


def load_dataset(spec: str, *, root: str | Path | None = None, split: str = "train", verify: bool = True,
                 resolution: int | None = None, channels: int | None = None, limit: int | None = None,
                 stacked_size: int | None = None, stacked_seed: int = 0) -> Dataset:
    """Load a dataset by name into memory.

    ``spec`` is a registered name, optionally with a class filter after a colon (``cifar10:ship``,
    ``mnist:0,1``), or ``folder:PATH``. ``limit`` keeps the first N images (small test slices).
    """
    name, args = parse_spec(spec)
    sources.split_parts(split)  # a clear error for an unknown split name, for folders too (which have none)
    if name == "folder":
        ds = load_folder(args[0], resolution=resolution, channels=channels)
        class_filter: list[str] = []
    else:
        loader = registry.get("dataset", name)
        class_filter = args
        kwargs: dict[str, object] = {"root": data_root(root), "split": split, "verify_files": verify}
        if name == "stacked-mnist":
            kwargs.update(size=stacked_size, seed=stacked_seed)
        if name == "cifar10" and class_filter:
            # decode only the wanted classes of the (slow) JPEG copy
            kwargs["classes"] = resolve_classes(class_filter, cifar.CLASSES, dataset=name)
        ds = loader(**kwargs)
        if resolution is not None and resolution != ds.info.resolution:
            raise GankitError(f"dataset {name!r} is {ds.info.resolution}x{ds.info.resolution}; "
                              f"data.resolution={resolution} does not match (leave it unset)")
        if channels is not None and channels != ds.info.channels:
            raise GankitError(f"dataset {name!r} has {ds.info.channels} channel(s); data.channels={channels} "
                              "does not match (leave it unset)")
    if class_filter:
        keep = resolve_classes(class_filter, ds.info.class_names, dataset=name)
        ds = ds.subset(torch.isin(ds.labels, torch.tensor(keep)))
    if limit is not None:
        if limit <= 0:
            raise GankitError(f"data.limit must be positive, got {limit}")
        ds = ds.subset(torch.arange(min(limit, len(ds))))
    if len(ds) == 0:
        raise GankitError(f"dataset {spec!r} ({split}) has no images after filtering")
    return ds
