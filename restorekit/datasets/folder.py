"""``audio_folder``: the audio files under folders, as inputs only (inference, unpaired evaluation)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from restorekit.audio import check_sample_rate
from restorekit.datasets import DATASETS
from restorekit.datasets.base import (
    check_roots,
    check_segment,
    load_segment,
    make_item,
    pick_offset,
    stem_name,
)
from restorekit.datasets.manifest import _probe, find_audio
from restorekit.errors import DataError


def probe_files(root: Path, rels: list[str], where: str) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Readable files, their durations (s) and the unreadable ones with reasons (warned, then skipped)."""
    good, durations, bad = [], [], []
    for rel in rels:
        _, row, err = _probe(root, rel)
        if row is None:
            bad.append((rel, err))
            print(f"warning: {where}: skipping unreadable {root / rel}: {err}", file=sys.stderr)
        else:
            good.append(rel)
            durations.append(float(row[1]))
    return good, np.asarray(durations, dtype=np.float64), bad


@DATASETS.register("audio_folder")
class AudioFolder(Dataset):
    """Inputs only: every audio file under ``roots`` -> ``degraded`` float32 (time,) at ``sample_rate`` Hz.

    ``sample_rate`` None keeps each file's own rate (batch one file at a time then).
    ``segment_seconds`` null gives whole files; otherwise the centred window, zero-padded.
    Unreadable files are skipped and counted in ``unreadable``. Items also carry ``path``.
    """

    def __init__(self, roots: list[str] | str, sample_rate: int | None = None,
                 segment_seconds: float | None = None) -> None:
        where = "audio_folder"
        check_segment(segment_seconds, "pad", where)
        self.sample_rate = None if sample_rate is None else check_sample_rate(sample_rate, f"{where}.sample_rate")
        self.segment_seconds = segment_seconds
        self.files: list[tuple[Path, str]] = []
        self.durations: list[float] = []
        self.unreadable: list[tuple[str, str]] = []
        for root in check_roots(roots, where):
            good, durs, bad = probe_files(root, find_audio(root), where)
            self.files += [(root, rel) for rel in good]
            self.durations += durs.tolist()
            self.unreadable += [(str(root / rel), err) for rel, err in bad]
        if not self.files:
            raise DataError(f"{where}: no readable audio files under {roots} "
                            f"(looked for {', '.join(('.wav', '.flac', '.ogg', '.opus', '.mp3'))}); check the folders")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        root, rel = self.files[index]
        offset = pick_offset(self.durations[index], self.segment_seconds, None)
        sr = self.sample_rate
        if sr is None:
            from restorekit.audio import info

            sr = info(root / rel).samplerate
        wave = load_segment(root / rel, sr, offset, self.segment_seconds)
        return make_item(None, wave, sr, stem_name(rel), [], path=str(root / rel))
