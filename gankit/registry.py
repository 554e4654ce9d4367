"""A tiny registry: named builders for nets, losses, datasets, schedules, metrics.

Tests are parametrized over ``names(kind)`` so every registered thing gets tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gankit.errors import GankitError, did_you_mean

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, dict[str, Any]] = {}


def register(kind: str, name: str) -> Callable[[F], F]:
    """Decorator: record ``obj`` under ``kind``/``name`` (names are unique per kind)."""

    def wrap(obj: F) -> F:
        table = _REGISTRY.setdefault(kind, {})
        if name in table:
            raise ValueError(f"{kind} {name!r} registered twice")
        table[name] = obj
        return obj

    return wrap


def get(kind: str, name: str) -> Any:
    """The object registered as ``kind``/``name``; a GankitError with suggestions if unknown."""
    table = _REGISTRY.get(kind, {})
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise GankitError(f"unknown {kind} {name!r}{did_you_mean(name, table)}; known: {known}")
    return table[name]


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind``."""
    return sorted(_REGISTRY.get(kind, {}))
