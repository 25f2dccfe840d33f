"""The HTML report of an evaluation: a self-contained ``report/`` folder.

``report.html`` holds a table of systems x metrics (mean ± 95% CI, best per column
highlighted), a bar chart (chart.png), and per-file rows with audio players and spectrograms
for a few example files. Audio is copied into ``report/audio/`` and images written to
``report/spectrograms/``, all linked relatively, so the folder can be moved or served as is.
"""
from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from restorekit.audio import load
from restorekit.config import atomic_write_text
from restorekit.metrics.suite import SMALL_N, FileResult, format_stat, small_samples

REFERENCE = "reference"

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:middle}
th:first-child,td:first-child{text-align:left}
td.best{background:#c8f0c8;font-weight:bold}
.warn{background:#fff3cd;padding:4px 8px}
img.spec{height:120px}
audio{width:240px}
"""


def best_per_column(summary: dict[str, Any], keys: Sequence[str]) -> dict[str, str]:
    """Value key -> the system with the best mean (lowest where lower is better)."""
    lower = set(summary.get("lower_is_better", []))
    best = {}
    for k in keys:
        means = {s: v["metrics"][k]["mean"] for s, v in summary["systems"].items() if v["metrics"][k]["mean"] is not None}
        if means:
            best[k] = (min if k in lower else max)(means, key=means.get)
    return best


def summary_table(summary: dict[str, Any], keys: Sequence[str]) -> str:
    best = best_per_column(summary, keys)
    lower = set(summary.get("lower_is_better", []))
    head = "".join(f"<th>{html.escape(k)}{' ↓' if k in lower else ' ↑'}</th>" for k in keys)
    rows = []
    for system, s in summary["systems"].items():
        cells = "".join(
            f'<td class="{"best" if best.get(k) == system else ""}">{html.escape(format_stat(s["metrics"][k]))}</td>'
            for k in keys
        )
        info = "".join(f"<br><small>{html.escape(f'{k}: {v}')}</small>" for k, v in (s.get("info") or {}).items())
        rows.append(f'<tr class="system"><td>{html.escape(system)}{info}</td><td>{s["files"]}</td>{cells}</tr>')
    return f'<table id="summary"><thead><tr><th>system</th><th>files</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# Scales of bounded metrics: bars start at the scale's floor and the axis stays on the scale,
# so a wide interval (few files) cannot stretch a PESQ panel down to -10.
SCALES: dict[str, tuple[float, float]] = {
    "pesq_wb": (1.0, 4.64), "pesq_nb": (1.0, 4.64), "stoi": (0.0, 1.0), "estoi": (0.0, 1.0),
    "dnsmos_sig": (1.0, 5.0), "dnsmos_bak": (1.0, 5.0), "dnsmos_ovrl": (1.0, 5.0), "dnsmos_p808": (1.0, 5.0),
    "plcmos": (1.0, 5.0), "utmos": (1.0, 5.0), "wvmos": (1.0, 5.0), "utmosv2": (1.0, 5.0), "speaker_similarity": (-1.0, 1.0),
}
def chart_figure(summary: dict[str, Any], keys: Sequence[str]) -> Any:
    """One bar panel per value key: each system's mean with its 95% CI, n under each bar."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; set here, not at import
    import matplotlib.pyplot as plt

    systems = list(summary["systems"])
    cols = min(4, max(1, len(keys)))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        _panel(ax, k, [summary["systems"][s]["metrics"][k] for s in systems], systems)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _panel(ax: Any, key: str, stats: list[dict[str, Any]], systems: list[str]) -> None:
    means = np.array([st["mean"] if st["mean"] is not None else np.nan for st in stats])
    errs = np.array([st["ci95_half"] or 0.0 for st in stats])
    low, high = SCALES.get(key, (min(0.0, np.nanmin(means - errs, initial=0.0)), None))
    ax.bar(range(len(systems)), means - low, bottom=low, yerr=errs, capsize=3, color="#4a7fb5")
    labels = [f"{s}\nn={st['n']}" + (" (few)" if 0 < st["n"] < SMALL_N else "") for s, st in zip(systems, stats)]
    ax.set_xticks(range(len(systems)), labels, rotation=30, ha="right", fontsize=7)
    if key in SCALES:
        ax.set_ylim(low, high)
    ax.set_title(key, fontsize=9)


def write_chart(summary: dict[str, Any], keys: Sequence[str], path: Path) -> Path:
    """``chart_figure`` saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = chart_figure(summary, keys)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_spectrogram(audio_path: str | Path, png: Path) -> Path:
    """A log-magnitude spectrogram image (dB, 0 to Nyquist) of one file."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wave, sr = load(audio_path)
    db = librosa.amplitude_to_db(np.abs(librosa.stft(wave, n_fft=1024, hop_length=256)), ref=np.max, top_db=80)
    fig, ax = plt.subplots(figsize=(4, 1.6))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, len(wave) / sr, 0, sr / 2000))
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def _media(report_dir: Path, system: str, name: str, source: str) -> tuple[str, str]:
    """Copy one file's audio into the report, draw its spectrogram; return both relative links."""
    src = Path(source)
    audio = report_dir / "audio" / system / f"{name}{src.suffix}"
    audio.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, audio)
    png = write_spectrogram(src, report_dir / "spectrograms" / system / f"{name}.png")
    return _link(audio, report_dir), _link(png, report_dir)


