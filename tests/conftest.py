"""Shared fixtures. Tests run offline: no hub downloads, no wandb network."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("RESTOREKIT_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REAL_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real recordings not found at {REAL_DATA}")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def real_data() -> Path:
    """The shared folder of real recordings (tests using it are marked real_data)."""
    return REAL_DATA


def tone(sr: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A float32 sine, the simplest audio with a known spectrum."""
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def make_tone():
    return tone
