"""Where dataset files live, how they are verified, and how missing ones are downloaded.

Files are looked up under a data root (``--data-root``, else ``$GANKIT_DATA``, else
``~/.cache/gankit/data``), one folder per dataset with the official file names. Each file is
verified once against a checksum of its *decompressed* content (so a re-compressed copy of the
same data passes); the result is cached under ``$GANKIT_CACHE`` (never next to the data, which
may be read-only), keyed by path, size and modification time.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from gankit.errors import GankitError


@dataclass(frozen=True, kw_only=True)
class FileSpec:
    """One file of a dataset: its official name, checksum and where to download it.

    ``content_md5`` is the md5 of the decompressed content (for ``.gz`` files) or of the file
    itself; ``file_sha256`` is used instead where only the compressed file's hash is published.
    """

    name: str
    content_md5: str | None = None
    file_sha256: str | None = None
    urls: tuple[str, ...] = ()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def available_memory(root: str | os.PathLike[str] = "/") -> int | None:
    """Bytes of memory free for this process now: Linux's MemAvailable, less where a cgroup (a container's
    memory limit) leaves less; None where neither can be read. ``root``: where /proc and /sys are (tests)."""
    root = Path(root)
    free = []
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (root / "sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":  # the limit less the group's own anonymous memory (its page cache can be reclaimed)
            stat = dict(line.split() for line in (root / "sys/fs/cgroup/memory.stat").read_text().splitlines())
            free.append(int(limit) - int(stat["anon"]))
    except (OSError, ValueError, KeyError):
        pass
    return min(free) if free else None


def cache_dir() -> Path:
    """gankit's own cache folder (verification marks, reference statistics)."""
    root = os.environ.get("GANKIT_CACHE") or Path.home() / ".cache" / "gankit"
    return Path(root)


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the explicit argument, else ``$GANKIT_DATA``, else ``~/.cache/gankit/data``."""
    given = explicit or os.environ.get("GANKIT_DATA")
    if given:
        try:
            return Path(given).expanduser()
        except RuntimeError as exc:  # ~nosuchuser
            raise GankitError(f"data root {given}: {exc}") from None
    return Path.home() / ".cache" / "gankit" / "data"


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed when it is gzip (by its magic bytes); clear errors when truncated."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GankitError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b" or (path.suffix == ".gz" and raw):
        try:
            return gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise GankitError(f"{path}: corrupted or truncated gzip file ({exc})") from None
    return raw


# ---- verification cache ------------------------------------------------------------------------

def _marks_path() -> Path:
    return cache_dir() / "verified.json"


def _load_marks() -> dict[str, dict[str, object]]:
    """The marks on file; a damaged or foreign ``verified.json`` reads as no marks (files are checked again)."""
    try:
        marks = json.loads(_marks_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(marks, dict):
        return {}
    return {k: v for k, v in marks.items() if isinstance(v, dict)}


def _stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(path: Path, checksum: str) -> bool:
    """True if ``path`` (unchanged since) was verified against ``checksum`` before."""
    mark = _load_marks().get(str(path.resolve()))
    return bool(mark) and mark.get("checksum") == checksum and mark.get("stamp") == _stamp(path)


def mark_verified(path: Path, checksum: str) -> None:
    """Remember that ``path`` matched ``checksum``; silently skipped when the cache is not writable."""
    marks = _load_marks()
    marks[str(path.resolve())] = {"checksum": checksum, "stamp": _stamp(path)}
    try:
        atomic_write_bytes(_marks_path(), json.dumps(marks, indent=1).encode())
    except OSError:
        pass


def verify(path: Path, spec: FileSpec, content: bytes | None = None) -> None:
    """Check ``path`` against its spec's checksum (cached). ``content``: its decompressed bytes if at hand."""
    if spec.content_md5:
        want = f"md5:{spec.content_md5}"
        if is_verified(path, want):
            return
        data = content if content is not None else read_bytes(path)
        got = hashlib.md5(data).hexdigest()
        if got != spec.content_md5:
            raise GankitError(
                f"{path}: checksum mismatch: the decompressed content has md5 {got}, the official file's is "
                f"{spec.content_md5}. The file is corrupted or not the official one; delete it to download it again."
            )
    elif spec.file_sha256:
        want = f"sha256:{spec.file_sha256}"
        if is_verified(path, want):
            return
        got = file_digest(path)
        if got != spec.file_sha256:
            raise GankitError(
                f"{path}: checksum mismatch: sha256 {got}, the official file's is {spec.file_sha256}. "
                "The file is corrupted or not the official one; delete it to download it again."
            )
    else:
        return
    mark_verified(path, want)


# ---- atomic writes and downloads ---------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then rename.

    The file gets the mode a plain write would give it: a replaced file's own, else the umask's.
    Errors name ``path`` (not the temporary file), so the CLI can report them plainly.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OSError(errno.ENOTDIR, "a file is in the way of its folder", str(path)) from None
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, mode)  # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def offline() -> bool:
    """Downloads are disabled by ``GANKIT_OFFLINE=1`` (the test suite sets it)."""
    return os.environ.get("GANKIT_OFFLINE", "") not in ("", "0")


def download(url: str, dest: Path, *, spec: FileSpec | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, verify it, and rename it into place.

    Nothing is left at ``dest`` unless the whole file arrived and matched its checksum.
    """

    made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a part file of this process's own: two processes fetching the same file (every rank of a first
    # torchrun) must not write into, or delete, each other's
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        _fetch(url, part, dest, spec=spec, progress=progress)
    except BaseException:
        for folder in made:  # a failed download leaves no empty folders behind (a mistyped data root)
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return dest


def _fetch(url: str, part: Path, dest: Path, *, spec: FileSpec | None, progress: bool) -> None:
    """:func:`download`'s transfer: into ``part``, verified, renamed to ``dest``; ``part`` never stays."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if spec is not None:
            verify(part, FileSpec(name=dest.name, content_md5=spec.content_md5, file_sha256=spec.file_sha256))
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def find_file(folder: Path, spec: FileSpec, *, dataset: str, all_specs: tuple[FileSpec, ...] = ()) -> Path:
    """The path of ``spec`` under ``folder``, downloading it from an official mirror if missing.

    With no network (or ``GANKIT_OFFLINE``), one clear error names every file expected and the folder.
    """
    path = folder / spec.name
    if path.exists():
        return path
    errors = []
    if spec.urls and not offline():
        for url in spec.urls:
            try:
                return download(url, path, spec=spec)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url}: {exc}")
            except GankitError as exc:
                errors.append(str(exc))
    expected = ", ".join(s.name for s in (all_specs or (spec,)))
    lines = [f"dataset {dataset!r}: file {spec.name} not found in {folder}", f"  expected files: {expected}"]
    if spec.urls:
        lines.append(f"  official download: {spec.urls[0]}")
    if errors:
        lines.append("  download failed: " + "; ".join(errors))
    elif offline():
        lines.append("  downloads are off (GANKIT_OFFLINE is set)")
    lines.append("  set --data-root or GANKIT_DATA to the folder that holds the dataset folders")
    raise GankitError("\n".join(lines))
