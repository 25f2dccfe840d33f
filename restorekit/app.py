"""The web demo: ``restorekit app [EXPORT | HUB_ID | ENHANCER ...]``.

A Gradio page to upload or record speech, choose one or more restorers, and hear and see the
input and every output side by side (players, spectrograms, downloads). Restorers come from
``restorekit.load``, so the page restores exactly as ``restorekit restore`` does. With no
restorer named, the page offers the baselines that are installed.

Gradio is an optional extra (``pip install 'restorekit[app]'``), imported only when a page is
built, so ``import restorekit`` never needs it. ``build_app`` returns the page without serving
it; ``launch`` serves it (tests pass ``block=False``).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restorekit import audio
from restorekit.errors import ConfigError, RestorekitError, one_line
from restorekit.registry import suggest

BASELINES = ("identity", "spectral_gating", "webrtc_ns", "rnnoise", "deepfilternet3")
# results play in the browser's own <audio> player: the spectrogram beside it already shows the signal
PLAYER = {"show_recording_waveform": False}


@dataclass(frozen=True)
class Restored:
    """One restorer's output: a 16-bit WAV at ``sample_rate`` Hz and its spectrogram PNG."""

    name: str
    path: Path
    sample_rate: int
    seconds: float
    spectrogram: Path


@dataclass(frozen=True)
class Run:
    """What one press of the button made: the input's spectrogram and the outputs, in chosen order."""

    input_spectrogram: Path
    outputs: list[Restored]


class Demo:
    """The restorers a page offers and the function behind its button (usable without a browser).

    ``specs``: export folders, Hub ids or enhancer names; none offers the installed baselines.
    Outputs go to a temporary folder removed when the demo is collected or the process exits.
    """

    def __init__(self, specs: Sequence[str] = (), device: str = "auto") -> None:
        self.restorers = load_restorers(specs, _device(device))
        if not self.restorers:
            raise ConfigError(f"app: none of the baselines ({', '.join(BASELINES)}) loads; name an export folder")
        self._tmp = tempfile.TemporaryDirectory(prefix="restorekit-app-")

    @property
    def names(self) -> list[str]:
        return list(self.restorers)

    def restore(self, path: str | Path | None, chosen: Sequence[str]) -> Run:
        """Restore the audio file ``path`` with each restorer in ``chosen`` (names from ``names``)."""
        if not path:
            raise ConfigError("app: no input; upload or record speech first")
        if not chosen:
            raise ConfigError(f"app: no restorer chosen; choose one or more of {', '.join(self.names)}")
        for name in chosen:
            if name not in self.restorers:
                raise ConfigError(f"app: unknown restorer '{name}'.{suggest(name, self.names)} "
                                  f"This page offers: {', '.join(self.names)}")
        from restorekit.evaluation_report import write_spectrogram

        path = Path(path)
        wave, sr = audio.load(path)
        folder = Path(tempfile.mkdtemp(dir=self._tmp.name, prefix="run-"))
        outputs = [self._restore_one(name, wave, sr, folder / f"{path.stem}_{_slug(name)}.wav") for name in chosen]
        return Run(write_spectrogram(path, folder / f"{path.stem}.png"), outputs)

    def _restore_one(self, name: str, wave: Any, sr: int, dst: Path) -> Restored:
        from restorekit.evaluation_report import write_spectrogram

        out, out_sr = self.restorers[name](wave, sr)
        audio.save(dst, out, out_sr)
        return Restored(name, dst, out_sr, len(out) / out_sr, write_spectrogram(dst, dst.with_suffix(".png")))


