"""Dataset loaders by name: MNIST, Fashion-MNIST, EMNIST, CIFAR-10, Stacked MNIST, the demo set.

Each loader is registered under its name and returns a :class:`Dataset` of uint8 images.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch

from gankit.data.dataset import Dataset, DatasetInfo
from gankit.data.files import FileSpec, find_file, read_bytes, verify
from gankit.data.idx import images_and_labels, parse_idx
from gankit.errors import GankitError
from gankit.registry import register

DEMO_DIR = Path(__file__).parent / "demo"

SPLITS = ("train", "test", "train+test")

# ---- file tables (official names; md5 of the decompressed content) -------------------------------

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _idx_specs(md5s: dict[str, str], urls: tuple[str, ...]) -> dict[str, FileSpec]:
    return {
        key: FileSpec(name=f"{key}-idx{1 if 'labels' in key else 3}-ubyte.gz", content_md5=md5,
                      urls=tuple(u + f"{key}-idx{1 if 'labels' in key else 3}-ubyte.gz" for u in urls))
        for key, md5 in md5s.items()
    }


MNIST_FILES = _idx_specs(
    {
        "train-images": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels": "a25bea736e30d166cdddb491f175f624",
        "t10k-images": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels": "27ae3e4e09519cfbb04c329615203637",
    },
    _MNIST_URLS,
)
FASHION_FILES = _idx_specs(
    {
        "train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    _FASHION_URLS,
)

EMNIST_DOWNLOAD = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
# Only the compressed files' sha256 are published for EMNIST (no copy of the content was at hand).
_EMNIST_SHA256 = {
    "emnist-letters-train-images-idx3-ubyte.gz": "6288f418a917e007bf5fddb823a2dc7a5c6a35031401b93292a539cb12bd881f",
    "emnist-letters-train-labels-idx1-ubyte.gz": "9759af91ea6bccdf07a6040fd085861f2ec88e37f7c3f5760f6feb57106fbe5c",
    "emnist-letters-test-images-idx3-ubyte.gz": "50f0e93d75b99b463e9760b8345866f22587fa2c2fba472730a5ba09c693412d",
    "emnist-letters-test-labels-idx1-ubyte.gz": "924955c31fe7fd809b7303b5c0141282955f4b8390c74cdfd5d80435e0f4b4cb",
    "emnist-byclass-train-images-idx3-ubyte.gz": "9e21987f03a6eb8b870187e785883ddad96947299587908f1a7ec2ca0f4be5f0",
    "emnist-byclass-test-images-idx3-ubyte.gz": "5ec835bd5d5b1a66378a132e727fef20fe994b3cc666899befcca5ac766f50cd",
}

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
LETTERS_CLASSES = tuple(u + u.lower() for u in string.ascii_uppercase)  # "Aa" .. "Zz": both cases, merged
BYCLASS_CLASSES = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)


def split_parts(split: str) -> tuple[str, ...]:
    """``"train+test"`` -> ``("train", "test")``; validates the split name."""
    if split not in SPLITS:
        raise GankitError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return tuple(split.split("+"))


def _load_idx_pair(folder: Path, images: FileSpec, labels: FileSpec, *, dataset: str, do_verify: bool,
                   all_specs: tuple[FileSpec, ...]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    arrays = []
    paths = []
    for spec, ndim in ((images, 3), (labels, 1)):
        path = find_file(folder, spec, dataset=dataset, all_specs=all_specs)
        content = read_bytes(path)
        if do_verify:
            verify(path, spec, content)
        arrays.append(parse_idx(content, name=str(path), expect_ndim=ndim))
        paths.append(str(path))
    images_and_labels(arrays[0], arrays[1], images_name=paths[0], labels_name=paths[1])
    if arrays[0].shape[1:] != (28, 28):  # every IDX dataset gankit names is 28x28 (checked with verify off too)
        raise GankitError(f"{paths[0]}: images are {arrays[0].shape[1]}x{arrays[0].shape[2]}; {dataset} images are "
                          "28x28. Is this the right file?")
    return arrays[0], arrays[1], paths


def _idx_dataset(*, name: str, folder: Path, files: dict[str, FileSpec], split: str, verify_files: bool,
                 class_names: tuple[str, ...]) -> Dataset:
    ims, labs, paths = [], [], []
    prefix = {"train": "train", "test": "t10k"}
    for part in split_parts(split):
        x, y, p = _load_idx_pair(folder, files[f"{prefix[part]}-images"], files[f"{prefix[part]}-labels"],
                                 dataset=name, do_verify=verify_files, all_specs=tuple(files.values()))
        if y.size and y.max() >= len(class_names):  # named by its own split's label file
            raise GankitError(f"{p[1]}: label {y.max()} out of range for {len(class_names)} classes")
        ims.append(x)
        labs.append(y)
        paths += p
    labels = np.concatenate(labs).astype(np.int64)
    images = torch.from_numpy(np.concatenate(ims)).unsqueeze(1)  # [N, 1, 28, 28]
    info = DatasetInfo(name=name, resolution=28, channels=1, class_names=class_names)
    return Dataset(images=images, labels=torch.from_numpy(labels), info=info, files=paths)


@register("dataset", "mnist")
def load_mnist(*, root: Path, split: str = "train", verify_files: bool = True, **_: object) -> Dataset:
    """MNIST handwritten digits, 28x28 grey, 10 classes (60k train, 10k test)."""
    return _idx_dataset(name="mnist", folder=root / "mnist", files=MNIST_FILES, split=split,
                        verify_files=verify_files, class_names=MNIST_CLASSES)


@register("dataset", "fashion-mnist")
def load_fashion(*, root: Path, split: str = "train", verify_files: bool = True, **_: object) -> Dataset:
    """Fashion-MNIST clothing, 28x28 grey, 10 classes (60k train, 10k test)."""
    return _idx_dataset(name="fashion-mnist", folder=root / "fashion-mnist", files=FASHION_FILES, split=split,
                        verify_files=verify_files, class_names=FASHION_CLASSES)


@register("dataset", "mnist-demo")
def load_mnist_demo(*, split: str = "train", verify_files: bool = True, **_: object) -> Dataset:
    """The MNIST 10k test split shipped inside gankit (every split name gives these 10,000 images)."""
    split_parts(split)
    ds = _idx_dataset(name="mnist-demo", folder=DEMO_DIR / "mnist", files=MNIST_FILES, split="test",
                      verify_files=verify_files, class_names=MNIST_CLASSES)
    ds.info = DatasetInfo(name="mnist-demo", resolution=28, channels=1, class_names=MNIST_CLASSES,
                          notes=("embedded copy of the MNIST test split (10,000 images)",))
    return ds


# ---- EMNIST ----------------------------------------------------------------------------------------

def _emnist(*, root: Path, subset: str, split: str, verify_files: bool, name: str,
            labels_in: tuple[int, int]) -> tuple[Dataset, list[str]]:
    """An EMNIST subset's split; every label file checked against ``labels_in`` (inclusive) on its own."""
    specs = {
        f"{part}-{kind}": FileSpec(
            name=(fname := f"emnist-{subset}-{part}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"),
            file_sha256=_EMNIST_SHA256.get(fname),
        )
        for part in ("train", "test")
        for kind in ("images", "labels")
    }
    # The official zip unpacks into a gzip/ folder; accept the files there too.
    candidates = [root / "emnist", root / "emnist" / "gzip"]
    wanted = [f"{p}-{k}" for p in split_parts(split) for k in ("images", "labels")]  # what this split reads
    folder = next((c for c in candidates if all((c / specs[k].name).exists() for k in wanted)),
                  next((c for c in candidates if any((c / specs[k].name).exists() for k in wanted)), candidates[0]))
    missing = [specs[k].name for k in wanted if not (folder / specs[k].name).exists()]
    if missing:
        raise GankitError(
            f"dataset {name!r}: EMNIST files not found in {folder}\n"
            f"  missing for the {split} split: {', '.join(missing)}\n"
            f"  all files of the dataset: {', '.join(s.name for s in specs.values())}\n"
            f"  official download: {EMNIST_DOWNLOAD} (a zip; put the .gz files from its gzip/ folder in {folder})\n"
            "  set --data-root or GANKIT_DATA to the folder that holds the dataset folders"
        )
    ims, labs, paths = [], [], []
    for part in split_parts(split):
        x, y, p = _load_idx_pair(folder, specs[f"{part}-images"], specs[f"{part}-labels"], dataset=name,
                                 do_verify=verify_files, all_specs=tuple(specs.values()))
        lo, hi = labels_in
        if y.size and (y.min() < lo or y.max() > hi):  # named by its own split's label file
            raise GankitError(f"{p[1]}: EMNIST {subset} labels must be {lo}..{hi}, found {y.min()}..{y.max()}")
        ims.append(x)
        labs.append(y)
        paths += p
    # EMNIST stores each image transposed relative to MNIST: swap H and W so letters stand upright.
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate(ims).transpose(0, 2, 1))).unsqueeze(1)
    labels = torch.from_numpy(np.concatenate(labs).astype(np.int64))
    info = DatasetInfo(name=name, resolution=28, channels=1, class_names=())
    return Dataset(images=images, labels=labels, info=info, files=paths), paths


