"""What every dataset here shares: segment choice, length fitting, item assembly, safe loading."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorekit.audio import check_sample_rate, load
from restorekit.errors import AudioError, ConfigError, DataError, one_line

SHORT_POLICIES = ("pad", "drop")
# After this many unreadable files in a row a dataset stops: the index no longer matches the disk.
MAX_CONSECUTIVE_FAILURES = 20


def check_roots(roots: str | list[str] | tuple[str, ...], where: str) -> list[Path]:
    """``roots`` (one folder or a list) as existing folders, or a DataError naming the bad one."""
    items = [roots] if isinstance(roots, (str, Path)) else list(roots or [])
    if not items:
        raise DataError(f"{where}: no folders given; list at least one audio folder")
    out = []
    for r in items:
        p = Path(r).expanduser()
        if not p.is_dir():
            raise DataError(f"{where}: folder {p} does not exist; check the path (or prepare the corpus first)")
        out.append(p.resolve())
    return out


def check_segment(segment_seconds: float | None, short: str, where: str) -> None:
    if segment_seconds is not None and not segment_seconds > 0:
        raise ConfigError(f"{where}.segment_seconds must be > 0 seconds or null (whole files), got {segment_seconds}")
    if short not in SHORT_POLICIES:
        raise ConfigError(f"{where}.short must be one of {', '.join(SHORT_POLICIES)} (clips shorter than a segment), got {short!r}")


def pick_offset(duration: float, segment: float | None, rng: np.random.Generator | None) -> float:
    """Start (s) of a ``segment``-second window in a ``duration``-second file.

    ``rng`` None means validation: the window centred in the file, the same every time.
    """
    if segment is None or duration <= segment:
        return 0.0
    room = duration - segment
    return room / 2 if rng is None else float(rng.uniform(0.0, room))


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end or cut to exactly ``length`` samples."""
    if len(wave) >= length:
        return wave[:length]
    return np.pad(wave, (0, length - len(wave)))


def load_segment(path: Path, sr: int, offset: float, segment: float | None) -> np.ndarray:
    """Mono float32 at ``sr`` (any channel count and rate is converted), ``segment`` s long if set."""
    wave, _ = load(path, sr=sr, offset=offset, duration=segment)
    return fit_length(wave, int(round(segment * sr))) if segment is not None else wave


def make_item(clean: np.ndarray | None, degraded: np.ndarray, sr: int, name: str,
              degradations: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The contract's item: float32 torch tensors ``(time,)`` of equal length, rate, name, what was done."""
    item: dict[str, Any] = {"degraded": torch.from_numpy(np.ascontiguousarray(degraded, dtype=np.float32))}
    if clean is not None:
        assert len(clean) == len(degraded), f"{name}: clean {len(clean)} vs degraded {len(degraded)} samples"
        item["clean"] = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))
    item.update(sr=int(sr), name=name, degradations=list(degradations), **extra)
    return item


def stem_name(rel: str) -> str:
    """An item name: the relative path without its suffix ('p225/p225_001')."""
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


class SkipUnreadable:
    """Files that failed to load: each warned about once and counted; a long run of failures stops.

    Counts are per process (each DataLoader worker keeps its own).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.bad: set[str] = set()
        self._run = 0

    @property
    def skipped(self) -> int:
        return len(self.bad)

    def known_bad(self, path: Path) -> bool:
        return str(path) in self.bad

    def failed(self, path: Path, exc: AudioError) -> None:
        self.bad.add(str(path))
        self._run += 1
        print(f"warning: {self.where}: skipping {path}: {one_line(exc)}", file=sys.stderr)
        if self._run >= MAX_CONSECUTIVE_FAILURES:
            raise DataError(
                f"{self.where}: {self._run} files in a row could not be read (last: {path}); the metadata.csv "
                "no longer matches the disk: rebuild it with scripts/make_metadata_csv.py --root-dir DIR --update"
            ) from exc

    def ok(self) -> None:
        self._run = 0


def check_rate(sample_rate: int, where: str) -> int:
    try:
        return check_sample_rate(sample_rate, f"{where}.sample_rate")
    except AudioError as exc:
        raise ConfigError(str(exc)) from exc


def check_context(context_seconds: float | None, hop_seconds: float | None, segment_seconds: float | None,
                  sample_rate: int, where: str) -> int | None:
    """Validate the context options; returns the offset step in samples (None: no context)."""
    if context_seconds is None:
        return None
    if segment_seconds is None:
        raise ConfigError(f"{where}.context_seconds={context_seconds} needs segment_seconds: the segment is cropped "
                          "from the context row; set segment_seconds (e.g. 0.512) or context_seconds: null")
    if not context_seconds >= segment_seconds:
        raise ConfigError(f"{where}.context_seconds ({context_seconds} s) must be >= segment_seconds "
                          f"({segment_seconds} s): the segment is cropped from the context row; raise "
                          "context_seconds (FINALLY: 4.096) or lower segment_seconds")
    return _hop_samples(hop_seconds, sample_rate, where)


def _hop_samples(hop_seconds: float | None, sample_rate: int, where: str) -> int:
    if hop_seconds is None:
        return 1
    hop = hop_seconds * sample_rate
    if not hop_seconds > 0 or abs(hop - round(hop)) > 1e-6:
        raise ConfigError(f"{where}.context_hop_seconds={hop_seconds} must be > 0 and a whole number of samples at "
                          f"sample_rate={sample_rate} Hz (it is {hop:g}); use e.g. 0.016 (256 samples at 16 kHz) "
                          "at 16/24/32/48 kHz, or null for any sample offset")
    return int(round(hop))


def context_offset(row_len: int, seg_len: int, hop: int, rng: np.random.Generator | None) -> int:
    """Start (samples) of a ``seg_len`` window in a ``row_len`` row: a multiple of ``hop``.

    ``rng`` None means validation: the grid position nearest the centre, the same every time.
    """
    slots = max(0, row_len - seg_len) // hop  # grid positions after the first
    k = slots // 2 if rng is None else int(rng.integers(0, slots + 1))
    return k * hop


def context_item(clean_row: np.ndarray, degraded_row: np.ndarray, offset: int, seg_len: int, sr: int, name: str,
                 degradations: list[dict[str, Any]]) -> dict[str, Any]:
    """The contract item cut from a row, plus ``context`` (the whole degraded row, float32 ``(Tc,)``)
    and ``context_offset`` (where the segment starts in it, samples)."""
    assert len(clean_row) == len(degraded_row), f"{name}: rows differ ({len(clean_row)} vs {len(degraded_row)})"
    assert 0 <= offset and offset + seg_len <= len(degraded_row), f"{name}: segment at {offset} leaves the row"
    end = offset + seg_len
    context = torch.from_numpy(np.ascontiguousarray(degraded_row, dtype=np.float32))
    # Copies: the segment must not share memory with the context (an in-place edit of one would change both).
    return make_item(clean_row[offset:end].copy(), degraded_row[offset:end].copy(), sr, name, degradations,
                     context=context, context_offset=int(offset))


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, index): same item, same draw, in any worker."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))
