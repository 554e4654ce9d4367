"""Divergence recovery: notice a run that blew up, roll it back, lower the learning rates, retry.

A run has diverged when a logged loss or a weight is NaN or infinite, when a loss exceeds
``train.loss_explosion_above``, or when a weight exceeds ``train.abort_weight_above``. The loop
then reloads the newest good checkpoint, multiplies both learning rates by
``train.divergence_lr_factor`` (cumulatively), and trains on. After ``train.divergence_retries``
rollbacks without getting past the step where it last diverged, the run stops with a message
naming the cause; the checkpoints stay as they were. With ``divergence_retries = 0`` (seed 003's
preset) the first divergence stops the run, as the seed's own code did.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from gankit.config import TrainConfig
from gankit.errors import GankitError


def largest_weight(nets: dict[str, nn.Module]) -> tuple[float, str]:
    """The largest |weight| over ``nets`` and its name (NaN wins, so it is never missed)."""
    best, where = 0.0, ""
    for prefix, net in nets.items():
        for name, p in net.named_parameters():
            m = float(p.detach().abs().max()) if p.numel() else 0.0
            if not m <= best:  # also catches NaN
                best, where = m, f"{prefix}.{name}"
    return best, where


class Recovery:
    """Decides whether training diverged and, if so, the learning-rate scale to retry with.

    Its state (the current scale, consecutive rollbacks, where it last diverged) is saved in
    every checkpoint, so a resumed run keeps the lowered learning rates.
    """

    def __init__(self, t: TrainConfig) -> None:
        self.retries = t.divergence_retries
        self.factor = t.divergence_lr_factor
        self.loss_limit = t.loss_explosion_above
        self.weight_limit = t.abort_weight_above
        self.lr_scale = 1.0
        self.attempts = 0  # rollbacks since the run last got past ``diverged_at``
        self.diverged_at: int | None = None
        self.weight_hit = False  # the last divergence was abort_weight_above (for its message)

    def check(self, losses: dict[str, float], nets: dict[str, nn.Module]) -> str | None:
        """Why the run has diverged (a short text), or None if it has not."""
        self.weight_hit = False
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            return ", ".join(f"{k}={losses[k]}" for k in bad)
        if self.loss_limit is not None:
            big = [k for k, v in losses.items() if "loss" in k and abs(v) > self.loss_limit]
            if big:
                # three digits, or as many as it takes to show the value above the limit (1.6 above 1.6 read wrong)
                return (", ".join(f"{k}={losses[k]:.3g}" if abs(float(f"{losses[k]:.3g}")) > self.loss_limit
                                  else f"{k}={losses[k]!r}" for k in big)
                        + f" above train.loss_explosion_above = {self.loss_limit:g}")
        biggest, where = largest_weight(nets)
        if not math.isfinite(biggest):
            return f"{where} is {biggest}"
        if self.weight_limit is not None and biggest > self.weight_limit:
            self.weight_hit = True
            return f"|{where}| reached {biggest:.3g}, above train.abort_weight_above = {self.weight_limit:g}"
        return None

    def rollback(self, *, step: int, reason: str, to: Path | None, checkpoints: Path) -> float:
        """Record a divergence at ``step``; the new learning-rate scale, or GankitError when out of retries."""
        if self.weight_hit and self.retries == 0:  # seed 003's guard, worded as before
            raise GankitError(f"training stopped at step {step}: {reason}; the last checkpoint in {checkpoints} "
                              "is intact")
        if self.retries == 0:
            raise GankitError(f"training diverged at step {step}: {reason}; the last checkpoint in {checkpoints} "
                              "is intact (train.divergence_retries = 0: no rollback)")
        if to is None:
            raise GankitError(f"training diverged at step {step}: {reason}; no good checkpoint in {checkpoints} "
                              "to roll back to")
        if self.attempts >= self.retries:
            raise GankitError(
                f"training diverged at step {step}: {reason}; it still diverges after {self.attempts} rollback(s) "
                f"with the learning rates lowered to {self.lr_scale:g} x their configured values. The checkpoints "
                f"in {checkpoints} are intact (the last good one is {to.name}); lower optim.g.lr / optim.d.lr, or "
                "raise train.divergence_retries")
        self.attempts += 1
        self.diverged_at = step if self.diverged_at is None else max(self.diverged_at, step)
        self.lr_scale *= self.factor
        return self.lr_scale

    def saved(self, step: int) -> None:
        """A checkpoint at ``step`` was written: past the last divergence, the retry count starts over."""
        if self.diverged_at is not None and step > self.diverged_at:
            self.attempts, self.diverged_at = 0, None

    def state_dict(self) -> dict[str, Any]:
        return {"lr_scale": self.lr_scale, "attempts": self.attempts, "diverged_at": self.diverged_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.attempts = int(state.get("attempts", 0))
        self.diverged_at = state.get("diverged_at")
