"""The run directory: everything about a run, written as it goes and readable after a crash.

Layout::

    RUN/config.toml          the resolved config
    RUN/stats.jsonl          one JSON record per logged step (append-only)
    RUN/samples/             fixed-noise grids, step-NNNNNNNN.png
    RUN/checkpoints/step-NNNNNNNN/{weights,state}.safetensors, state.json, manifest.json
    RUN/checkpoints/latest   the name of the newest complete checkpoint

Checkpoints hold tensors in safetensors and everything else in JSON (never pickle). Each is
written into a temporary folder, fsynced, checksummed in a manifest, then renamed into place.
"""

from __future__ import annotations

import json
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
_OURS = ("config.toml", "stats.jsonl", "samples", "checkpoints")


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
    if existing and not force:
        raise GankitError(f"{run.path} already holds a run; continue it with `gankit train --resume {run.path}`"
                          " or start over with --force (deletes its checkpoints, samples and stats)")
    return existing


def create_run(path: str | os.PathLike[str], config: Config, *, force: bool = False) -> RunDir:
    """Make a new run directory; refuse to reuse one that holds a run unless ``force``."""
    run = RunDir(path)
    existing = check_free(path, force=force)
    if existing:
        for name in existing:
            p = run.path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    run.samples.mkdir(parents=True, exist_ok=True)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run.config_path, dumps(config).encode())
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
    logs; ``kind="train"`` selects those, any other name its records, ``None`` all of them.
    """
    if not run.stats_path.exists():
        return []
    out = []
    for line in run.stats_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if kind is None or record.get("kind", "train") == kind:
            out.append(record)
    return out


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
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run: RunDir, *, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any],
                    keep: int, name: str | None = None) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``.

    With ``name`` (e.g. ``best``) the checkpoint goes into that folder instead, outside the rotation,
    and ``latest`` is left alone.
    """
    special = name is not None
    name = name or f"step-{step:08d}"
    final = run.checkpoints / name
    tmp = run.checkpoints / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        state_tensors: dict[str, torch.Tensor] = {}
        skeleton = flatten_state(state, state_tensors, "s")
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        save_file(state_tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step,
                                                    "time": time.time(), "state": skeleton}))
        files = ["weights.safetensors", "state.safetensors", "state.json"]
        for f in files:
            _fsync(tmp / f)
        manifest = {f: file_digest(tmp / f) for f in files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / "manifest.json")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if special:
        return final
    atomic_write_bytes(run.checkpoints / "latest", name.encode())
    for old in list_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run: RunDir) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first."""
    if not run.checkpoints.exists():
        return []
    return sorted(p for p in run.checkpoints.iterdir() if p.is_dir() and p.name.startswith("step-"))


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
    """The newest checkpoint that verifies; older ones are tried (with a warning) if it does not."""
    candidates = list_checkpoints(run)
    pointer = run.checkpoints / "latest"
    if pointer.exists():
        named = run.checkpoints / pointer.read_text().strip()
        if named in candidates:
            candidates.remove(named)
            candidates.append(named)
    for path in reversed(candidates):
        try:
            check_checkpoint(path)
            if path is not candidates[-1]:
                warnings.warn(f"{candidates[-1]} is damaged; using the previous good checkpoint {path.name}",
                              stacklevel=2)
            return path
        except GankitError:
            continue
    return None
