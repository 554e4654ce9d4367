"""CIFAR-10: the official python batches (through a restricted unpickler) or a per-class JPEG tree.

The official batches are pickles. gankit loads them with an unpickler that admits only plain
containers and numpy's own array reconstruction, so a crafted file cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import pickle
import re
import struct
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.data.dataset import Dataset, DatasetInfo
from gankit.data.files import FileSpec, atomic_write_bytes, cache_dir, find_file, is_verified, mark_verified, read_bytes
from gankit.data.sources import split_parts
from gankit.errors import GankitError
from gankit.registry import register

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PYTHON_ARCHIVE = FileSpec(name="cifar-10-python.tar.gz", urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))
# md5 of each official batch file (as extracted from the archive).
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
SPLIT_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# The widely redistributed JPEG tree (train|test/<class>/NNNN.jpg), md5 of the decompressed tar.
JPEG_ARCHIVE = FileSpec(name="cifar-10-images-jpg.tar.gz", content_md5="2cacae577a1f36c201d18c453577a415")

_LOSSY_WARNED = False


# ---- restricted unpickling -------------------------------------------------------------------------

def _text(value: Any) -> Any:
    # Python 2's pickles (the official CIFAR files) hold str, which encoding="bytes" reads as bytes
    return value.decode("latin1") if isinstance(value, bytes) else value


# The dtypes an array may have, and the state numpy pickles for such a plain number type: (version,
# byte order, subarray, names, fields, element size, alignment, flags[, metadata]). Anything else is
# refused before numpy sees it: numpy applies a dtype's state unchecked, and a CIFAR file with one byte
# changed (flags 3, "holds object references", on uint8) stopped numpy 2.4 with an internal SystemError.
_PLAIN_DTYPES = frozenset(f"{k}{n}" for k, ns in (("u", "1248"), ("i", "1248"), ("f", "48")) for n in ns) | {"b1"}


class _DTypeState:
    """A dtype being unpickled: it becomes a numpy dtype only once its state is the plain one."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        spec = _text(spec)
        if spec not in _PLAIN_DTYPES or align not in (False, 0) or copy not in (True, 1):
            raise pickle.UnpicklingError(f"refused dtype {spec!r}: only plain number types are allowed")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        plain = (isinstance(state, tuple) and len(state) in (7, 8, 9) and state[0] in (1, 2, 3, 4)
                 and _text(state[1]) in ("|", "<", ">", "=") and state[2:5] == (None, None, None)
                 and state[5:7] == (-1, -1) and (len(state) < 8 or state[7] == 0)
                 and (len(state) < 9 or state[8] in (None, {})))
        if not plain:
            raise pickle.UnpicklingError("refused a dtype whose pickled state is not a plain number type's")
        order = _text(state[1])
        if order in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


class _ArrayState:
    """An array being unpickled (numpy's ``_reconstruct`` then its state): rebuilt from its bytes with a
    checked dtype, shape and size, and swapped for a real array once the whole pickle has loaded."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("refused an array whose pickled state is not (version, shape, dtype, "
                                         "fortran, data)")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"refused an array of shape {shape!r}")
        if not isinstance(dtype, _DTypeState) or not isinstance(raw, bytes | bytearray) or fortran not in (0, 1):
            raise pickle.UnpicklingError("refused an array whose dtype or data is not plain")
        size = math.prod(shape) * dtype.dtype.itemsize
        if len(raw) != size:
            raise pickle.UnpicklingError(f"refused an array of shape {shape} with {len(raw)} bytes of data "
                                         f"(it needs {size})")
        # bytes(raw): a bytearray (protocol 5's opcode) would stay exported to the view while the
        # unpickler frees it; bytes(bytes) is the same object, no copy
        self.array = np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayState:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused to build array subtype {subtype!r}")
    return _ArrayState()


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1"): allow just that.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("refused _codecs.encode call")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _DTypeState,
}


class _SafeUnpickler(pickle._Unpickler):
    """Admits dicts, lists, bytes, strings, numbers and plain numpy arrays; nothing callable else.

    The pure-Python unpickler, not the C one: on a file cut inside a bytearray opcode the C one printed
    "SystemError: deallocated bytearray object has exported buffers" (90 of 204,800 one-byte mutations of
    a batch). It takes 76 against 47 ms for a batch of 10,000 images.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: only arrays and plain data are allowed") from None


