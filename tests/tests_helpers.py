"""Helpers shared by tests (not fixtures): running the entry points in a subprocess."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


def run_py(args: list[str], timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root, offline, capturing text output."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=offline_env(**env), capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def local_http_server(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def headless_chromium(profile: Path, *flags: str) -> Iterator:
    """Debian's Chromium, headless, driven by Selenium, with the browser console logged. Skips
    when it is not installed (conftest turns that skip into a failure under CI=true)."""
    import shutil

    import pytest

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()) or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_system_deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", *flags):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
