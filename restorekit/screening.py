"""Quality screening of a restored corpus: ``screen=[dnsmos, speaker_similarity, wer]``.

Each restored file is scored beside its input, and flagged where the restoration may have
made it worse, so a corpus can be cleaned before TTS training (LibriTTS-R was published with
such lists). Per file, ``screening.csv`` holds:

- ``dnsmos_in``, ``dnsmos_out``, ``dnsmos_delta``: DNSMOS P.835 OVRL (1-5) of input and output;
  flagged when it falls by more than ``screen_thresholds.dnsmos_drop`` (0: any fall).
- ``speaker_similarity``: resemblyzer cosine of the output to the input; flagged below
  ``screen_thresholds.speaker_similarity_min`` (0.8).
- ``wer_in``, ``wer_out``, ``wer_delta``: pocketsphinx WER of input and output against the file's
  transcript from ``transcripts=`` (CSV ``name,text``, by relative path or stem; a shard sample's
  ``.txt`` member), else
  against the input's own ASR transcript (``wer_in`` is then 0); flagged when it rises by more
  than ``screen_thresholds.wer_rise`` (0: any rise). ``transcript`` says which text was used.
- ``flag`` (1 or 0) and ``reasons``. A metric that cannot score a file (silence, no words
  recognised) leaves its cells empty and flags the file with the reason: nothing vouches for it.
"""
from __future__ import annotations

import csv
import difflib
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.audio import resample
from restorekit.errors import ConfigError, DataError
from restorekit.inference_text import TranscriptTable

SCREEN_METRICS = ("dnsmos", "speaker_similarity", "wer")
THRESHOLDS = {"dnsmos_drop": 0.0, "speaker_similarity_min": 0.8, "wer_rise": 0.0}
COLUMNS = {
    "dnsmos": ("dnsmos_in", "dnsmos_out", "dnsmos_delta"),
    "speaker_similarity": ("speaker_similarity",),
    "wer": ("wer_in", "wer_out", "wer_delta", "transcript"),
}
CSV_NAME = "screening.csv"


def metric_node(node: Any, index: int) -> dict[str, Any]:
    """``"dnsmos"`` or ``{name: wer, args: {backend: whisper}}`` as a checked ``{name, args}`` node."""
    node = {"name": node, "args": {}} if isinstance(node, str) else dict(node)
    name = node.get("name")
    if name not in SCREEN_METRICS:
        close = difflib.get_close_matches(str(name), SCREEN_METRICS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"screen[{index}]: '{name}' cannot screen restorations.{hint} "
                          f"Choose from {', '.join(SCREEN_METRICS)} (e.g. screen=[dnsmos,speaker_similarity])")
    return {"name": name, "args": dict(node.get("args") or {})}