def _link(path: Path, root: Path) -> str:
    return quote(path.relative_to(root).as_posix())


def _cell(report_dir: Path, system: str, name: str, source: str | None) -> str:
    if not source or not Path(source).is_file():
        return "<td>(no audio)</td>"
    audio, png = _media(report_dir, system, name, source)
    return (f'<td><audio controls preload="none" src="{audio}"></audio><br>'
            f'<img class="spec" src="{png}" alt="spectrogram {html.escape(system)} {html.escape(name)}"></td>')


def per_file_section(report_dir: Path, results: Sequence[FileResult], keys: Sequence[str], examples: int) -> str:
    """Rows of the first ``examples`` file names: per system its player, spectrogram and values."""
    names = sorted({r.job.name for r in results})[: max(0, examples)]
    rows = []
    for name in names:
        mine = [r for r in results if r.job.name == name]
        ref = next((r.job.reference for r in mine if r.job.reference), None)
        if ref:
            rows.append(f'<tr class="file"><td>{html.escape(name)}</td><td>{REFERENCE}</td>'
                        f'{_cell(report_dir, REFERENCE, name, ref)}<td></td></tr>')
        for r in mine:
            vals = ", ".join(f"{k}={r.values[k]:.3f}" for k in keys if k in r.values)
            fails = "; ".join(f"{m} failed: {why}" for m, why in r.failures.items())
            rows.append(f'<tr class="file"><td>{html.escape(name)}</td><td>{html.escape(r.job.system)}</td>'
                        f'{_cell(report_dir, r.job.system, name, r.job.estimate)}'
                        f'<td>{html.escape(vals)}<br>{html.escape(fails)}</td></tr>')
    return ('<table id="files"><thead><tr><th>file</th><th>system</th><th>audio / spectrogram</th>'
            f'<th>values</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _small_n_warning(summary: dict[str, Any], keys: Sequence[str]) -> str:
    few = small_samples(summary, keys)
    if not few:
        return ""
    return (f'<p id="small-n" class="warn">Fewer than {SMALL_N} files scored for {html.escape(", ".join(few))}: '
            "their 95% intervals are wide, so differences between systems there are not reliable.</p>")


def write_report(
    report_dir: Path, summary: dict[str, Any], results: Sequence[FileResult], keys: Sequence[str], examples: int = 6
) -> Path:
    """report.html (+ chart.png, audio/, spectrograms/) in ``report_dir``; returns the page."""
    report_dir.mkdir(parents=True, exist_ok=True)
    chart = write_chart(summary, keys, report_dir / "chart.png") if keys else None
    failures = summary["failures"]["count"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>restorekit evaluation</title><style>{STYLE}</style></head><body>
<h1>Evaluation</h1>
<p>Mean ± 95% CI half-width (t-distribution) over the files each metric scored; ↑ higher is better,
↓ lower is better; the best system per column is highlighted. Failures: {failures} (failures.csv);
per-file values: <a href="per_file.csv">per_file.csv</a>.</p>
{summary_table(summary, keys)}
{_small_n_warning(summary, keys)}
{f'<img id="chart" src="{chart.name}" alt="metric means by system">' if chart else ''}
<h2>Files</h2>
{per_file_section(report_dir, results, keys, examples)}
</body></html>
"""
    return atomic_write_text(report_dir / "report.html", page)
