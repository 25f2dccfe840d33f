"""``paired_folders``: degraded/clean files matched by relative path (VoiceBank-DEMAND style)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from restorekit.audio import load
from restorekit.datasets import DATASETS
from restorekit.datasets.base import (
    check_context,
    check_rate,
    check_roots,
    check_segment,
    context_item,
    context_offset,
    fit_length,
    item_rng,
    make_item,
    pick_offset,
    stem_name,
)
from restorekit.datasets.folder import probe_files
from restorekit.datasets.manifest import find_audio
from restorekit.datasets.text import ItemText
from restorekit.errors import DataError

# Pairs whose lengths differ by more than this (after resampling) are not the same recording.
MAX_MISALIGN_S = 0.05
LIST_AT_MOST = 10


def match_pairs(degraded_dir: Path, clean_dir: Path) -> list[tuple[str, str]]:
    """(degraded, clean) relative paths matched by path without suffix; DataError lists any unmatched."""
    deg = {stem_name(r): r for r in find_audio(degraded_dir)}
    cln = {stem_name(r): r for r in find_audio(clean_dir)}
    if not deg:
        raise DataError(f"paired_folders: no audio files under degraded_dir {degraded_dir}; check the path")
    only_deg, only_cln = sorted(set(deg) - set(cln)), sorted(set(cln) - set(deg))
    if only_deg or only_cln:
        raise DataError(
            "paired_folders: files must pair up by relative path. "
            + _listing(only_deg, f"in {degraded_dir} without a clean file in {clean_dir}")
            + _listing(only_cln, f"in {clean_dir} without a degraded file in {degraded_dir}")
            + "Remove or rename them so every file has its partner."
        )
    return [(deg[k], cln[k]) for k in sorted(deg)]


def _listing(names: list[str], what: str) -> str:
    if not names:
        return ""
    more = f" and {len(names) - LIST_AT_MOST} more" if len(names) > LIST_AT_MOST else ""
    return f"{len(names)} {what}: {', '.join(names[:LIST_AT_MOST])}{more}. "


@DATASETS.register("paired_folders")
class PairedFolders(Dataset):
    """Recorded pairs -> ``degraded``/``clean`` float32 (time,) at ``sample_rate`` Hz, equal length.

    Files pair by relative path (suffix ignored); unmatched files are an error that lists them.
    ``segment_seconds`` null gives whole files; otherwise one window at the same offset in both
    (random per ``seed``/epoch/index, centred in validation). ``short``: pad or drop shorter pairs.
    ``context_seconds`` (null: off) reads a row that long from both files and cuts the segment
    from it at a multiple of ``context_hop_seconds`` (s; null: any sample); items also carry
    ``context`` (the degraded row, float32 (Tc,)) and ``context_offset`` (int, samples), as in
    ``degraded_speech``.
    ``transcripts``/``phonemes``/``language``/``missing_text``: items also carry ``text`` (and
    ``phonemes``) as in ``degraded_speech``, looked up for the clean file under ``clean_dir``
    (a CSV names files relative to either folder: pairs share their relative paths).
    """

    def __init__(self, degraded_dir: str, clean_dir: str, sample_rate: int, segment_seconds: float | None = None,
                 short: str = "pad", validation: bool = False, seed: int = 0, context_seconds: float | None = None,
                 context_hop_seconds: float | None = 0.016, transcripts: str | dict | None = None,
                 phonemes: bool = False, language: str = "en-us", missing_text: str = "error") -> None:
        where = "paired_folders"
        self.text = ItemText(transcripts, phonemes, language, missing_text, where)
        self.sample_rate = check_rate(sample_rate, where)
        check_segment(segment_seconds, short, where)
        self.context_seconds = context_seconds
        self.context_hop = check_context(context_seconds, context_hop_seconds, segment_seconds, self.sample_rate, where)
        self.degraded_dir, self.clean_dir = check_roots([degraded_dir, clean_dir], where)
        self.segment_seconds, self.validation, self.seed, self.epoch = segment_seconds, validation, seed, 0
        pairs = match_pairs(self.degraded_dir, self.clean_dir)
        pairs = [p for p, k in zip(pairs, self.text.keep(self.clean_dir, [c for _, c in pairs])) if k]
        good, durations, self.unreadable = probe_files(self.degraded_dir, [d for d, _ in pairs], where)
        keep = set(good)
        self.pairs = [p for p in pairs if p[0] in keep]
        self.durations = durations
        if segment_seconds is not None and short == "drop":
            mask = durations >= segment_seconds
            self.pairs = [p for p, m in zip(self.pairs, mask) if m]
            self.durations = durations[mask]
        if not self.pairs:
            raise DataError(f"{where}: no usable pairs in {self.degraded_dir} (all unreadable or shorter than "
                            f"segment_seconds={segment_seconds} with short=drop)")

    def set_epoch(self, epoch: int) -> None:
        """New random windows each epoch (training mode)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._audio_item(index)
        item.update(self.text.fields(self.clean_dir, self.pairs[index][1]))
        return item

    def _audio_item(self, index: int) -> dict[str, Any]:
        rng = None if self.validation else item_rng(self.seed, self.epoch, index)
        if self.context_hop is not None:
            return self._context_item(index, rng)
        offset = pick_offset(float(self.durations[index]), self.segment_seconds, rng)
        sr, seg = self.sample_rate, self.segment_seconds
        degraded, clean = self._load_pair(index, offset, seg)
        if seg is not None:
            n = int(round(seg * sr))
            degraded, clean = fit_length(degraded, n), fit_length(clean, n)
        return make_item(clean, degraded, sr, stem_name(self.pairs[index][0]), [])

    def _context_item(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """Rows of context_seconds from both files; the segment cut from them at the same offset."""
        sr, seg_len = self.sample_rate, int(round(self.segment_seconds * self.sample_rate))
        start = pick_offset(float(self.durations[index]), self.context_seconds, rng)
        degraded, clean = self._load_pair(index, start, self.context_seconds)
        row_len = max(min(len(degraded), int(round(self.context_seconds * sr))), seg_len)
        degraded, clean = fit_length(degraded, row_len), fit_length(clean, row_len)
        offset = context_offset(row_len, seg_len, self.context_hop, rng)
        return context_item(clean, degraded, offset, seg_len, sr, stem_name(self.pairs[index][0]), [])

    def _load_pair(self, index: int, offset: float, seconds: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(degraded, clean) from ``offset`` s for ``seconds`` (None: to the end), resampled and aligned."""
        deg_rel, cln_rel = self.pairs[index]
        degraded, _ = load(self.degraded_dir / deg_rel, sr=self.sample_rate, offset=offset, duration=seconds)
        clean, _ = load(self.clean_dir / cln_rel, sr=self.sample_rate, offset=offset, duration=seconds)
        return self._align(degraded, clean, deg_rel)

    def _align(self, degraded: np.ndarray, clean: np.ndarray, rel: str) -> tuple[np.ndarray, np.ndarray]:
        if abs(len(degraded) - len(clean)) > MAX_MISALIGN_S * self.sample_rate:
            raise DataError(
                f"paired_folders: {rel} is {len(degraded) / self.sample_rate:.3f} s in {self.degraded_dir} but "
                f"{len(clean) / self.sample_rate:.3f} s in {self.clean_dir}; pairs must be the same recording, "
                "sample-aligned"
            )
        n = min(len(degraded), len(clean))
        return degraded[:n], clean[:n]