@register("dataset", "emnist-letters")
def load_emnist_letters(*, root: Path, split: str = "train", verify_files: bool = True, **_: object) -> Dataset:
    """EMNIST letters: 26 classes, upper and lower case merged (labels 1-26 in the files, 0-25 here)."""
    ds, _ = _emnist(root=root, subset="letters", split=split, verify_files=verify_files, name="emnist-letters",
                    labels_in=(1, 26))
    labels = ds.labels - 1
    info = DatasetInfo(name="emnist-letters", resolution=28, channels=1, class_names=LETTERS_CLASSES)
    return Dataset(images=ds.images, labels=labels, info=info, files=ds.files)


@register("dataset", "emnist-byclass")
def load_emnist_byclass(*, root: Path, split: str = "train", verify_files: bool = True, **_: object) -> Dataset:
    """EMNIST byclass: 62 classes, digits 0-9, upper case A-Z, lower case a-z."""
    ds, _ = _emnist(root=root, subset="byclass", split=split, verify_files=verify_files, name="emnist-byclass",
                    labels_in=(0, 61))
    info = DatasetInfo(name="emnist-byclass", resolution=28, channels=1, class_names=BYCLASS_CLASSES)
    return Dataset(images=ds.images, labels=ds.labels, info=info, files=ds.files)


