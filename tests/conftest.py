"""Shared fixtures: where the shared real data sets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The data sets are not ours to ship (see ../shared/data/README.md), so they
# stay beside the project and the tests read them in place.
_DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory; SESSIONPUSH_DATA overrides the default."""
    path = Path(os.environ.get("SESSIONPUSH_DATA", _DEFAULT_DATA)).resolve()
    if not path.is_dir():
        pytest.fail(f"real data sets not found at {path}: set SESSIONPUSH_DATA")
    return path
