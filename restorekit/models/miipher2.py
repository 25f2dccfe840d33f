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

Batched restoration (``restore_batch``): the pieces of several files (whole short files, chunks
of long ones) go through the model ``batch_size`` at a time, longest first so a batch holds
similar lengths, padded, with lengths: the encoder gets an attention mask marking exactly the
frames the file alone would have (w2v-BERT, and waveform encoders with layer-norm feature
extractors such as HuBERT / WavLM Large; others encode piece by piece), and WaveFit masks the
padding before every convolution and out of every power (``WaveFit.infer_batch``). So a file's
output does not depend on what it is batched with: it equals ``restore`` of that file alone within
float rounding (max abs difference ~1e-6 at peak 0.9, measured; tests hold it to 1e-4). On CUDA the
model runs under bf16 autocast by default (``precision``); the power and gain arithmetic stays fp32.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restorekit.audio import check_finite, check_sample_rate
from restorekit.errors import AudioError, ConfigError
from restorekit.models import MODELS
from restorekit.models.ssl import SSLEncoder
from restorekit.models.wavefit import pad_stack

NOISE_BLOCK = 24_000  # samples per independently seeded noise block
_PAD_SECONDS = 0.04  # covers the encoder's analysis window so the last frames are produced
_MAX_LEVEL_STEP = 2.0  # largest amplitude correction at a seam (x2 / x0.5)
_GATE_WINDOW, _GATE_HANGOVER = 0.05, 0.1  # seconds: activity window, activity kept around speech
PRECISIONS = ("bf16", "fp32")
# A piece: (wave (T,) on the model's device, first output sample in its file, output samples wanted).
Piece = tuple[torch.Tensor, int, int]


def _module(node: Mapping[str, Any] | nn.Module, role: str) -> nn.Module:
    return node if isinstance(node, nn.Module) else MODELS.build(node, where=f"models.{role}")


