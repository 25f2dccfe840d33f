"""Long recordings in overlapping chunks, joined with a cross-fade and level matching.

Any ``(wave, sr) -> (wave, sr_out)`` function can process an hour-long file with the memory
of one chunk. Each chunk overlaps the previous by ``overlap_seconds``; the new chunk's gain
is matched to the previous one over the overlap (a model that normalises its output per
chunk would otherwise step in level at each joint), then the two are cross-faded with a
raised-cosine ramp. Written by hand: the field's libraries stream frames, not arbitrary
whole-utterance models.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from restorekit.audio import rms_db
from restorekit.enhancers.base import fit_length, output_length
from restorekit.errors import ConfigError

EnhanceFn = Callable[[np.ndarray, int], tuple[np.ndarray, int]]
MAX_GAIN_DB = 6.0  # level matching corrects drift, not content: never more than this
SILENCE_DB = -70.0  # below this the overlap says nothing about level


def chunk_bounds(num_samples: int, sr: int, chunk_seconds: float, overlap_seconds: float) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``num_samples``; consecutive chunks share the overlap.

    Every chunk but the last is ``chunk_seconds`` long; the last is longer than the overlap.
    """
    chunk, overlap = int(round(chunk_seconds * sr)), int(round(overlap_seconds * sr))
    if chunk <= 0 or overlap < 0 or overlap * 2 > chunk:
        raise ConfigError(
            f"chunking needs chunk_seconds > 0 and 0 <= overlap_seconds <= chunk_seconds / 2, "
            f"got chunk_seconds={chunk_seconds}, overlap_seconds={overlap_seconds}"
        )
    bounds, start = [], 0
    while start + chunk < num_samples:
        bounds.append((start, start + chunk))
        start += chunk - overlap
    bounds.append((start, num_samples))
    return bounds


def match_level(previous: np.ndarray, current: np.ndarray) -> float:
    """Gain that brings ``current`` to the level of ``previous`` (same span), within ±6 dB."""
    prev_db, cur_db = rms_db(previous), rms_db(current)
    if min(prev_db, cur_db) < SILENCE_DB:
        return 1.0
    return float(10 ** (np.clip(prev_db - cur_db, -MAX_GAIN_DB, MAX_GAIN_DB) / 20))


def enhance_in_chunks(
    fn: EnhanceFn, wave: np.ndarray, sr: int, chunk_seconds: float = 30.0, overlap_seconds: float = 1.0
) -> tuple[np.ndarray, int]:
    """``fn`` over ``wave`` chunk by chunk; the joined output is as long as ``fn`` on the whole."""
    out: np.ndarray | None = None
    written = 0  # output samples filled so far (the last `overlap` of them still fade out)
    for start, end in chunk_bounds(len(wave), sr, chunk_seconds, overlap_seconds):
        piece, out_sr = fn(wave[start:end], sr)
        if out is None:
            out = np.zeros(output_length(len(wave), sr, out_sr), dtype=np.float32)
        begin = output_length(start, sr, out_sr)
        piece = fit_length(np.asarray(piece, np.float32), output_length(end, sr, out_sr) - begin)
        written = _join(out, piece, begin, written)
    assert out is not None and written == len(out), "chunks must cover the whole input"
    return out, out_sr


def _join(out: np.ndarray, piece: np.ndarray, begin: int, written: int) -> int:
    """Cross-fade ``piece`` into ``out`` at ``begin``; return the new filled length."""
    overlap = written - begin
    if overlap > 0:
        piece = piece * match_level(out[begin:written], piece[:overlap])
        fade_in = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        out[begin:written] = out[begin:written] * (1 - fade_in) + piece[:overlap] * fade_in
    out[max(begin, written) : begin + len(piece)] = piece[max(overlap, 0) :]
    return begin + len(piece)
