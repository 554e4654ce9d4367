"""``folder:PATH``: any folder or archive (.tar, .tar.gz, .zip) of PNG/JPEG images.

First-level subfolders become class labels (images lying beside two or more class folders are left
out, with a warning). Images are turned upright by their EXIF orientation, resized (shorter side)
and centre-cropped to the requested resolution. Unreadable, empty or truncated files are skipped
and counted.
"""

from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from gankit.data.dataset import Dataset, DatasetInfo
from gankit.errors import GankitError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PREFIX = "folder:"
_ORIENTATION = 0x0112  # EXIF tag; values 5-8 turn the image by 90 degrees (width and height swap)


def absolute_spec(spec: str) -> str:
    """``folder:PATH`` with a relative PATH made absolute (from the current directory), so that a run's
    config.toml finds its data from any directory; other specs, ``~`` paths and absolute ones unchanged."""
    if not spec.startswith(PREFIX):
        return spec
    path = spec[len(PREFIX):]
    if not path.strip() or path.startswith("~") or os.path.isabs(path):
        return spec
    return PREFIX + os.path.abspath(path)


def folder_of(spec: str) -> Path | None:
    """The folder a ``folder:`` spec reads (None for other datasets, archives and bad paths)."""
    if not spec.startswith(PREFIX) or not spec[len(PREFIX):].strip():
        return None
    try:
        path = Path(spec[len(PREFIX):]).expanduser()
    except RuntimeError:  # ~nosuchuser
        return None
    return path if path.is_dir() else None


def _orientation(im: object) -> int:
    """An image's EXIF orientation (1: as stored; also for no or damaged EXIF)."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, SyntaxError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_size(im: object) -> tuple[int, int]:
    """An image's (width, height) once turned by its EXIF orientation."""
    w, h = im.size  # type: ignore[attr-defined]
    return (h, w) if _orientation(im) >= 5 else (w, h)