class Screener:
    """Scores a restored recording beside its input and flags it by ``thresholds``; one CSV row each."""

    def __init__(self, metrics: list, thresholds: dict[str, float] | None = None,
                 transcripts: str | None = None) -> None:
        from restorekit.metrics import METRICS

        nodes = [metric_node(n, i) for i, n in enumerate(metrics)]
        self.thresholds = {**THRESHOLDS, **(thresholds or {})}
        unknown = sorted(set(self.thresholds) - set(THRESHOLDS))
        if unknown:
            raise ConfigError(f"screen_thresholds: unknown key(s) {', '.join(unknown)}; "
                              f"the thresholds are {', '.join(THRESHOLDS)}")
        self.metrics = {n["name"]: METRICS.build(n, where=f"screen[{i}]") for i, n in enumerate(nodes)}
        self.transcripts = TranscriptTable(read_transcripts(transcripts))

    def score(self, file: str, wave: np.ndarray, sr: int, out: np.ndarray, out_sr: int,
              name: str | None = None, transcript: str | None = None) -> dict[str, Any]:
        """The row of ``file``: its scores, ``flag`` and ``reasons``. ``name`` looks up its transcript
        (default ``file``); ``transcript`` given directly wins over the transcripts file."""
        row: dict[str, Any] = {"file": file}
        reasons: list[str] = []
        for metric in self.metrics:
            try:
                reason = getattr(self, f"_{metric}")(row, wave, sr, out, out_sr, name or file, transcript)
            except Exception as exc:  # noqa: BLE001 - MetricFailure and scoring errors alike: recorded
                reason = f"{metric} not scored ({getattr(exc, 'reason', None) or exc})"
            if reason:
                reasons.append(reason)
        row["flag"] = int(bool(reasons))
        row["reasons"] = "; ".join(reasons)
        return row

    def _dnsmos(self, row: dict, wave, sr, out, out_sr, name, transcript) -> str:
        metric = self.metrics["dnsmos"]
        before, after = metric(wave, sr)["dnsmos_ovrl"], metric(out, out_sr)["dnsmos_ovrl"]
        row.update(dnsmos_in=round(before, 4), dnsmos_out=round(after, 4), dnsmos_delta=round(after - before, 4))
        drop = self.thresholds["dnsmos_drop"]
        return f"dnsmos fell {after - before:+.2f} (more than {drop})" if before - after > drop else ""

    def _speaker_similarity(self, row: dict, wave, sr, out, out_sr, name, transcript) -> str:
        # The output at the input's rate: the metric takes one rate for the pair.
        similarity = self.metrics["speaker_similarity"](resample(out, out_sr, sr), sr, wave)["speaker_similarity"]
        row["speaker_similarity"] = round(similarity, 4)
        least = self.thresholds["speaker_similarity_min"]
        return f"speaker similarity {similarity:.2f} < {least}" if similarity < least else ""

    def _wer(self, row: dict, wave, sr, out, out_sr, name, transcript) -> str:
        metric = self.metrics["wer"]
        text = transcript or self.transcripts.get(strip_suffix(name))
        row["transcript"] = "given" if text else "asr of input"
        if text:
            before = metric(wave, sr, transcript=text)["wer"]
        else:  # the input's own words are the reference: its WER is 0 by definition
            text, before = metric.asr(resample(wave, sr, metric.sample_rate)), 0.0
        after = metric(out, out_sr, transcript=text)["wer"]
        row.update(wer_in=round(before, 4), wer_out=round(after, 4), wer_delta=round(after - before, 4))
        rise = self.thresholds["wer_rise"]
        return f"wer rose {after - before:+.2f} (more than {rise})" if after - before > rise else ""


def strip_suffix(name: str) -> str:
    path = Path(name)
    return path.with_suffix("").as_posix() if path.suffix.lower() in (".wav", ".flac", ".ogg", ".opus", ".mp3") \
        else path.as_posix()


def read_transcripts(path: str | None) -> dict[str, str]:
    """``name -> text`` from ``transcripts=`` (CSV ``name,text``, name the relative path, suffix optional).
    ``transcripts=asr`` (a Miipher-1 export's recognised input text) gives none: screening then
    takes the input's ASR transcript, which is the same text."""
    if not path or str(path) == "asr":
        return {}
    if not Path(path).is_file():
        raise DataError(f"transcripts={path}: file not found; give a CSV with columns name,text "
                        "(name: the input's relative path)")
    from restorekit.evaluation import read_transcripts as read_csv  # the evaluation's format, shared

    return read_csv(path)


def write_screening(rows: list[dict[str, Any]], output_dir: Path) -> Path:
    """Merge ``rows`` into ``output_dir/screening.csv`` (a rerun's rows replace the same files'),
    sorted by file, atomically; returns its path."""
    from restorekit.config import atomic_write_text

    path = output_dir / CSV_NAME
    merged = {r["file"]: r for r in read_rows(path)}
    merged.update({r["file"]: r for r in rows})
    columns = ["file"] + [c for group in COLUMNS.values() for c in group
                          if any(c in r for r in merged.values())] + ["flag", "reasons"]
    lines = [",".join(columns)]
    for file in sorted(merged):
        lines.append(_csv_line([merged[file].get(c, "") for c in columns]))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an existing screening.csv (none when absent)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]


def _csv_line(values: list[Any]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()