@MODELS.register("miipher2")
class Miipher2(nn.Module):
    """Miipher-2 restorer: degraded wave (T,) at any rate -> restored wave (T * 24000 / sr,) at the vocoder's rate.

    ``feature_cleaner`` and ``vocoder`` are config nodes (or built modules). Inputs longer than
    ``chunk_seconds`` are restored in chunks overlapping by ``overlap_seconds``, level-matched and
    cross-faded at the seams. ``seed`` fixes the vocoder's starting noise. Level: the output peaks
    at ``output_peak`` (null: the vocoder's own level) and is muted where the input is below
    ``silence_dbfs`` (null: no gate). ``precision``: ``bf16`` (autocast) or ``fp32``; null: bf16 on
    CUDA, fp32 on CPU. ``restore_batch`` restores several files at once, each as ``restore`` would.
    ``compile``: run the vocoder's generator passes through ``torch.compile`` (a WaveFit vocoder;
    restorekit.models.compiling): faster from the second call on, at equal output, after a first call
    that compiles (about a minute on a CPU); worth it for many files. Compiles on the first restore,
    on whatever device the restorer is on then.
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
        precision: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if not 0 < overlap_seconds < chunk_seconds:
            raise ConfigError(
                f"miipher2: overlap_seconds ({overlap_seconds}) must be > 0 and < chunk_seconds ({chunk_seconds})"
            )
        check_level_args("miipher2", output_peak)
        self.precision = check_precision("miipher2", precision)
        self.output_peak, self.silence_dbfs = output_peak, silence_dbfs
        self.feature_cleaner, self.vocoder = _module(feature_cleaner, "feature_cleaner"), _module(vocoder, "vocoder")
        check_pair(self.feature_cleaner, self.vocoder)
        self.chunk_seconds, self.overlap_seconds, self.seed = chunk_seconds, overlap_seconds, int(seed)
        self.sample_rate = self.vocoder.sample_rate
        self.compile_vocoder, self._compiled = bool(compile), False  # not .compile: nn.Module's method
        if self.compile_vocoder and not hasattr(self.vocoder, "compile_inference"):
            raise ConfigError(
                f"{type(self).__name__.lower()}: compile=true runs a WaveFit vocoder's generator through torch.compile; "
                f"this restorer's vocoder is {type(self.vocoder).__name__}, which has no compiled path; set compile=false"
            )
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

    def restore(self, wave: np.ndarray | torch.Tensor, sr: int) -> tuple[np.ndarray, int]:
        """Restore mono audio (T,) at ``sr`` Hz; returns (float32 (round(T * rate / sr),), rate).
        One chunk at a time (memory of one chunk); ``restore_batch`` batches."""
        return self.restore_batch([wave], sr, batch_size=1)[0]

    @torch.inference_mode()
    def restore_batch(self, waves: Sequence[np.ndarray | torch.Tensor], sr: int,
                      batch_size: int = 8) -> list[tuple[np.ndarray, int]]:
        """Restore mono files [(T_i,)] at ``sr`` Hz -> [(float32 (round(T_i * rate / sr),), rate)], in order.

        Pieces (files up to ``chunk_seconds``, chunks of longer ones) run ``batch_size`` at a time,
        so memory is bounded by ``batch_size`` x chunk; the level policy applies per file. Each
        output equals ``restore`` of that file alone within float rounding (see the module doc).
        """
        sr = check_sample_rate(sr, "input sample rate")
        if self.compile_vocoder and not self._compiled:  # now: the weights are loaded and on their device
            self.vocoder.compile_inference()
            self._compiled = True
        xs = [_as_tensor(w).to(self.device) for w in waves]
        frame = self._frame_samples(sr)
        chunk = max(frame, round(self.chunk_seconds * sr / frame) * frame)
        overlap = max(frame, round(self.overlap_seconds * sr / frame) * frame)
        with autocast(self.device, self.precision):
            ys = render_files(lambda pieces: self._render_pieces(pieces, sr), xs, self.sample_rate / sr,
                              chunk, overlap, batch_size)
        return [(apply_level_policy(y, x.cpu().numpy(), sr, self.output_peak, self.silence_dbfs), self.sample_rate)
                for y, x in zip(ys, xs)]

    def _frame_samples(self, sr: int) -> int:
        return max(1, round(sr / self.feature_cleaner.frame_rate))

    def _render_pieces(self, pieces: list[Piece], sr: int) -> list[np.ndarray]:
        """Restore pieces together; a piece's first output sample positions its noise in the file."""
        pad = math.ceil(_PAD_SECONDS * sr)
        feats = self._features([torch.nn.functional.pad(x, (0, pad)) for x, _, _ in pieces], sr)
        noises = [self._noise(start, f.shape[0] * self.vocoder.hop)[0] for f, (_, start, _) in zip(feats, pieces)]
        if len(feats) > 1 and hasattr(self.vocoder, "infer_batch"):
            ys = self.vocoder.infer_batch(feats, noises)
        else:
            ys = [self.vocoder.infer(f[None], n[None])[0] for f, n in zip(feats, noises)]
        return [_fit(y, n) for y, (_, _, n) in zip(ys, pieces)]

    def _features(self, waves: list[torch.Tensor], sr: int) -> list[torch.Tensor]:
        """Cleaned features [(frames_i, dim)] of waves [(T_i,)]: one padded, masked batch where the
        encoder gives every file exactly the frames it gives it alone, else one wave at a time."""
        encoder = getattr(self.feature_cleaner, "encoder", None)
        if len(waves) == 1 or not masks_exactly(encoder):
            return [self.feature_cleaner(w[None], sr)[0] for w in waves]
        lengths = torch.tensor([w.shape[0] for w in waves], device=waves[0].device)
        wave16, lengths16 = encoder.to_16k(pad_stack(waves), sr, lengths)
        inputs, mask = encoder.input(wave16, lengths16)
        frames = [encoder.num_frames(w.shape[0], sr) for w in waves]
        if encoder.spec.frontend == "fbank":
            # The frames the file alone gets: its last stacked frame too when its second half is the
            # extractor's zero padding (the frontend's own mask would drop that frame).
            steps = torch.arange(inputs.shape[1], device=inputs.device)
            mask = steps[None] < torch.tensor(frames, device=inputs.device)[:, None]
        feats = encoder.encode(inputs, mask)
        return [feats[i, :n] for i, n in enumerate(frames)]

    def _noise(self, start: int, length: int) -> torch.Tensor:
        """White noise for output samples [start, start + length), identical wherever it is drawn."""
        first, last = start // NOISE_BLOCK, (start + length - 1) // NOISE_BLOCK
        blocks = [
            torch.randn(NOISE_BLOCK, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + b))
            for b in range(first, last + 1)
        ]
        offset = start - first * NOISE_BLOCK
        return torch.cat(blocks)[offset: offset + length][None].to(self.device)