def _upright(im: object) -> object:
    """The image turned by its EXIF orientation (a phone photo as it was taken, not as stored)."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(im) if _orientation(im) > 1 else im  # type: ignore[arg-type]


def _entries(path: Path) -> Iterator[tuple[str, bytes | None, str]]:
    """(relative posix path, bytes or None, why None) of every image-named file in a folder or archive.

    Files and archive members that cannot be read come with ``None`` and the reason, for the caller to
    skip and count; folders that cannot be listed are warned about (their images would be missing).
    """
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise GankitError(f"folder dataset: {path} is one image; give the folder that holds the images, "
                          f"folder:{path.parent}")
    if path.is_dir():
        found, seen = [], {os.path.realpath(path)}
        # os.walk with followlinks: a class folder that is a symbolic link counts (rglob skips it); each real
        # folder once, so a link to a folder above cannot loop
        for top, dirs, files in os.walk(path, followlinks=True, onerror=lambda e: warnings.warn(
                f"{e.filename}: cannot list this folder ({e.strerror}); its images are left out", stacklevel=2)):
            keep = []
            for d in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(top, d)), d)):  # real folders first
                real = os.path.realpath(os.path.join(top, d))
                if not d.startswith(".") and real not in seen:
                    seen.add(real)
                    keep.append(d)
            dirs[:] = keep
            found += [Path(top) / f for f in files
                      if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
        for p in sorted(found):
            try:
                yield p.relative_to(path).as_posix(), p.read_bytes(), ""
            except OSError as exc:
                yield p.relative_to(path).as_posix(), None, exc.strerror or type(exc).__name__
    elif zipfile.is_zipfile(path):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise GankitError(f"{path}: not a readable .zip archive ({exc})") from None
        with zf:
            for name in sorted(zf.namelist()):
                if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES and not name.endswith("/"):
                    try:
                        yield name, zf.read(name), ""
                    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                        yield name, None, f"damaged in the archive: {exc}"
    elif path.is_file():
        with open(path, "rb") as fh:
            if fh.read(4) == b"PK\x03\x04":  # a zip's first entry, but no directory at its end
                raise GankitError(f"{path}: a damaged or truncated .zip archive (its directory at the end is "
                                  "missing); copy or download it again")
        try:
            with tarfile.open(path) as tar:
                members = sorted((m for m in tar if m.isfile()), key=lambda m: m.name)
                # tarfile stops quietly at a damaged header, and a .gz's checksum is only checked at its
                # end: read on to the end, where nothing but the archive's zero padding may be left
                rest = tar.fileobj.read() if tar.fileobj is not None else b""
                if rest.strip(b"\0"):
                    raise tarfile.ReadError("damaged after member " + (members[-1].name if members else "(none)"))
                blobs = [(m.name, tar.extractfile(m).read()) for m in members  # type: ignore[union-attr]
                         if PurePosixPath(m.name).suffix.lower() in IMAGE_SUFFIXES]
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            why = " ".join(str(exc).split())  # (tarfile lists each compression it tried on a line of its own)
            raise GankitError(f"{path}: not a readable folder, .zip, .tar or .tar.gz archive ({why})") from None
        for name, blob in blobs:
            yield name, blob, ""
    else:
        where = "" if path.is_absolute() else f" (relative to {os.getcwd()})"
        raise GankitError(f"folder dataset: {path} does not exist{where}")


def _fit(im: object, resolution: int) -> object:
    """Resize the shorter side to ``resolution`` and centre-crop a square."""
    from PIL import Image

    w, h = im.size  # type: ignore[attr-defined]
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)  # type: ignore[attr-defined]
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return im.crop((left, top, left + resolution, top + resolution))  # type: ignore[attr-defined]


def _eight_bit(im: object) -> object:
    """16-bit, 32-bit and float greyscale scaled to 8 bits (Pillow's own convert("L") clips them at 255,
    which turns a 16-bit PNG white)."""
    from PIL import Image

    mode = im.mode  # type: ignore[attr-defined]
    if not (mode.startswith("I") or mode == "F"):
        return im
    arr = np.asarray(im, dtype=np.float64)
    if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
        arr = arr / 257.0  # 0..65535 -> 0..255
    elif mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0  # floats in [0, 1]
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))  # uint8 [H, W]: mode L


def load_folder(path: str | Path, *, resolution: int | None = None, channels: int | None = None) -> Dataset:
    """Load every image under ``path`` into memory (see the module docstring).

    Two passes: the headers first (sizes and modes decide the resolution and channels), then each image
    decoded and brought to the resolution on its own, so memory holds one full-size photo at a time.
    """
    from PIL import Image, UnidentifiedImageError

    if not str(path).strip():
        raise GankitError("folder dataset: give a path, folder:PATH")
    try:
        path = Path(path).expanduser()
    except RuntimeError as exc:  # ~nosuchuser
        raise GankitError(f"folder dataset {path}: {exc}") from None
    broken = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
              Image.DecompressionBombWarning)
    blobs: list[tuple[str, bytes]] = []
    heads: list[tuple[int, int, str]] = []  # (width, height, mode)
    skipped: list[str] = []
    with warnings.catch_warnings():
        # Pillow only warns above its pixel limit (and refuses above twice that): skip such files too
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for name, blob, problem in _entries(path):
            if blob is None or not blob:
                skipped.append(f"{name} ({problem or 'empty'})")
                continue
            try:
                with Image.open(io.BytesIO(blob)) as im:
                    heads.append((*_upright_size(im), im.mode))
            except broken as exc:
                skipped.append(f"{name} ({type(exc).__name__})")
                continue
            blobs.append((name, blob))

    def geometry(heads: list[tuple[int, int, str]]) -> tuple[int, int]:
        """(resolution, channels): as given, else from the images' sizes and modes."""
        ch = channels if channels is not None else (
            1 if all(m in ("1", "L", "LA", "F") or m.startswith("I") for _, _, m in heads) else 3)
        if ch not in (1, 3):
            raise GankitError(f"folder dataset: channels must be 1 or 3, got {ch}")
        if resolution is not None:
            return resolution, ch
        sizes = {(w, h) for w, h, _ in heads}
        if len(sizes) == 1 and (size := sizes.pop())[0] == size[1]:
            return size[0], ch
        raise GankitError(f"{path}: images have different or non-square sizes; set data.resolution "
                          "(--resolution for `gankit data`)")

    def decode(blobs: list[tuple[str, bytes]], side: int, ch: int) -> tuple[list[np.ndarray], list[int]]:
        """Each blob decoded and brought to ``side`` x ``side`` x ``ch``; the indices that decoded."""
        mode, arrays, ok = ("L" if ch == 1 else "RGB"), [], []
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            for i, (name, blob) in enumerate(blobs):
                try:
                    with Image.open(io.BytesIO(blob)) as im:
                        im.load()  # decode now: a truncated file fails here
                        im = _upright(im)
                        im = _eight_bit(im)
                        im = im.convert("RGBA").convert(mode) if im.mode in ("P", "LA", "PA") else im.convert(mode)  # type: ignore[attr-defined]
                        arr = np.asarray(_fit(im, side))
                except broken as exc:
                    skipped.append(f"{name} ({type(exc).__name__})")
                    continue
                arrays.append(arr.reshape(side, side, ch))
                ok.append(i)
        return arrays, ok

    arrays: list[np.ndarray] = []
    ok: list[int] = []
    shape = (0, 0)
    if blobs:
        try:
            shape = geometry(heads)
        except GankitError:
            # mixed sizes, perhaps only because of files that do not decode: decide from those that do
            _, decodable = decode(blobs, 4, 3)
            blobs, heads = [blobs[i] for i in decodable], [heads[i] for i in decodable]
            shape = geometry(heads) if blobs else shape
        arrays, ok = decode(blobs, *shape) if blobs else ([], [])
        if 0 < len(ok) < len(blobs):
            # a file that failed to decode must not decide the size or colour of the rest: again without it
            blobs, heads = [blobs[i] for i in ok], [heads[i] for i in ok]
            ok = list(range(len(blobs)))  # (indices into the list without it)
            if geometry(heads) != shape:
                shape = geometry(heads)
                arrays, ok = decode(blobs, *shape)  # (these all decoded once: no new entries in skipped)
    names = [blobs[i][0] for i in ok]
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} unreadable file(s): {', '.join(skipped[:5])}"
                      + (" ..." if len(skipped) > 5 else ""), stacklevel=2)
    if not arrays:
        raise GankitError(f"{path}: no readable images found" + (f" ({len(skipped)} unreadable)" if skipped else ""))
    # Classes: the first folder under the root. An archive often wraps everything in one top folder:
    # strip such a shared wrapper first, so its subfolders become the classes.
    paths = [PurePosixPath(n).parts for n in names]
    wrapped = False
    while len({p[0] for p in paths}) == 1 and all(len(p) >= 3 for p in paths):
        paths, wrapped = [p[1:] for p in paths], True
    folders = {p[0] for p in paths if len(p) >= 2}
    loose = [i for i, p in enumerate(paths) if len(p) == 1]
    if loose and len(folders) >= 2:  # a class tree with strays beside it (a thumbnail, a cover image)
        warnings.warn(f"{path}: left out {len(loose)} image(s) lying beside the class folders "
                      f"{', '.join(sorted(folders)[:5])}{' ...' if len(folders) > 5 else ''}: "
                      f"{', '.join(names[i] for i in loose[:5])}{' ...' if len(loose) > 5 else ''}", stacklevel=2)
        keep = [i for i in range(len(paths)) if len(paths[i]) >= 2]
        paths, arrays = [paths[i] for i in keep], [arrays[i] for i in keep]
    nested = all(len(p) >= 2 for p in paths)
    class_names = tuple(sorted({p[0] for p in paths})) if nested else ("all",)
    if nested and not wrapped and path.is_dir():
        # a class folder without a readable image is no class: say so, or --class NAME fails later unexplained
        empty = sorted(d.name for d in path.iterdir()
                       if not d.name.startswith(".") and d.is_dir() and d.name not in class_names)
        if empty:
            warnings.warn(f"{path}: class folder(s) without readable images, so not classes: "
                          f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}", stacklevel=2)
    labels = np.array([class_names.index(p[0]) for p in paths] if nested else [0] * len(paths), dtype=np.int64)
    info = DatasetInfo(name=f"folder:{path}", resolution=shape[0], channels=shape[1], class_names=class_names,
                       notes=("a folder has no splits: train and test are both all of its images",))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return Dataset(images=images, labels=torch.from_numpy(labels), info=info, files=[str(path)])
