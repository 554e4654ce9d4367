"""The run directory: everything about a run, written as it goes and readable after a crash.

Layout::

    RUN/config.toml          the resolved config
    RUN/stats.jsonl          one JSON record per logged step (append-only)
    RUN/samples/             fixed-noise grids, step-NNNNNNNN.png
    RUN/checkpoints/step-NNNNNNNN/{weights,state}.safetensors, state.json, manifest.json
    RUN/checkpoints/latest   the name of the newest complete checkpoint

Checkpoints hold tensors in safetensors and everything else in JSON (never pickle). Each is
written into a temporary folder, fsynced, checksummed in a manifest, then renamed into place, so a
kill at any moment leaves either the whole new checkpoint or none of it; resuming picks the newest
checkpoint that matches its manifest and warns when it had to skip a damaged one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gankit.config import Config, dumps
from gankit.config import load_file as load_config_file
from gankit.data.files import atomic_write_bytes, file_digest
from gankit.errors import GankitError

FORMAT_VERSION = 1
_OURS = ("config.toml", "stats.jsonl", "samples", "checkpoints")  # what makes a folder a run
# what a run's commands write into it besides: --force starts over without them too (an old run's
# TensorBoard events would otherwise show as part of the new run)
_ALSO_OURS = ("tensorboard", "eval", "metrics.jsonl", "judge", "report.html", "curves.png", "evolution.gif",
              "evolution-strip.png", "evolution.mp4")
# Test-only: seconds to sleep after each file of a checkpoint is written, so a kill test can land a
# SIGKILL inside a checkpoint write (benchmarks/kill_soak.py, tests/test_reliability.py).
PAUSE_ENV = "GANKIT_TEST_CHECKPOINT_PAUSE"


class RunDir:
    """Paths of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.stats_path = self.path / "stats.jsonl"
        self.samples = self.path / "samples"
        self.checkpoints = self.path / "checkpoints"

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def config(self) -> Config:
        if not self.config_path.exists():
            raise GankitError(f"{self.path} is not a gankit run directory (no config.toml)")
        return load_config_file(self.config_path)


def check_free(path: str | os.PathLike[str], *, force: bool = False) -> list[str]:
    """Refuse a directory that holds a run (unless ``force``); returns what ``force`` would delete."""
    run = RunDir(path)
    if run.path.exists() and not run.path.is_dir():
        raise GankitError(f"{run.path} exists and is not a directory")
    existing = [n for n in _OURS if (run.path / n).exists()]
    if not existing:
        return []
    try:  # a run is a folder whose config.toml gankit reads; --force deletes nothing that is not one
        run.config()
    except GankitError as exc:
        raise GankitError(f"{run.path} holds {', '.join(existing)} but is not a gankit run ({exc}); choose "
                          "another --out, or delete it yourself") from None
    if not force:
        raise GankitError(f"{run.path} already holds a run; continue it with `gankit train --resume {run.path}`"
                          " or start over with --force (deletes its checkpoints, samples, stats and evaluations)")
    return existing + [n for n in _ALSO_OURS if (run.path / n).exists()]


_LOCKS: dict[Path, int] = {}  # run directory -> the open lock file this process holds on it
LOCK_NAME = ".lock"


def lock_run(run: RunDir) -> None:
    """Take the run directory's lock, or a clear error when another process trains in it (two trainers
    would interleave stats lines and delete each other's checkpoint writes). The lock is the kernel's
    (``flock``), so a killed process never leaves a stale one; it lasts until :func:`release_run`."""
    key = run.path.resolve()
    if key in _LOCKS:
        return
    run.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): no protection, as before
        pass
    except BlockingIOError:
        os.close(fd)
        raise GankitError(f"{run.path} is in use: another gankit process is training this run. Wait for it to "
                          "finish (or stop it), or choose another --out") from None
    except OSError as exc:  # a filesystem without locks (NFS without lockd, some FUSE mounts)
        warnings.warn(f"{run.path}: cannot lock the run directory ({exc.strerror}); nothing stops a second "
                      "trainer on it", stacklevel=2)
    _LOCKS[key] = fd


def release_run(path: str | os.PathLike[str]) -> None:
    """Give up this process's lock on a run directory (no-op when it holds none)."""
    fd = _LOCKS.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)


def create_run(path: str | os.PathLike[str], config: Config, *, force: bool = False) -> RunDir:
    """Make a new run directory; refuse to reuse one that holds a run unless ``force``."""
    run = RunDir(path)
    check_free(path, force=force)  # before the lock, which makes the directory
    lock_run(run)
    existing = check_free(path, force=force)
    # config.toml last: a --force interrupted part-way leaves a folder that is still a run (forceable)
    for name in sorted(existing, key=lambda n: n == "config.toml"):
        p = run.path / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    # config.toml first: a run killed while being created is then already resumable with --resume
    atomic_write_bytes(run.config_path, dumps(config).encode())
    return open_run(run.path)


