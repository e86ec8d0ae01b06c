"""Shared fixtures. Real exchange data comes from ../shared/data (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SIZEGUARD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the test (fails under CI) when the data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"needs {path} (the shared exchange data beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must have it")
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    return shared_path()
