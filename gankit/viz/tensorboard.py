"""TensorBoard alongside the JSONL stats, for people who already watch runs with it.

The writer follows the run directory instead of the training loop: it reads the records appended to
RUN/stats.jsonl since it last looked and the pictures that appeared in RUN/samples/ and RUN/judge/,
and writes them as scalars and images into RUN/tensorboard/. So the loop needs no knowledge of it,
and what TensorBoard shows is exactly what the stats say. TensorBoard itself is optional
(``pip install 'gankit[tensorboard]'``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gankit.errors import GankitError
from gankit.run import parse_stats_line
from gankit.viz.animate import sample_frames


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package (which PyTorch's SummaryWriter needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def wanted(setting: bool | str) -> bool:
    """train.tensorboard: true (required), false, or "auto" (when installed)."""
    if setting == "auto":
        return tensorboard_available()
    if setting and not tensorboard_available():
        raise GankitError("train.tensorboard = true, but the tensorboard package is not installed: "
                          "pip install 'gankit[tensorboard]' (or set train.tensorboard = \"auto\")")
    return bool(setting)


def tag(key: str, record: dict[str, Any]) -> str:
    """A TensorBoard tag grouping a stats key: loss/, accuracy/, lr/, progress/, or the record's kind."""
    kind = record.get("kind")
    if kind:  # eval, schedule (seed 000's val_loss, val_acc, ...), setup, rollback: grouped by their kind
        return f"{kind}/{key}"
    if "loss" in key:
        return f"loss/{key}"
    if "acc" in key:
        return f"accuracy/{key}"
    if key.startswith("lr"):
        return f"lr/{key}"
    return f"progress/{key}"


class TensorBoardLog:
    """Mirrors a run directory's stats and pictures into RUN/tensorboard/ (call :meth:`sync`)."""

    def __init__(self, run_dir: str | Path, *, resume: bool = False) -> None:
        """``resume``: what the run directory already holds was written to TensorBoard by the earlier session."""
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir)
        self.writer = SummaryWriter(log_dir=str(self.path / "tensorboard"))
        stats = self.path / "stats.jsonl"
        self.offset = stats.stat().st_size if resume and stats.exists() else 0
        self.seen: set[Path] = set()
        if resume:
            for folder in ("samples", "judge"):
                self.seen.update(p for _, p in sample_frames(self.path / folder))

    def sync(self) -> int:
        """Write what is new since the last call; returns how many scalars were written."""
        n = 0
        stats = self.path / "stats.jsonl"
        if stats.exists():
            with open(stats, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
            for line in chunk[:end].splitlines():
                record = parse_stats_line(line)
                if record is None:
                    continue
                step = int(record["step"])
                for k, v in record.items():
                    if k not in ("step", "kind") and isinstance(v, int | float) and not isinstance(v, bool):
                        self.writer.add_scalar(tag(k, record), v, step)
                        n += 1
            self.offset += end
        for folder, name in (("samples", "samples/fixed_noise"), ("judge", "samples/judged")):
            for step, p in sample_frames(self.path / folder):
                if p not in self.seen:
                    with Image.open(p) as im:
                        self.writer.add_image(name, np.asarray(im.convert("RGB")), step, dataformats="HWC")
                    self.seen.add(p)
        self.writer.flush()
        return n

    def close(self) -> None:
        self.sync()
        self.writer.close()
