"""The Miipher-2 restorer: feature cleaner + WaveFit vocoder, with chunking for long inputs.

Long inputs go through overlapping chunks so memory is bounded by the chunk, not the file.
Chunk boundaries sit on feature-frame boundaries, and the vocoder's starting noise is drawn in
fixed one-second blocks seeded by their absolute position, so a chunk sees the same noise the
whole-file pass would. At each seam the new chunk is level-matched to the previous one over
the overlap (WaveFit sets each chunk's power on its own) and cross-faded with a raised cosine.

Level policy (shared by ``inference.py``, the ``restorekit`` enhancer and any caller of
``restore``): the output is scaled so its peak is ``output_peak`` (0.9, the level the vocoder
trainers normalise their targets to), whatever the input's gain, since SSL features carry no
level; and where the input is silent (RMS below ``silence_dbfs`` over 50 ms windows, with
100 ms of hang-over around activity) the output is silent too, so digital silence in gives
silence out instead of vocoder noise at full level.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restorekit.audio import check_finite, check_sample_rate
from restorekit.errors import AudioError, ConfigError
from restorekit.models import MODELS

NOISE_BLOCK = 24_000  # samples per independently seeded noise block
_PAD_SECONDS = 0.04  # covers the encoder's analysis window so the last frames are produced
_MAX_LEVEL_STEP = 2.0  # largest amplitude correction at a seam (x2 / x0.5)
_GATE_WINDOW, _GATE_HANGOVER = 0.05, 0.1  # seconds: activity window, activity kept around speech


def _module(node: Mapping[str, Any] | nn.Module, role: str) -> nn.Module:
    return node if isinstance(node, nn.Module) else MODELS.build(node, where=f"models.{role}")


@MODELS.register("miipher2")
class Miipher2(nn.Module):
    """Miipher-2 restorer: degraded wave (T,) at any rate -> restored wave (T * 24000 / sr,) at the vocoder's rate.

    ``feature_cleaner`` and ``vocoder`` are config nodes (or built modules). Inputs longer than
    ``chunk_seconds`` are restored in chunks overlapping by ``overlap_seconds``, level-matched and
    cross-faded at the seams. ``seed`` fixes the vocoder's starting noise. Level: the output peaks
    at ``output_peak`` (null: the vocoder's own level) and is muted where the input is below
    ``silence_dbfs`` (null: no gate).
    """

    def __init__(
        self,
        feature_cleaner: Mapping[str, Any] | nn.Module,
        vocoder: Mapping[str, Any] | nn.Module,
        chunk_seconds: float = 10.0,
        overlap_seconds: float = 1.0,
        seed: int = 0,
        output_peak: float | None = 0.9,
        silence_dbfs: float | None = -70.0,
    ) -> None:
        super().__init__()
        if not 0 < overlap_seconds < chunk_seconds:
            raise ConfigError(
                f"miipher2: overlap_seconds ({overlap_seconds}) must be > 0 and < chunk_seconds ({chunk_seconds})"
            )
        check_level_args("miipher2", output_peak)
        self.output_peak, self.silence_dbfs = output_peak, silence_dbfs
        self.feature_cleaner, self.vocoder = _module(feature_cleaner, "feature_cleaner"), _module(vocoder, "vocoder")
        check_pair(self.feature_cleaner, self.vocoder)
        self.chunk_seconds, self.overlap_seconds, self.seed = chunk_seconds, overlap_seconds, int(seed)
        self.sample_rate = self.vocoder.sample_rate
        self.eval()

    @classmethod
    def from_export(cls, directory: str | Path, **kwargs: Any) -> Miipher2:
        """A restorer from an export folder holding ``feature_cleaner`` and ``vocoder``."""
        from restorekit.models.export import load_export

        mods = load_export(directory, roles=["feature_cleaner", "vocoder"])
        return cls(mods["feature_cleaner"], mods["vocoder"], **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.vocoder.parameters()).device

    @torch.no_grad()
    def restore(self, wave: np.ndarray | torch.Tensor, sr: int) -> tuple[np.ndarray, int]:
        """Restore mono audio (T,) at ``sr`` Hz; returns (float32 (round(T * rate / sr),), rate)."""
        sr = check_sample_rate(sr, "input sample rate")
        x = _as_tensor(wave).to(self.device)
        out_len = round(x.shape[0] * self.sample_rate / sr)
        frame = self._frame_samples(sr)
        chunk = max(frame, round(self.chunk_seconds * sr / frame) * frame)
        if x.shape[0] <= chunk:
            y = self._render(x, sr, 0, out_len)
        else:
            overlap = max(frame, round(self.overlap_seconds * sr / frame) * frame)
            y = render_chunked(lambda piece, start, n: self._render(piece, sr, start, n), x, self.sample_rate / sr,
                               chunk, overlap, out_len)
        return apply_level_policy(y, x.cpu().numpy(), sr, self.output_peak, self.silence_dbfs), self.sample_rate

    def _frame_samples(self, sr: int) -> int:
        return max(1, round(sr / self.feature_cleaner.frame_rate))

    def _render(self, x: torch.Tensor, sr: int, out_start: int, out_len: int) -> np.ndarray:
        """Restore one piece; ``out_start`` (output samples) positions its noise in the file."""
        pad = torch.zeros(math.ceil(_PAD_SECONDS * sr), device=x.device, dtype=x.dtype)
        feats = self.feature_cleaner(torch.cat([x, pad])[None], sr)
        noise = self._noise(out_start, feats.shape[1] * self.vocoder.hop)
        y = self.vocoder.infer(feats, noise)[0, :out_len]
        y = torch.nn.functional.pad(y, (0, out_len - y.shape[0]))
        return y.float().cpu().numpy()

    def _noise(self, start: int, length: int) -> torch.Tensor:
        """White noise for output samples [start, start + length), identical wherever it is drawn."""
        first, last = start // NOISE_BLOCK, (start + length - 1) // NOISE_BLOCK
        blocks = [
            torch.randn(NOISE_BLOCK, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + b))
            for b in range(first, last + 1)
        ]
        offset = start - first * NOISE_BLOCK
        return torch.cat(blocks)[offset: offset + length][None].to(self.device)



def render_chunked(render: Callable[[torch.Tensor, int, int], np.ndarray], x: torch.Tensor, ratio: float,
                   chunk: int, overlap: int, out_len: int) -> np.ndarray:
    """``render(piece, out_start, out_count)`` over chunks of ``x`` overlapping by ``overlap`` input
    samples, merged into ``out_len`` output samples (``ratio`` = output rate / input rate):
    level-matched and cross-faded at each seam (``_merge``). Every restorer chunks through this."""
    out = np.zeros(out_len, dtype=np.float32)
    start, written = 0, 0
    while True:
        end = min(start + chunk, x.shape[0])
        o_start, o_end = round(start * ratio), round(end * ratio) if end < x.shape[0] else out_len
        written = _merge(out, render(x[start:end], o_start, o_end - o_start), o_start, written)
        if end >= x.shape[0]:
            return out
        start += chunk - overlap


def apply_level_policy(y: np.ndarray, x: np.ndarray, sr: int, output_peak: float | None,
                       silence_dbfs: float | None) -> np.ndarray:
    """Every restorer's output level: muted where the input ``x`` (at ``sr``) is silent, then scaled
    to peak ``output_peak`` (None: as made)."""
    if silence_dbfs is not None:
        y = y * activity_gate(x, sr, len(y), silence_dbfs)
    p = float(np.abs(y).max()) if y.size else 0.0
    if output_peak is not None and p > 0:
        y = y * np.float32(output_peak / p)
    return y.astype(np.float32)


def check_level_args(who: str, output_peak: float | None) -> None:
    if output_peak is not None and not 0 < output_peak <= 1:
        raise ConfigError(f"{who}: output_peak must be in (0, 1] or null, got {output_peak}")


def _merge(out: np.ndarray, piece: np.ndarray, start: int, written: int) -> int:
    """Write ``piece`` at ``start``; over [start, written) level-match and cross-fade; new end."""
    n = written - start
    if n > 0:
        prev, new = out[start:written], piece[:n]
        gain = np.sqrt((np.mean(prev.astype(np.float64) ** 2) + 1e-12) / (np.mean(new.astype(np.float64) ** 2) + 1e-12))
        piece = piece * np.float32(np.clip(gain, 1 / _MAX_LEVEL_STEP, _MAX_LEVEL_STEP))
        fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        out[start:written] = prev * (1 - fade) + piece[:n] * fade
    out[max(start, written): start + len(piece)] = piece[max(n, 0):]
    return start + len(piece)


def activity_gate(x: np.ndarray, sr: int, out_len: int, silence_dbfs: float) -> np.ndarray:
    """(out_len,) gain in [0, 1]: 1 where the input ``x`` at ``sr`` Hz is active, 0 where it is silent.

    A 50 ms window is active when its RMS is above ``silence_dbfs``; activity is extended by
    100 ms each side (soft onsets and decays are not cut), and the gain ramps linearly between
    window centres. Worked out per window, then interpolated to the output: O(length).
    Written by hand: a fixed-threshold energy gate, not a voice-activity detector (a VAD would
    mute noise-only input, which restoration should still get to see and judge).
    """
    win = max(1, round(_GATE_WINDOW * sr))
    frames = -(-len(x) // win)
    padded = np.zeros(frames * win, dtype=np.float64)
    padded[: len(x)] = x
    rms_db = 10 * np.log10(np.mean(padded.reshape(frames, win) ** 2, axis=1) + 1e-20)
    reach = round(_GATE_HANGOVER / _GATE_WINDOW)
    active = np.convolve((rms_db > silence_dbfs).astype(np.float64), np.ones(2 * reach + 1), mode="same") > 0
    centres = (np.arange(frames) + 0.5) * win  # input samples
    positions = (np.arange(out_len) + 0.5) * len(x) / max(out_len, 1)
    return np.interp(positions, centres, active.astype(np.float64)).astype(np.float32)


def _as_tensor(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    arr = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if arr.ndim != 1 or arr.size == 0:
        raise AudioError(f"miipher2.restore: expected mono audio of shape (time,), got shape {arr.shape}")
    check_finite(arr, "miipher2.restore input")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def check_pair(cleaner: nn.Module, vocoder: nn.Module) -> None:
    """ConfigError unless the vocoder reads the cleaner's feature size at its frame rate."""
    if getattr(vocoder, "feature_dim", None) != getattr(cleaner, "feature_dim", None):
        raise ConfigError(
            f"miipher2: the vocoder reads {getattr(vocoder, 'feature_dim', '?')}-d features but the cleaner gives "
            f"{getattr(cleaner, 'feature_dim', '?')}-d; set models.vocoder.args.feature_dim to match"
        )
    if abs(getattr(vocoder, "feature_rate", 0.0) - cleaner.frame_rate) > 1e-6:
        raise ConfigError(
            f"miipher2: the vocoder expects {vocoder.feature_rate} Hz features but the cleaner gives "
            f"{cleaner.frame_rate} Hz; set models.vocoder.args.feature_rate to match"
        )