def load_restorers(specs: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    """``{spec: Restorer}``; a spec that does not load is an error. No specs: the baselines that load."""
    import restorekit

    if specs:
        return {spec: _load(spec, device) for spec in dict.fromkeys(specs)}
    offered = {}
    for name in BASELINES:
        try:
            offered[name] = restorekit.load(name)
        except (RestorekitError, ImportError) as exc:  # an optional package ([baselines]) is missing
            print(f"app: not offering {name}: {one_line(exc)}", file=sys.stderr)
    return offered


def _load(spec: str, device: str) -> Any:
    import restorekit
    from restorekit.enhancers import ENHANCERS

    if "/" not in spec and spec not in ENHANCERS and not Path(spec).exists():
        names = [n for n in ENHANCERS.names() if n != "restorekit"]  # that one is an export, named by its folder
        raise ConfigError(f"app: unknown restorer '{spec}'.{suggest(spec, names)} Name an export folder, "
                          f"a Hub id (user/repo) or an enhancer: {', '.join(names)}")
    return restorekit.load(spec, device=device)


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _slug(name: str) -> str:
    """A restorer name as a file-name part: ``runs/x/export`` -> ``runs_x_export``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_.") or "restored"


def _gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise ConfigError("the web demo needs gradio: pip install 'restorekit[app]'") from exc
    return gradio


INTRO = """# restorekit
Upload or record speech, choose restorers and press **Restore**. The input and each output play
side by side with their spectrograms; download an output from its player or all of them below."""


def build_app(specs: Sequence[str] = (), device: str = "auto", demo: Demo | None = None) -> Any:
    """The page (a ``gradio.Blocks``, not yet served) for ``specs``, or for an existing ``demo``."""
    demo = demo or Demo(specs, device)  # first: a mistyped restorer is reported without importing gradio
    gr = _gradio()
    with gr.Blocks(title="restorekit", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            source = gr.Audio(sources=["upload", "microphone"], type="filepath", label="speech", buttons=["download"],
                              elem_id="input")
            with gr.Column():
                chosen = gr.CheckboxGroup(demo.names, value=demo.names[:1], label="restorers", elem_id="restorers")
                button = gr.Button("Restore", variant="primary", elem_id="restore")
        with gr.Row():  # input and outputs side by side; a column shows once its restorer has run
            with gr.Column(min_width=280):
                shown = [gr.Audio(label="input", interactive=False, waveform_options=PLAYER, elem_id="played-input"),
                         gr.Image(label="input spectrogram", interactive=False, elem_id="spectrogram-input")]
            slots = [_slot(gr, name) for name in demo.names]
        files = gr.File(label="all outputs", file_count="multiple", interactive=False, visible=False,
                        elem_id="downloads")
        button.click(lambda path, names: _on_restore(gr, demo, path, names), [source, chosen],
                     [*shown, *(c for slot in slots for c in slot), files])
    return page


def _slot(gr: Any, name: str) -> tuple[Any, Any, Any]:
    slug = _slug(name)
    with gr.Column(min_width=280, visible=False) as column:
        player = gr.Audio(label=name, interactive=False, buttons=["download"], waveform_options=PLAYER,
                          elem_id=f"restored-{slug}")
        image = gr.Image(label=f"{name} spectrogram", interactive=False, elem_id=f"spectrogram-{slug}")
    return column, player, image


def _on_restore(gr: Any, demo: Demo, path: str | None, chosen: list[str]) -> list[Any]:
    try:
        run = demo.restore(path, chosen)
    except RestorekitError as exc:
        raise gr.Error(one_line(exc)) from exc
    by_name = {r.name: r for r in run.outputs}
    values: list[Any] = [path, str(run.input_spectrogram)]
    for name in demo.names:
        r = by_name.get(name)
        values += [gr.Column(visible=r is not None), str(r.path) if r else None, str(r.spectrogram) if r else None]
    return [*values, gr.File(value=[str(r.path) for r in run.outputs], visible=True)]


def launch(page: Any, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True) -> tuple[Any, str, str | None]:
    """Serve ``page``; ``block=False`` returns at once (the server runs in a thread; ``page.close()``)."""
    return page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                       quiet=not block)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # a user mistake: one line, exit 2 (restorekit.cli)
        raise ConfigError(f"app: {message} (see restorekit app --help)")


def main(args: Sequence[str]) -> int:
    """``restorekit app [SPEC ...] [--host H] [--port P] [--share] [--device D]``; serves until Ctrl-C."""
    parser = _Parser(prog="restorekit app", add_help=False)
    parser.add_argument("restorers", nargs="*")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--share", action="store_true")
    parser.add_argument("--device", default="auto")
    opts = parser.parse_args(list(args))
    launch(build_app(opts.restorers, opts.device), opts.host, opts.port, opts.share)
    return 0
