"""Seed 004's learning curves from RUN/stats.jsonl, with matplotlib's Agg backend (no display needed).

Panels, all against training steps (images seen on the top axis): D's and G's losses (raw, thin,
and smoothed, bold); D's accuracy on real and on generated images; the quality metrics recorded
during training (``"kind": "eval"`` records) when there are any.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import GankitError

LOSS_KEYS = ("d_loss", "g_loss")
ACC_KEYS = ("d_acc_real", "d_acc_fake")


def training_records(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loop's periodic records (those with images seen), not schedule or eval records."""
    return [r for r in stats if "kimg" in r and "kind" not in r and "step" in r]


def eval_series(stats: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Each metric of the ``"kind": "eval"`` records as (steps, values)."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in stats:
        if r.get("kind") != "eval":
            continue
        for k, v in r.items():
            if k not in ("step", "kind") and isinstance(v, int | float) and not isinstance(v, bool):
                out.setdefault(k, ([], []))
                out[k][0].append(int(r["step"]))
                out[k][1].append(float(v))
    return out


def smooth(values: np.ndarray, *, span: int | None = None) -> np.ndarray:
    """An exponential moving average, debiased at the start (no pull towards 0); NaNs are skipped."""
    n = len(values)
    span = span or max(1, n // 15)
    alpha = 2.0 / (span + 1)
    out = np.empty(n)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            avg = (1 - alpha) * avg + alpha * v
            weight = (1 - alpha) * weight + alpha
        out[i] = avg / weight if weight > 0 else np.nan
    return out


def _kimg_axis(ax: Any, steps: np.ndarray, kimg: np.ndarray) -> None:
    """A top axis in thousands of images seen (linear beyond the data, at the run's average rate)."""
    rate = kimg[-1] / steps[-1] if steps[-1] > 0 else 1.0
    xs = np.concatenate([[0.0], steps, [steps[-1] * 10 + 1e6]])
    ks = np.concatenate([[0.0], kimg, [kimg[-1] + rate * (steps[-1] * 9 + 1e6)]])
    order = np.argsort(xs, kind="stable")
    xs, ks = xs[order], np.maximum.accumulate(ks[order])
    sec = ax.secondary_xaxis("top", functions=(lambda s: np.interp(s, xs, ks), lambda k: np.interp(k, ks, xs)))
    sec.set_xlabel("thousands of images seen (kimg)")


def plot_curves(stats: list[dict[str, Any]], *, title: str = "") -> bytes:
    """The learning curves as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # never a window, even where a display exists
    import matplotlib.pyplot as plt

    train = training_records(stats)
    evals = eval_series(stats)
    if not train and not evals:
        raise GankitError("no training records in stats.jsonl yet: nothing to plot")
    panels = 2 + bool(evals)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.2 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    steps = np.array([r["step"] for r in train], dtype=np.float64)
    colours = {"d_loss": "tab:blue", "g_loss": "tab:orange", "d_acc_real": "tab:green", "d_acc_fake": "tab:red"}
    names = {"d_loss": "D loss", "g_loss": "G loss", "d_acc_real": "D accuracy on real",
             "d_acc_fake": "D accuracy on generated"}
    for ax, keys in ((axes[0], LOSS_KEYS), (axes[1], ACC_KEYS)):
        for k in keys:
            vals = np.array([r.get(k, np.nan) for r in train], dtype=np.float64)
            if not np.isfinite(vals).any():
                continue
            ax.plot(steps, vals, color=colours[k], alpha=0.3, linewidth=0.8)
            ax.plot(steps, smooth(vals), color=colours[k], linewidth=2, label=f"{names[k]} (smoothed)",
                    marker="o" if len(vals) < 3 else None)  # one or two logged steps: no line to see
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("accuracy")
    axes[1].set_ylim(-0.03, 1.03)
    if evals:
        ax = axes[2]
        for k, (s, v) in evals.items():
            ax.plot(s, v, marker="o", markersize=3, label=k)
        ax.set_ylabel("metric")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        if all(min(v) > 0 for _, v in evals.values()) and max(max(v) for _, v in evals.values()) > 20 * min(
                min(v) for _, v in evals.values()):
            ax.set_yscale("log")  # FID-like metrics fall by orders of magnitude
    axes[-1].set_xlabel("training step")
    if len(train):
        _kimg_axis(axes[0], steps, np.array([r["kimg"] for r in train], dtype=np.float64))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_run(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """``gankit plot``: RUN/curves.png (or ``out``) from the run's stats."""
    from gankit.data.files import atomic_write_bytes
    from gankit.run import RunDir, read_stats

    run = RunDir(run_dir)
    cfg = run.config()
    path = Path(out) if out else run.path / "curves.png"
    if path.suffix.lower() != ".png":
        raise GankitError(f"--out {path}: give a .png file name")
    atomic_write_bytes(path, plot_curves(read_stats(run), title=f"{cfg.name}: {run.path.name}"))
    return path
