"""Each input's transcript for a text-conditioned restorer (Miipher-1) at inference.

``transcripts=<CSV>``: rows ``name,text`` (the evaluation's format), ``name`` the input's path
relative to the input root with or without its suffix, or just its stem. ``transcripts=asr``:
the ``wer`` metric's offline recogniser (pocketsphinx, 16 kHz) transcribes the degraded input
itself, as the Miipher paper suggests where no transcript exists. A file with no transcript is a
DataError naming the file and the CSV; inference records it as failed and goes on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from restorekit.errors import ConfigError, DataError

ASR = "asr"


class TranscriptTable:
    """``name -> text`` rows (``name``: relative path, no suffix) looked up by path, else by stem when
    only one row has that stem (a stem two rows share names neither: only the path tells them apart)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        stems: dict[str, list[str]] = {}
        for name, text in table.items():
            stems.setdefault(name.rsplit("/", 1)[-1], []).append(text)
        self.by_stem = {stem: texts[0] for stem, texts in stems.items() if len(texts) == 1}

    def get(self, name: str) -> str | None:
        return self.table.get(name) or self.by_stem.get(name.rsplit("/", 1)[-1])


class TranscriptSource:
    """``text(name, wave, sr)``: the transcript of the input ``name`` (relative path, no suffix)."""

    def __init__(self, spec: str | None) -> None:
        if not spec:
            raise ConfigError(
                "this export (a Miipher-1 restorer) reads the transcript of each file: pass transcripts=<CSV with "
                "columns name,text> (name: the input's relative path or stem), or transcripts=asr to recognise it"
            )
        self.spec = str(spec)
        self._asr = None
        self.table = TranscriptTable({})
        if self.spec != ASR:
            from restorekit.evaluation import read_transcripts

            self.table = TranscriptTable(read_transcripts(Path(self.spec)))

    def text(self, name: str, wave: np.ndarray, sr: int) -> str:
        if self.spec == ASR:
            return self._recognise(name, wave, sr)
        text = self.table.get(name)
        if not text or not text.strip():
            raise DataError(
                f"no transcript for {name} in {self.spec}; add a row '{name},<text>' (the relative path or the stem), "
                "or pass transcripts=asr to recognise it"
            )
        return text

    def _recognise(self, name: str, wave: np.ndarray, sr: int) -> str:
        from restorekit.audio import resample
        from restorekit.metrics.asr import PocketsphinxAsr

        if self._asr is None:
            self._asr = PocketsphinxAsr()
        text = self._asr(resample(np.asarray(wave, dtype=np.float32), sr, 16000))
        if not text.strip():
            raise DataError(f"transcripts=asr: the recogniser heard no words in {name}; give its text in a "
                            "transcripts CSV instead")
        return text
