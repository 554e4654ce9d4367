"""Test set-up: no downloads, a private cache, and the shared real datasets when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["GANKIT_OFFLINE"] = "1"  # tests never download

SHARED = Path(os.environ.get("GANKIT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache per test session: verification marks and decoded arrays never land next to the data.
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path_factory.getbasetemp() / "gankit-cache"))


@pytest.fixture
def shared_data() -> Path:
    """The real datasets folder (../shared/data), or skip."""
    if not (SHARED / "mnist").exists():
        pytest.skip(f"real datasets not found at {SHARED} (set GANKIT_DATA)")
    return SHARED
