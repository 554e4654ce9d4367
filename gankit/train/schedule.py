"""Who trains when, as data: a schedule says how many D and G updates each training step makes.

A schedule may look at the game (through ``probe``, which measures D on fresh batches) to decide;
its state is saved in checkpoints so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gankit.registry import register

Probe = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class Plan:
    """Updates to make in one training step."""

    d_steps: int
    g_steps: int


class Schedule:
    """Base: a fixed plan. Subclasses override :meth:`plan` and the state methods."""

    def __init__(self, *, d_steps: int = 1, g_steps: int = 1) -> None:
        self.fixed = Plan(d_steps, g_steps)

    def plan(self, step: int, probe: Probe) -> Plan:
        return self.fixed

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@register("schedule", "alternate")
class Alternate(Schedule):
    """``d_steps`` D updates then ``g_steps`` G updates every step (n-critic when d_steps > 1)."""


def build_schedule(cfg: Any) -> Schedule:
    """The schedule a :class:`gankit.config.ScheduleConfig` names."""
    from gankit import registry

    cls = registry.get("schedule", cfg.name)
    return cls(d_steps=cfg.d_steps, g_steps=cfg.g_steps)
