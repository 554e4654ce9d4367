"""Who trains when, as data: a schedule says which updates each training step makes.

A schedule may look at the game to decide, through a :class:`Probe` that measures D (in eval mode,
without training anything) on the step's real batch or on a fixed validation batch. Its state is
saved in checkpoints, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from gankit.registry import register


class Probe(Protocol):
    """Measurements of D: ``d_loss_real``, ``d_loss_fake``, ``d_acc_real``, ``d_acc_fake``, ``d_acc``,
    ``g_loss`` and ``g_acc`` (the fraction of fakes D takes for real)."""

    def batch(self) -> dict[str, float]:
        """On the step's real batch and fresh fakes."""
        ...

    def val(self) -> dict[str, float]:
        """On a fixed validation batch: half as many held-out real images as fixed noise vectors."""
        ...


@dataclass(frozen=True)
class Plan:
    """Updates to make in one training step, and in which order."""

    d_steps: int
    g_steps: int
    g_first: bool = False


@dataclass
class Report:
    """What a schedule says after a step: a record for stats.jsonl and/or a line for the console."""

    record: dict[str, Any] | None = None
    line: str | None = None


class Schedule:
    """Base class: a fixed plan, no state."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def plan(self, step: int) -> Plan:
        return Plan(self.cfg.d_steps, self.cfg.g_steps)

    def after_step(self, step: int, logs: dict[str, torch.Tensor], probe: Probe) -> Report | None:
        """Called after each completed step (``step`` counts completed steps)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@register("schedule", "alternate")
class Alternate(Schedule):
    """``d_steps`` D updates then ``g_steps`` G updates every step (n-critic when d_steps > 1)."""


@register("schedule", "thresholds")
class Thresholds(Schedule):
    """Seed 000's adaptive balance: train G batch by batch until it fools D on the validation batch
    at least ``g_target`` of the time, then D until it is right at least ``d_target`` of the time,
    and so on. A G phase and the D phase after it make one iteration. A phase also ends after
    ``max_phase_steps`` batches, so a stuck side cannot stall the run."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.phase = "g"
        self.phase_steps = 0
        self.iteration = 1

    def plan(self, step: int) -> Plan:
        return Plan(d_steps=int(self.phase == "d"), g_steps=int(self.phase == "g"))

    def after_step(self, step: int, logs: dict[str, torch.Tensor], probe: Probe) -> Report | None:
        self.phase_steps += 1
        v = probe.val()
        if self.phase == "g":
            val_loss, val_acc = v["g_loss"], v["g_acc"]
            loss, acc = float(logs["g_loss"]), float(logs["g_acc"])
            done = val_acc >= self.cfg.g_target
        else:
            val_loss, val_acc = v["d_loss"], v["d_acc"]
            loss, acc = float(logs["d_loss"]), float(logs["d_acc"])
            done = val_acc >= self.cfg.d_target
        if not done and self.phase_steps < self.cfg.max_phase_steps:
            return None
        who = "Gen" if self.phase == "g" else "Disc"
        line = (f"{who} status: val_loss: {val_loss:.5f} val_acc: {val_acc:.5f} loss: {loss:.5f} acc: {acc:.5f} "
                f"batches: {self.phase_steps}" + ("" if done else " (phase cap reached)"))
        record = {"kind": "schedule", "iteration": self.iteration, "phase": self.phase, "val_loss": val_loss,
                  "val_acc": val_acc, "loss": loss, "acc": acc, "batches": self.phase_steps, "reached": done}
        if self.phase == "d":
            line += f"\n{self.iteration} iteration(s)"
            self.iteration += 1
        self.phase = "d" if self.phase == "g" else "g"
        self.phase_steps = 0
        return Report(record=record, line=line)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "phase_steps": self.phase_steps, "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase, self.phase_steps, self.iteration = state["phase"], state["phase_steps"], state["iteration"]


@register("schedule", "pause-winner")
class PauseWinner(Schedule):
    """Seed 003's balance: every ``every`` steps measure D's error on the step's batch (with dropout
    off): error1 = D's loss on real plus fake, error2 = D's loss on the fakes, error = their mean.
    G then trains only while error < ``g_below``, D only while error > ``d_above``. G updates first."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.train_g = True
        self.train_d = True

    def plan(self, step: int) -> Plan:
        return Plan(d_steps=int(self.train_d), g_steps=int(self.train_g), g_first=True)

    def after_step(self, step: int, logs: dict[str, torch.Tensor], probe: Probe) -> Report | None:
        if step % self.cfg.every:
            return None
        m = probe.batch()
        error1 = m["d_loss_real"] + m["d_loss_fake"]
        error2 = m["d_loss_fake"]
        error = (error1 + error2) / 2
        self.train_g = error < self.cfg.g_below
        self.train_d = self.cfg.d_above < error
        record = {"kind": "schedule", "error1": error1, "error2": error2, "error": error, "train_g": self.train_g,
                  "train_d": self.train_d}
        line = f"{step} Error is {error1:f} {error2:f}" if step % (10 * self.cfg.every) == 0 else None
        return Report(record=record, line=line)

    def state_dict(self) -> dict[str, Any]:
        return {"train_g": self.train_g, "train_d": self.train_d}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_g, self.train_d = bool(state["train_g"]), bool(state["train_d"])


def build_schedule(cfg: Any) -> Schedule:
    """The schedule a :class:`gankit.config.ScheduleConfig` names."""
    from gankit import registry

    return registry.get("schedule", cfg.name)(cfg)
