"""The enhancer contract: ``(wave (T,), sr) -> (wave (T',), sr_out)``, aligned with the input.

An enhancer is anything that cleans a recording for a comparison: a baseline denoiser or a
restorekit export. ``Enhancer.__call__`` checks the input, calls the subclass's ``enhance``
and checks that the output lasts exactly as long as the input (no added delay, no lost
tail), so every enhancer can be scored against the same reference sample for sample.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from restorekit.audio import check_finite, check_sample_rate, resample
from restorekit.errors import AudioError


class Enhancer(ABC):
    """Base of all enhancers: mono float32 ``(T,)`` at ``sr`` Hz in, aligned audio out.

    ``sample_rate`` is the rate the enhancer writes (None: the input's rate). Subclasses
    implement ``enhance``; they may return any length close to the expected one and
    ``__call__`` trims or pads the last few samples (resamplers round lengths).
    """

    sample_rate: int | None = None
    # How far (in output samples) a subclass may miss the expected length before it is a bug.
    length_tolerance: float = 0.01

    def __call__(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        wave, sr = check_input(wave, sr, type(self).__name__)
        out, out_sr = self.enhance(wave, sr)
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        expected = output_length(len(wave), sr, out_sr)
        assert abs(len(out) - expected) <= max(2, self.length_tolerance * expected), (
            f"{type(self).__name__} returned {len(out)} samples at {out_sr} Hz for "
            f"{len(wave)} at {sr} Hz (expected {expected})"
        )
        return fit_length(out, expected), int(out_sr)

    # True when the enhancer bounds its own memory on long inputs (then callers do not chunk).
    chunks_internally: bool = False

    def enhance_batch(self, items: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, int]]:
        """Enhance several short ``(wave, sr)`` recordings at once.

        The default calls the enhancer on each; a model that gains from batched forward
        passes overrides it (outputs in the input order, each trimmed to its own length).
        """
        return [self(wave, sr) for wave, sr in items]

    @abstractmethod
    def enhance(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        """Enhance a checked mono float32 wave; return ``(wave, rate)``."""


def check_input(wave: np.ndarray, sr: int, who: str) -> tuple[np.ndarray, int]:
    """``wave`` as contiguous float32 ``(T,)`` and ``sr`` as int, or an AudioError."""
    sr = check_sample_rate(sr, f"sample rate given to enhancer {who}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise AudioError(
            f"enhancer {who} expects mono audio of shape (time,), got shape {wave.shape}; "
            "average the channels first (restorekit.audio.load does)"
        )
    if wave.size == 0:
        raise AudioError(f"enhancer {who} got an empty wave; give it at least one sample")
    check_finite(wave, f"audio given to enhancer {who}")
    return np.ascontiguousarray(wave), sr


def output_length(num_samples: int, sr: int, out_sr: int) -> int:
    """Samples at ``out_sr`` that last as long as ``num_samples`` at ``sr``."""
    return int(round(num_samples * out_sr / sr))


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the end of ``wave`` to ``length`` samples."""
    if len(wave) >= length:
        return np.ascontiguousarray(wave[:length], dtype=np.float32)
    return np.concatenate([wave, np.zeros(length - len(wave), dtype=np.float32)])


def to_rate(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Resample with soxr (linear phase, delay-compensated, so alignment is kept)."""
    return wave if sr == target else resample(wave, sr, target)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float [-1, 1] to int16 PCM, clipping what lies beyond full scale."""
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


def from_int16(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / 32767.0).astype(np.float32)


def process_frames(wave: np.ndarray, frame: int, delay: int, step) -> np.ndarray:
    """Run a frame-by-frame processor with a known algorithmic ``delay`` (in samples).

    Frame-based denoisers (RNNoise, WebRTC NS) emit each input sample ``delay`` samples late.
    The input is padded with ``delay`` zeros plus whatever completes the last frame; the
    first ``delay`` output samples are dropped, so the result is aligned and as long as the
    input. ``step(frame_array) -> frame_array`` processes one frame of ``frame`` samples.
    Written by hand: neither library offers offline, delay-compensated processing.
    """
    total = len(wave) + delay
    padded = np.zeros(total + (-total) % frame, dtype=wave.dtype)
    padded[: len(wave)] = wave
    out = np.concatenate([step(padded[i : i + frame]) for i in range(0, len(padded), frame)])
    return out[delay : delay + len(wave)]