def open_run(path: str | os.PathLike[str]) -> RunDir:
    """An existing run directory, ready to write into: its folders made, leftovers of killed writes removed."""
    run = RunDir(path)
    lock_run(run)
    run.samples.mkdir(parents=True, exist_ok=True)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    # leftovers of a kill inside save_checkpoint: a folder moved aside to be replaced goes back if its
    # replacement never arrived; a half-written one is removed
    for old in run.checkpoints.glob(".*.old.tmp"):
        final = run.checkpoints / old.name[1:-len(".old.tmp")]
        os.replace(old, final) if not final.exists() else shutil.rmtree(old, ignore_errors=True)
    for tmp in run.checkpoints.glob(".*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    return run


# ---- stats ----------------------------------------------------------------------------------------------

def append_stats(run: RunDir, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed, so a crash loses at most the line being written)."""
    with open(run.stats_path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def read_stats(run: RunDir, kind: str | None = None) -> list[dict[str, Any]]:
    """The complete records of ``stats.jsonl`` (a torn last line from a crash is ignored).

    Records carry a ``kind`` ("eval", "setup", schedule reports, ...) except the periodic training
    logs; ``kind="train"`` selects those, any other name its records, ``None`` all of them. A line that
    is not a JSON object with a numeric ``step`` (torn, hand-edited, or not even UTF-8 text) is skipped
    like a torn one, so a damaged line cannot stop plots, reports or a resume.
    """
    if not run.stats_path.exists():
        return []
    out = []
    for raw in run.stats_path.read_bytes().splitlines():
        record = parse_stats_line(raw)
        if record is not None and (kind is None or record.get("kind", "train") == kind):
            out.append(record)
    return out


def parse_stats_line(raw: bytes) -> dict[str, Any] | None:
    """One line of ``stats.jsonl`` as its record, or None for a line that is not a JSON object with a
    numeric ``step`` (torn, hand-edited, not UTF-8)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # (UnicodeDecodeError is a ValueError)
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    usable = isinstance(step, int | float) and not isinstance(step, bool) and math.isfinite(step)
    return record if usable else None


def truncate_stats(run: RunDir, step: int) -> None:
    """Drop records past ``step`` (work after the checkpoint a run resumes from is redone)."""
    kept = [r for r in read_stats(run) if r.get("step", 0) <= step]
    atomic_write_bytes(run.stats_path, "".join(json.dumps(r) + "\n" for r in kept).encode())


# ---- nested state <-> (tensors, JSON) ---------------------------------------------------------------------

def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor in a nested dict/list with ``{"__tensor__": key}`` and collect it."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _key(k: Any) -> Any:
    # optimizer state dicts use int keys; JSON objects only have string keys, so keep pairs
    if isinstance(k, bool | int | str):
        return k
    raise TypeError(f"unsupported key {k!r}")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# ---- checkpoints ----------------------------------------------------------------------------------------

def _fsync(path: Path) -> None:
    """fsync a file, or a folder (so a rename in it is on disk too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause() -> None:
    delay = os.environ.get(PAUSE_ENV)
    if delay:
        time.sleep(float(delay))


def _write_error(exc: BaseException, path: Path, previous: Path | None) -> GankitError | None:
    """A clear GankitError for a failed checkpoint write (disk full above all), or None if not an I/O error."""
    text = str(exc)
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in text \
        or "os error 28" in text
    if not full and not isinstance(exc, OSError | SafetensorError):
        return None
    what = "the disk is full" if full else f"the write failed ({getattr(exc, 'strerror', None) or text})"
    kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint existed"
    fix = "Free some space" if full else "Fix the cause"
    return GankitError(f"could not save checkpoint {path.name} in {path.parent}: {what}; the partial write was "
                       f"removed and {kept}. {fix}, then continue with `gankit train --resume "
                       f"{path.parent.parent}`")


def save_checkpoint(run: RunDir, *, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any],
                    keep: int, name: str | None = None) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``.

    With ``name`` (e.g. ``best``) the checkpoint goes into that folder instead, outside the rotation,
    and ``latest`` is left alone. A failed write (a full disk) removes its partial files, leaves
    every earlier checkpoint as it was, and raises GankitError saying so.
    """
    special = name is not None
    name = name or f"step-{step:08d}"
    final = run.checkpoints / name
    tmp = run.checkpoints / f".{name}.tmp"
    old = run.checkpoints / f".{name}.old.tmp"
    previous = ([p for p in list_checkpoints(run) if p.name != name] or [None])[-1]
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        state_tensors: dict[str, torch.Tensor] = {}
        skeleton = flatten_state(state, state_tensors, "s")
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        _pause()
        save_file(state_tensors, str(tmp / "state.safetensors"))
        _pause()
        (tmp / "state.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step,
                                                    "time": time.time(), "state": skeleton}))
        files = ["weights.safetensors", "state.safetensors", "state.json"]
        for f in files:
            _fsync(tmp / f)
        manifest = {f: file_digest(tmp / f) for f in files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / "manifest.json")
        _pause()
        if final.exists():  # (re)writing a folder that exists: move it aside first, delete it after
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(run.checkpoints)
        shutil.rmtree(old, ignore_errors=True)
        if not special:
            atomic_write_bytes(run.checkpoints / "latest", name.encode())
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        err = _write_error(exc, final, previous)
        if err is not None:
            raise err from None
        raise
    if special:
        return final
    for stale in list_checkpoints(run)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run: RunDir) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first (by step: ``step-100000000`` after ``step-99999999``)."""
    if not run.checkpoints.exists():
        return []
    found = [p for p in run.checkpoints.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isascii()
             and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def set_aside_damaged(run: RunDir, *, newer_than: Path) -> list[str]:
    """Rename the (damaged) checkpoints newer than the one a run resumed from to ``damaged-step-N``.

    They stay on disk for inspection, but out of the rotation, which keeps the newest by step and
    would otherwise delete the good checkpoints the resumed run writes before reaching their steps.
    Returns the names moved.
    """
    moved = []
    for p in list_checkpoints(run):
        if int(p.name[5:]) > int(newer_than.name[5:]):
            target = p.with_name(f"damaged-{p.name}")
            if target.exists():
                shutil.rmtree(target)
            os.replace(p, target)
            moved.append(p.name)
    if moved:
        warnings.warn(f"moved the damaged checkpoints {', '.join(moved)} aside in {run.checkpoints} (renamed "
                      "damaged-...)", stacklevel=2)
    return moved


def best_so_far(run: RunDir, restored: dict[str, Any]) -> dict[str, Any]:
    """The best evaluation a run has kept: the ``best`` checkpoint's own record when it is better than
    ``restored`` (the record in the checkpoint being restored, which may predate it)."""
    try:  # state.json alone (no tensors): the "best" entry of its top-level dict
        entries = json.loads((run.checkpoints / "best" / "state.json").read_text())["state"]["__dict__"]
        kept = unflatten_state(dict(entries).get("best", {}), {})
    except (OSError, ValueError, KeyError, TypeError):
        return restored
    if not isinstance(kept, dict):
        return restored
    if isinstance(kept.get("value"), int | float) and kept["value"] < restored.get("value", math.inf):
        return kept
    return restored


def check_checkpoint(path: Path) -> None:
    """Raise GankitError unless every file in ``path`` matches its manifest."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise GankitError(f"{path}: incomplete checkpoint (manifest unreadable: {exc})") from None
    for f, digest in manifest.items():
        p = path / f
        if not p.exists() or file_digest(p) != digest:
            raise GankitError(f"{path}: corrupted checkpoint ({f} does not match its checksum)")


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, state) of a verified checkpoint folder."""
    check_checkpoint(path)
    try:
        weights = load_file(str(path / "weights.safetensors"))
        tensors = load_file(str(path / "state.safetensors"))
        meta = json.loads((path / "state.json").read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise GankitError(f"{path}: unreadable checkpoint ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise GankitError(f"{path}: checkpoint format {meta.get('format_version')} is not {FORMAT_VERSION}")
    state = unflatten_state(meta["state"], tensors)
    state["step"] = meta["step"]
    return weights, state


def latest_good_checkpoint(run: RunDir) -> Path | None:
    """The newest checkpoint that matches its manifest; newer damaged ones are skipped with a warning.

    The newest by step, not the one ``latest`` names: a kill between renaming a checkpoint into
    place and updating ``latest`` leaves the pointer one behind, and that checkpoint is complete.
    """
    damaged: list[str] = []
    for path in reversed(list_checkpoints(run)):
        try:
            check_checkpoint(path)
        except GankitError as exc:
            damaged.append(str(exc))
            continue
        if damaged:
            warnings.warn(f"{damaged[0]}; using the previous good checkpoint {path.name}", stacklevel=2)
        return path
    if damaged:
        warnings.warn(f"no good checkpoint: {'; '.join(damaged)}", stacklevel=2)
    return None
