"""The HTML report: its files, best-per-column highlighting, and the page in headless Chromium."""
from __future__ import annotations

import functools
import http.server
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from restorekit.evaluation import main
from restorekit.evaluation_report import best_per_column
from test_evaluate import args, make_set
from tests_helpers import headless_chromium, local_http_server

ENHANCERS = "enhancers={identity: {name: identity}, gated: {name: spectral_gating}, webrtc: {name: webrtc_ns}}"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A comparison of three enhancers on three synthetic pairs, with its report folder."""
    root = tmp_path_factory.mktemp("report")
    d = make_set(root)
    main(args("compare_baselines.yaml", root / "ev", f"data.inputs={d['noisy']}", f"data.references={d['clean']}",
              "metrics=[{name: si_sdr}, {name: lsd}]", "suite.workers=1", "report.examples=2", ENHANCERS))
    return root / "ev" / "report"


def test_report_folder_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert (report / "chart.png").stat().st_size > 1000
    assert len(list((report / "spectrograms").rglob("*.png"))) == 2 * 4  # 2 examples x (3 systems + reference)
    assert len(list((report / "audio").rglob("*.*"))) == 2 * 4
    assert "file://" not in html and "http" not in html.replace('rel="icon"', "")  # relative links only


def test_best_per_column_respects_direction():
    summary = {
        "lower_is_better": ["lsd"],
        "systems": {
            "a": {"metrics": {"si_sdr": {"mean": 5.0}, "lsd": {"mean": 2.0}}},
            "b": {"metrics": {"si_sdr": {"mean": 9.0}, "lsd": {"mean": 3.0}}},
            "c": {"metrics": {"si_sdr": {"mean": None}, "lsd": {"mean": None}}},
        },
    }
    assert best_per_column(summary, ["si_sdr", "lsd"]) == {"si_sdr": "b", "lsd": "a"}


@pytest.fixture
def served(report):
    """The report folder over a localhost HTTP server in a thread; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(report))
    with local_http_server(handler) as url:
        yield url + "/"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def browser(tmp_path):
    with headless_chromium(tmp_path / "profile") as driver:
        yield driver


def test_report_page_in_headless_chromium(report, served, browser):
    from selenium.webdriver.common.by import By

    browser.get(served + "report.html")
    assert browser.title == "restorekit evaluation"
    rows = browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["identity", "gated", "webrtc"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#summary td.best")) == 2  # one per column
    sources = [a.get_attribute("src") for a in browser.find_elements(By.TAG_NAME, "audio")]
    assert len(sources) == 2 * 4
    for src in sources:
        assert (report / unquote(urlparse(src).path).lstrip("/")).is_file(), src
    images = browser.find_elements(By.TAG_NAME, "img")
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