def masks_exactly(encoder: nn.Module | None) -> bool:
    """True for SSL encoders whose attention mask makes padding invisible to valid frames: w2v-BERT
    (fbank input, causal depthwise convolutions) and waveform encoders with a layer-norm feature
    extractor (HuBERT / WavLM Large). Group-norm extractors (base models) normalise over the padding
    and Gemma 3n's subsampling convolutions read it, so those encode one piece at a time."""
    if not isinstance(encoder, SSLEncoder):
        return False
    if encoder.spec.frontend == "fbank":
        return True
    return encoder.spec.frontend == "waveform" and encoder.model.config.feat_extract_norm == "layer"


def check_precision(who: str, precision: str | None) -> str | None:
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"{who}: precision '{precision}' is unknown; use one of {PRECISIONS} or null "
                          "(bf16 on CUDA, fp32 on CPU)")
    return precision


def autocast(device: torch.device, precision: str | None) -> torch.autocast:
    """bf16 autocast when ``precision`` is bf16, or null on CUDA; off (fp32) otherwise."""
    use = precision == "bf16" or (precision is None and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


def _fit(y: torch.Tensor, n: int) -> np.ndarray:
    """(T,) -> float32 numpy (n,): trimmed or zero-padded at the end."""
    y = torch.nn.functional.pad(y[:n], (0, max(0, n - y.shape[0])))
    return y.float().cpu().numpy()


def piece_spans(length: int, chunk: int, overlap: int, ratio: float) -> list[tuple[int, int, int, int]]:
    """(start, end, out_start, out_end) of the pieces a file of ``length`` input samples is restored
    in: itself when it fits in ``chunk``, else chunks overlapping by ``overlap`` (``ratio`` = output
    rate / input rate; the last piece ends at the file's output length)."""
    out_len = round(length * ratio)
    spans, start = [], 0
    while True:
        end = min(start + chunk, length)
        spans.append((start, end, round(start * ratio), round(end * ratio) if end < length else out_len))
        if end >= length:
            return spans
        start += chunk - overlap


def render_files(render_batch: Callable[[list[Piece]], list[np.ndarray]], xs: Sequence[torch.Tensor],
                 ratio: float, chunk: int, overlap: int, batch_size: int,
                 equal_lengths: bool = False) -> list[np.ndarray]:
    """Every file of ``xs`` [(T_i,)] restored: its pieces (``piece_spans``) rendered
    ``render_batch(pieces)`` at most ``batch_size`` at a time, longest first (so a batch holds
    similar lengths; ``equal_lengths``: only pieces of one length share a batch), then each file's
    pieces merged in order, level-matched and cross-faded at the seams (``_merge``). Every restorer
    chunks and batches through this."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    spans = [piece_spans(x.shape[0], chunk, overlap, ratio) for x in xs]
    jobs = sorted(((i, k) for i, s in enumerate(spans) for k in range(len(s))),
                  key=lambda j: spans[j[0]][j[1]][0] - spans[j[0]][j[1]][1])
    done: dict[tuple[int, int], np.ndarray] = {}
    for batch in _batches(jobs, batch_size, (lambda j: spans[j[0]][j[1]][1] - spans[j[0]][j[1]][0])
                          if equal_lengths else None):
        pieces = [(xs[i][a:b], oa, ob - oa) for i, k in batch for a, b, oa, ob in [spans[i][k]]]
        done.update(zip(batch, render_batch(pieces)))
    return [_join([done[(i, k)] for k in range(len(s))], s) for i, s in enumerate(spans)]


def _batches(jobs: list, size: int, key: Callable | None) -> list[list]:
    """Consecutive runs of at most ``size`` jobs (of one ``key`` value when given)."""
    out: list[list] = []
    for job in jobs:
        if out and len(out[-1]) < size and (key is None or key(out[-1][0]) == key(job)):
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _join(pieces: list[np.ndarray], spans: list[tuple[int, int, int, int]]) -> np.ndarray:
    if len(pieces) == 1:
        return pieces[0]
    out = np.zeros(spans[-1][3], dtype=np.float32)
    written = 0
    for piece, (_, _, o_start, _) in zip(pieces, spans):
        written = _merge(out, piece, o_start, written)
    return out


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
    # the centred part of the full convolution: mode="same" returns the kernel's length, not the
    # input's, for inputs under 2 * reach + 1 windows (0.25 s)
    spread = np.convolve((rms_db > silence_dbfs).astype(np.float64), np.ones(2 * reach + 1))
    active = spread[reach: reach + frames] > 0
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
