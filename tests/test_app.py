"""The web demo (restorekit/app.py): the restore function behind the page, the command, and the
page itself in headless Chromium with a real upload."""
from __future__ import annotations

import base64
import io
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit import audio
from restorekit.app import Demo, build_app, launch
from restorekit.cli import main
from restorekit.datasets.demo import demo_corpus_dir
from restorekit.errors import ConfigError
from tests_helpers import headless_chromium

OFFERED = ["identity", "spectral_gating", "webrtc_ns"]
CHOSEN = ["identity", "spectral_gating"]


@pytest.fixture(scope="module")
def speech() -> Path:
    """A real utterance of the demo corpus (22.05 kHz, about 2.7 s)."""
    return min(demo_corpus_dir("valid").rglob("*.wav"))


@pytest.fixture(scope="module")
def demo() -> Demo:
    return Demo(OFFERED, device="cpu")


def expected(demo: Demo, name: str, path: Path) -> np.ndarray:
    """What ``restorekit.load(name)`` makes of the file, as the page's 16-bit WAV holds it."""
    out, _ = demo.restorers[name](*audio.load(path))
    return np.round(np.clip(out, -1, 1) * 32767) / 32767


def test_restore_makes_one_output_per_chosen_restorer(demo, speech):
    """Mutation caught: Demo._restore_one saving the input wave instead of the restorer's output."""
    run = demo.restore(speech, ["spectral_gating", "identity"])
    assert [r.name for r in run.outputs] == ["spectral_gating", "identity"]
    info = sf.info(speech)
    for r in run.outputs:
        wave, sr = audio.load(r.path)
        assert r.path.name == f"{speech.stem}_{r.name}.wav"
        assert sr == r.sample_rate == info.samplerate
        assert len(wave) == info.frames and r.seconds == pytest.approx(info.duration, abs=1e-3)
        np.testing.assert_allclose(wave, expected(demo, r.name, speech), atol=1e-4)
        assert r.spectrogram.stat().st_size > 1000
    original, _ = audio.load(speech)
    assert np.abs(audio.load(run.outputs[0].path)[0] - original).max() > 1e-3  # spectral gating changed it
    assert run.input_spectrogram.is_file() and run.input_spectrogram != run.outputs[0].spectrogram


def test_restore_refuses_unknown_or_missing_choices(demo, speech):
    with pytest.raises(ConfigError, match=r"unknown restorer 'spectral_gateing'\. Did you mean 'spectral_gating'\? "
                                          r"This page offers: identity, spectral_gating, webrtc_ns"):
        demo.restore(speech, ["identity", "spectral_gateing"])
    with pytest.raises(ConfigError, match="no restorer chosen; choose one or more of identity, spectral_gating"):
        demo.restore(speech, [])
    with pytest.raises(ConfigError, match="no input; upload or record speech first"):
        demo.restore(None, ["identity"])


def test_app_command_errors_are_one_line(capsys):
    assert main(["app", "spectral_gateing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown restorer 'spectral_gateing'. Did you mean 'spectral_gating'?" in err
    assert main(["app", "--port", "x"]) == 2
    assert "argument --port: invalid int value: 'x'" in capsys.readouterr().err
    assert main(["app", "--help"]) == 0
    assert "usage: restorekit app [EXPORT | HUB_ID | ENHANCER ...]" in capsys.readouterr().out


def test_missing_gradio_is_one_line_with_the_extra(monkeypatch, demo):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` raise ImportError
    with pytest.raises(ConfigError, match=r"the web demo needs gradio: pip install 'restorekit\[app\]'"):
        build_app(demo=demo)


# ---------------------------------------------------------------- the page in headless Chromium


@pytest.fixture(scope="module")
def served(demo):
    """The page for OFFERED on a free loopback port, served from a thread; yields its URL."""
    pytest.importorskip("gradio", reason="the web demo's extra (restorekit[app]) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = build_app(demo=demo)
    _, url, _ = launch(page, port=port, block=False)
    yield url
    page.close()


@pytest.fixture
def chromium(tmp_path):
    with headless_chromium(tmp_path / "profile", "--autoplay-policy=no-user-gesture-required") as driver:
        driver.set_script_timeout(30)
        yield driver


FETCH_B64 = """const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => {
  let s = ""; new Uint8Array(b).forEach(x => s += String.fromCharCode(x)); done(btoa(s)); });"""


def test_page_restores_an_upload_in_headless_chromium(demo, speech, served, chromium):
    """Upload through the page's file input, choose two of three restorers, press Restore: each
    chosen restorer's <audio> plays a file as long as the input holding that restorer's output,
    with a spectrogram and a download; the third stays hidden; no console errors.

    Mutation caught: _on_restore giving each player the uploaded input instead of its output
    (``path`` for ``str(r.path)``): the player's file is not ``<stem>_<restorer>.wav`` nor its output."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium
    browser.get(served)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#input input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#input input[type=file]").send_keys(str(speech))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#input a[data-testid=download-link]"))  # uploaded
    browser.find_element(By.XPATH, "//*[@id='restorers']//label[contains(., 'spectral_gating')]").click()
    browser.find_element(By.ID, "restore").click()

    players = {name: f"#restored-{name} audio" for name in CHOSEN}
    loaded = "const a = document.querySelector(arguments[0]); return a && a.src && a.readyState >= 1;"
    wait.until(lambda b: all(b.execute_script(loaded, css) for css in players.values()))
    for name, css in players.items():
        player = browser.find_element(By.CSS_SELECTOR, css)
        assert player.get_attribute("src").endswith(f"/{speech.stem}_{name}.wav")
        duration = browser.execute_script("return document.querySelector(arguments[0]).duration", css)
        assert duration == pytest.approx(sf.info(speech).duration, abs=0.05), name
        served_wave, sr = sf.read(io.BytesIO(base64.b64decode(
            browser.execute_async_script(FETCH_B64, player.get_attribute("src")))), dtype="float32")
        assert sr == sf.info(speech).samplerate
        np.testing.assert_allclose(served_wave, expected(demo, name, speech), atol=1e-4, err_msg=name)
        link = browser.find_element(By.CSS_SELECTOR, f"#restored-{name} a[download]")
        assert link.get_attribute("download") == f"{speech.stem}_{name}.wav"
        image = browser.find_element(By.CSS_SELECTOR, f"#spectrogram-{name} img")
        assert image.get_attribute("src").endswith(f"/{speech.stem}_{name}.png")
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    assert browser.find_element(By.CSS_SELECTOR, "#spectrogram-input img").get_attribute("src").endswith(".png")
    assert not browser.find_elements(By.CSS_SELECTOR, "#restored-webrtc_ns audio[src]")  # not chosen
    assert not any(e.is_displayed() for e in browser.find_elements(By.ID, "restored-webrtc_ns"))
    downloads = browser.find_elements(By.CSS_SELECTOR, "#downloads a[download]")
    assert sorted(a.get_attribute("download") for a in downloads) == sorted(f"{speech.stem}_{n}.wav" for n in CHOSEN)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
