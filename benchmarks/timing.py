"""What the benchmark scripts share: timing a call, and writing a result file."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def times(fn: Callable[[], Any], reps: int, *, warm: int = 3) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn``, after ``warm`` untimed ones (kernel choice, allocations)."""
    for _ in range(warm):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median_ms(fn: Callable[[], Any], reps: int, *, warm: int = 3) -> float:
    """Median milliseconds of a call of ``fn`` (see :func:`times`)."""
    return statistics.median(times(fn, reps, warm=warm)) * 1e3


def save_json(path: str | Path, **payload: Any) -> Path:
    """``payload`` with the torch version and thread count, as JSON at ``path`` (its folder made)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), **payload}, indent=1))
    return out
