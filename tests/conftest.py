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
# Skips that mean a part of the test environment is missing (their reasons contain one of these).
# Locally they skip; CI (CI=true) sets that environment up on purpose, so there they fail instead.
CI_REQUIRED = ("real recordings not found", "scripts/install_system_deps.sh")


def in_ci() -> bool:
    """True when the CI environment variable says so (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REAL_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real recordings not found at {REAL_DATA}")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI, a skip for a missing part of the test environment (CI_REQUIRED) is a failure."""
    report = (yield).get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(key in reason for key in CI_REQUIRED):
        report.outcome = "failed"
        report.longrepr = f"CI=true, so this test must run, not skip: {reason.removeprefix('Skipped: ')}"


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


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: the tiny models train faster that way on a shared,
    loaded 2-core machine, where extra threads only contend (a test took 3x longer with them)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