@register("dataset", "emnist-byclass-letters")
def load_emnist_byclass_letters(*, root: Path, split: str = "train", verify_files: bool = True,
                                **_: object) -> Dataset:
    """The letters-only view of EMNIST byclass: 52 classes, A-Z then a-z (digits dropped)."""
    ds = load_emnist_byclass(root=root, split=split, verify_files=verify_files)
    keep = ds.labels >= 10
    info = DatasetInfo(name="emnist-byclass-letters", resolution=28, channels=1, class_names=BYCLASS_CLASSES[10:])
    return Dataset(images=ds.images[keep], labels=ds.labels[keep] - 10, info=info, files=ds.files)


# ---- Stacked MNIST -----------------------------------------------------------------------------------

@register("dataset", "stacked-mnist")
def load_stacked_mnist(*, root: Path, split: str = "train", verify_files: bool = True, size: int | None = None,
                       seed: int = 0, **_: object) -> Dataset:
    """Three MNIST digits as the R, G, B channels: 1000 modes (label = 100*r + 10*g + b).

    Deterministic from ``seed``; ``size`` images (default: as many as the MNIST split has).
    The mode-collapse benchmark of VEEGAN and PacGAN.
    """
    base = load_mnist(root=root, split=split, verify_files=verify_files)
    n = size if size is not None else len(base)
    if n <= 0:
        raise GankitError(f"stacked-mnist size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    idx = torch.from_numpy(rng.integers(0, len(base), size=(n, 3)))  # [n, 3] one MNIST digit per channel
    images = base.images[idx, 0]  # [n, 3, 28, 28]
    digits = base.labels[idx]  # [n, 3]
    labels = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
    info = DatasetInfo(name="stacked-mnist", resolution=28, channels=3,
                       class_names=tuple(f"{i:03d}" for i in range(1000)),
                       notes=(f"{n} stacks drawn with seed {seed} from MNIST {split}",))
    return Dataset(images=images.contiguous(), labels=labels, info=info, files=base.files)
