"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The real SBFSEM pair, next to the repository (../shared/data) as on CI.
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sbfsem-chloroplasts"


@pytest.fixture
def real_data_dir() -> Path:
    """Folder of the real SBFSEM chloroplast pair; skips when it is absent."""
    if not (REAL_DATA / "images.tif").is_file():
        pytest.skip(f"real SBFSEM data not found at {REAL_DATA}")
    return REAL_DATA