def _arrays(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every unpickled array state swapped for its array (dicts and lists, any depth)."""
    if depth > 100:
        raise pickle.UnpicklingError("refused: nested too deeply")
    if isinstance(obj, _ArrayState):
        if obj.array is None:
            raise pickle.UnpicklingError("refused an array without its data")
        return obj.array
    if isinstance(obj, _DTypeState):
        return obj.dtype
    if isinstance(obj, dict):
        return {_arrays(k, depth + 1): _arrays(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_arrays(v, depth + 1) for v in obj)
    return obj


def safe_unpickle(data: bytes, *, name: str) -> Any:
    """Unpickle ``data`` admitting only plain data and numpy arrays; GankitError on anything else."""
    try:
        return _arrays(_SafeUnpickler(io.BytesIO(data), encoding="bytes").load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError, RecursionError, struct.error) as exc:
        raise GankitError(f"{name}: not a valid CIFAR batch (it is refused, nothing in it ran): {exc}") from None


def parse_batch(data: bytes, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (images uint8 [N, 3, 32, 32], labels int64 [N])."""
    obj = safe_unpickle(data, name=name)
    if not isinstance(obj, dict):
        raise GankitError(f"{name}: not a CIFAR batch: expected a dict, found {type(obj).__name__}")
    table = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in table or "labels" not in table:
        raise GankitError(f"{name}: not a CIFAR batch: keys {sorted(map(str, table))} lack 'data' or 'labels'")
    images, labels = table["data"], table["labels"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        shape = getattr(images, "shape", None)
        raise GankitError(f"{name}: CIFAR 'data' must be a uint8 array [N, 3072], "
                          f"found {type(images).__name__} {shape}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise GankitError(f"{name}: CIFAR 'labels' must be a list of integers") from None
    if labels.shape != (images.shape[0],):
        raise GankitError(f"{name}: {images.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise GankitError(f"{name}: CIFAR-10 labels must be 0..9, found {labels.min()}..{labels.max()}")
    return images.reshape(-1, 3, 32, 32), labels


def _python_batches(folder: Path, parts: tuple[str, ...], verify_files: bool) -> tuple[list, list, list[str]] | None:
    """Read batches from ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``; None if neither exists."""
    wanted = [b for p in parts for b in SPLIT_BATCHES[p]]
    extracted = folder / "cifar-10-batches-py"
    blobs: dict[str, tuple[bytes, str]] = {}
    if extracted.is_dir():
        for b in wanted:
            path = extracted / b
            if not path.exists():
                raise GankitError(f"CIFAR-10 batch {path} is missing (expected {', '.join(wanted)})")
            blobs[b] = (path.read_bytes(), str(path))
    elif (folder / PYTHON_ARCHIVE.name).exists():
        path = folder / PYTHON_ARCHIVE.name
        try:
            with tarfile.open(fileobj=io.BytesIO(read_bytes(path)), mode="r:") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted:
                        blobs[base] = (tar.extractfile(member).read(), f"{path}:{member.name}")  # type: ignore[union-attr]
        except tarfile.TarError as exc:
            raise GankitError(f"{path}: corrupted tar archive ({exc})") from None
        missing = [b for b in wanted if b not in blobs]
        if missing:
            raise GankitError(f"{path}: archive lacks {', '.join(missing)}")
    else:
        return None
    ims, labs, names = [], [], []
    for b in wanted:
        data, name = blobs[b]
        if verify_files and hashlib.md5(data).hexdigest() != BATCH_MD5[b]:
            raise GankitError(f"{name}: checksum mismatch with the official CIFAR-10 {b}; the file is corrupted")
        x, y = parse_batch(data, name=name)
        ims.append(x)
        labs.append(y)
        names.append(name)
    return ims, labs, names


# ---- the JPEG tree ------------------------------------------------------------------------------------

def _decode_jpegs(entries: list[tuple[int, int, str, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    out = np.empty((len(entries), 32, 32, 3), dtype=np.uint8)
    labels = np.empty(len(entries), dtype=np.int64)
    for i, (_, label, name, blob) in enumerate(entries):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise GankitError(f"{name}: not a readable image ({exc})") from None
        if arr.shape != (32, 32, 3):
            raise GankitError(f"{name}: CIFAR-10 image must be 32x32, found {arr.shape[1]}x{arr.shape[0]}")
        out[i] = arr
        labels[i] = label
    return out.transpose(0, 3, 1, 2), labels


def _jpeg_entries(folder: Path, parts: tuple[str, ...], classes: set[int] | None, verify_files: bool,
                  ) -> tuple[list[tuple[int, int, str, bytes]], str] | None:
    """(split index, label, name, bytes) of every wanted JPEG, sorted, and the source. None if absent."""
    archive = folder / JPEG_ARCHIVE.name
    trees = [folder / "cifar-10-images-jpg", folder]
    entries: list[tuple[int, int, str, bytes]] = []

    def wanted(rel: list[str]) -> int | None:
        # rel = [split, class, file]
        if len(rel) != 3 or rel[0] not in parts or rel[1] not in CLASSES or not rel[2].lower().endswith(".jpg"):
            return None
        label = CLASSES.index(rel[1])
        return label if classes is None or label in classes else None

    if archive.exists():
        content = read_bytes(archive)
        checksum = f"md5:{JPEG_ARCHIVE.content_md5}"
        if verify_files and not is_verified(archive, checksum):
            got = hashlib.md5(content).hexdigest()
            if got != JPEG_ARCHIVE.content_md5:
                raise GankitError(f"{archive}: checksum mismatch: decompressed md5 {got}, expected "
                                  f"{JPEG_ARCHIVE.content_md5}; the file is corrupted")
            mark_verified(archive, checksum)
        try:
            with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as tar:
                for member in tar:
                    parts_ = member.name.split("/")
                    rel = parts_[-3:] if member.isfile() else []
                    label = wanted(rel)
                    if label is not None:
                        blob = tar.extractfile(member).read()  # type: ignore[union-attr]
                        entries.append((parts.index(rel[0]), label, f"{archive}:{member.name}", blob))
        except tarfile.TarError as exc:
            raise GankitError(f"{archive}: corrupted tar archive ({exc})") from None
        source = str(archive)
    else:
        tree = next((t for t in trees if (t / "train").is_dir() or (t / "test").is_dir()), None)
        if tree is None:
            return None
        for path in sorted(tree.glob("*/*/*")):
            rel = list(path.relative_to(tree).parts)
            label = wanted(rel)
            if label is not None:
                entries.append((parts.index(rel[0]), label, str(path), path.read_bytes()))
        source = str(tree)
    entries.sort(key=lambda e: e[:3])  # split, then class, then file name: a stable order
    return entries, source


PER_CLASS = {"train": 5000, "test": 1000}  # images of each class in each split of CIFAR-10


def _complete(labels: np.ndarray, parts: tuple[str, ...], classes: set[int] | None, split_of: np.ndarray,
              ) -> str | None:
    """What is missing from decoded CIFAR-10 labels (``split_of``: each image's index in ``parts``), or None
    when every wanted class of every split has its full count and no other label is there."""
    if labels.ndim != 1 or labels.dtype != np.int64 or split_of.shape != labels.shape:
        return "labels of the wrong form"
    want = sorted(classes) if classes is not None else list(range(len(CLASSES)))
    if np.any(~np.isin(labels, want)):
        return "labels outside the classes asked for"
    short = []
    for i, part in enumerate(parts):
        counts = np.bincount(labels[split_of == i], minlength=len(CLASSES))
        short += [f"{part}/{CLASSES[c]} has {counts[c]:,}" for c in want if counts[c] != PER_CLASS[part]]
    if short:
        return ", ".join(short[:4]) + (f" and {len(short) - 4} more" if len(short) > 4 else "")
    return None


def _cache_path(source: Path, parts: tuple[str, ...], classes: set[int] | None) -> Path:
    """Where the decoded arrays of ``source`` for these splits/classes live: named by what is decoded
    (the archive's path, the splits, the classes), then by the archive's version (size and mtime), so
    that a newer copy of the archive can replace the older one's arrays (see :func:`_prune_cache`)."""
    st = source.stat()
    what = f"{source.resolve()}|{parts}|{sorted(classes) if classes else 'all'}"
    version = f"{st.st_size}|{st.st_mtime_ns}"
    digest = [hashlib.sha256(k.encode()).hexdigest()[:16] for k in (what, version)]
    return cache_dir() / "decoded" / f"cifar10-jpg-{digest[0]}-{digest[1]}.npz"


def _prune_cache(kept: Path) -> None:
    """Delete the decoded arrays of older versions of the archive ``kept`` was decoded from (each up to
    185 MB: a re-copied archive used to leave its predecessor's behind for good), and those named the
    way gankit named them before session 26 (one 24-digit hash), which nothing reads any more."""
    what = kept.name.rsplit("-", 1)[0]
    stale = [p for p in kept.parent.glob(f"{what}-*.npz") if p != kept]
    stale += [p for p in kept.parent.glob("cifar10-jpg-*.npz") if re.fullmatch(r"cifar10-jpg-[0-9a-f]{24}\.npz",
                                                                               p.name)]
    for old in stale:
        with contextlib.suppress(OSError):
            old.unlink()


def _load_jpeg_copy(folder: Path, parts: tuple[str, ...], classes: set[int] | None, verify_files: bool,
                    ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Decoding 60k JPEGs takes ~15 s here, so the decoded arrays are cached (in gankit's cache)."""
    archive = folder / JPEG_ARCHIVE.name
    if archive.exists() and not (verify_files and not is_verified(archive, f"md5:{JPEG_ARCHIVE.content_md5}")):
        try:
            with np.load(_cache_path(archive, parts, classes)) as z:
                images, labels, split_of = z["images"], z["labels"], z["splits"]
            if _complete(labels, parts, classes, split_of) is None and \
                    images.dtype == np.uint8 and images.shape == (len(labels), 3, 32, 32):
                return images, labels, str(archive)
        except Exception:  # noqa: BLE001 - any unreadable cache (truncated, flipped bits, foreign) is a miss
            pass
    found = _jpeg_entries(folder, parts, classes, verify_files)
    if found is None:
        return None
    entries, source = found
    split_of = np.array([e[0] for e in entries], dtype=np.int64)
    problem = _complete(np.array([e[1] for e in entries], dtype=np.int64), parts, classes, split_of)
    if problem:
        raise GankitError(f"{source}: not a complete CIFAR-10 copy: {problem} (the official copy holds "
                          f"{PER_CLASS['train']:,} train and {PER_CLASS['test']:,} test images of each class); "
                          "for a part of it use a folder: dataset")
    images, labels = _decode_jpegs(entries)
    if archive.exists():
        try:
            buf = io.BytesIO()
            np.savez(buf, images=images, labels=labels, splits=split_of)
            cached = _cache_path(archive, parts, classes)
            atomic_write_bytes(cached, buf.getvalue())
            _prune_cache(cached)
        except OSError:
            pass
    return images, labels, source


@register("dataset", "cifar10")
def load_cifar10(*, root: Path, split: str = "train", verify_files: bool = True, classes: list[int] | None = None,
                 **_: object) -> Dataset:
    """CIFAR-10, 32x32 colour, 10 classes; official python batches, else the JPEG tree (lossy)."""
    global _LOSSY_WARNED
    folder = root / "cifar10"
    parts = split_parts(split)
    wanted = set(classes) if classes is not None else None
    got = _python_batches(folder, parts, verify_files)
    notes: tuple[str, ...] = ()
    if got is not None:
        ims, labs, files = got
        images, labels = np.concatenate(ims), np.concatenate(labs)
        if wanted is not None:
            keep = np.isin(labels, sorted(wanted))
            images, labels = images[keep], labels[keep]
    else:
        found = _load_jpeg_copy(folder, parts, wanted, verify_files)
        if found is None:
            find_file(folder, PYTHON_ARCHIVE, dataset="cifar10", all_specs=(PYTHON_ARCHIVE, JPEG_ARCHIVE))
            return load_cifar10(root=root, split=split, verify_files=verify_files, classes=classes)
        images, labels, source = found
        if not _LOSSY_WARNED:
            warnings.warn(f"cifar10: reading the JPEG copy {source}: lossy (JPEG quality ~75), not the official "
                          "pickles; metrics against it are not comparable with published CIFAR-10 numbers",
                          stacklevel=2)
            _LOSSY_WARNED = True
        files = [source]
        notes = ("lossy JPEG copy of CIFAR-10",)
    info = DatasetInfo(name="cifar10", resolution=32, channels=3, class_names=CLASSES, notes=notes)
    return Dataset(images=torch.from_numpy(np.ascontiguousarray(images)), labels=torch.from_numpy(labels),
                   info=info, files=files)
