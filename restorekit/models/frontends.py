"""Batched torch front ends that turn 16 kHz audio into what an SSL encoder reads.

transformers' feature extractors work on numpy arrays one utterance at a time on the CPU; the
encoders here need the same numbers batched on the model's device, so the w2v-BERT fbank and the
Gemma 3n log mel are re-implemented in torch (no library provides them batched on device). Their
constants (mel filter banks, windows) come from transformers itself, so they are exactly the
extractors'.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

SSL_SAMPLE_RATE = 16_000


def valid_mask(lengths: torch.Tensor | None, size: int, batch: int, device: torch.device) -> torch.Tensor:
    """(B, size) bool, True on valid positions; all True when ``lengths`` is None."""
    if lengths is None:
        return torch.ones(batch, size, dtype=torch.bool, device=device)
    return torch.arange(size, device=device)[None, :] < lengths.to(device)[:, None]


class W2vBertFbank(nn.Module):
    """w2v-BERT 2.0 / SeamlessM4T input: 80-bin Kaldi fbank, per-utterance mean/variance
    normalisation, two frames stacked into one (160-d at 50 Hz). Wave (B, T) at 16 kHz ->
    (features (B, frames, 160), mask (B, frames)).

    Matches ``SeamlessM4TFeatureExtractor`` (frame 400, hop 160, FFT 512, pre-emphasis 0.97,
    DC removal, 16-bit scaling, mel floor 1.19e-7, ddof=1 variance, odd frame counts padded
    with one zero frame before stacking).
    """

    frame_length, hop_length, fft_length, stride = 400, 160, 512, 2

    def __init__(self, num_mel_bins: int = 80) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank, window_function

        mel = mel_filter_bank(
            num_frequency_bins=257, num_mel_filters=num_mel_bins, min_frequency=20,
            max_frequency=SSL_SAMPLE_RATE // 2, sampling_rate=SSL_SAMPLE_RATE, norm=None,
            mel_scale="kaldi", triangularize_in_mel_space=True,
        )
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        window = window_function(self.frame_length, "povey", periodic=False)
        self.register_buffer("window", torch.from_numpy(window).float(), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Stacked frames the extractor gives for ``num_samples`` at 16 kHz."""
        raw = max(0, 1 + (num_samples - self.frame_length) // self.hop_length)
        return (raw + 1) // 2

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, raw_frames, 80) Kaldi-style log mel (float64 inside, like the extractor)."""
        frames = (wave.double() * 32768.0).unfold(-1, self.frame_length, self.hop_length)
        frames = frames - frames.mean(-1, keepdim=True)
        # Kaldi pre-emphasis within each frame; its first sample is scaled by (1 - 0.97).
        frames = torch.cat([frames[..., :1] * 0.03, frames[..., 1:] - 0.97 * frames[..., :-1]], -1)
        spec = torch.fft.rfft(frames * self.window.double(), n=self.fft_length).abs().square()
        return torch.matmul(spec, self.mel.double()).clamp_min(1.192092955078125e-07).log()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.log_mel(wave)
        raw_lengths = None
        if lengths is not None:
            raw_lengths = ((lengths - self.frame_length) // self.hop_length + 1).clamp_min(1)
        mask = valid_mask(raw_lengths, feats.shape[1], feats.shape[0], feats.device)
        feats = self._normalise(feats, mask)
        return self._stack(feats.float(), mask)

    @staticmethod
    def _normalise(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(feats.dtype)
        n = m.sum(1, keepdim=True)
        mean = (feats * m).sum(1, keepdim=True) / n
        var = ((feats - mean).square() * m).sum(1, keepdim=True) / (n - 1).clamp_min(1)
        return (feats - mean) / (var + 1e-7).sqrt() * m

    def _stack(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.shape[1] % self.stride:
            feats = nn.functional.pad(feats, (0, 0, 0, 1))
            mask = nn.functional.pad(mask, (0, 1))
        b, t, c = feats.shape
        # the extractor keeps the mask of the second frame of each pair
        return feats.reshape(b, t // 2, c * 2), mask[:, 1::2]


class WaveformInput(nn.Module):
    """HuBERT / WavLM input: the 16 kHz waveform itself, optionally normalised to zero mean and
    unit variance per utterance (``Wav2Vec2FeatureExtractor(do_normalize=True)``, used by the
    large checkpoints). Wave (B, T) -> (wave (B, T), sample mask (B, T))."""

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = valid_mask(lengths, wave.shape[1], wave.shape[0], wave.device)
        if not self.normalize:
            return wave * mask, mask
        m = mask.to(wave.dtype)
        n = m.sum(1, keepdim=True)
        mean = (wave * m).sum(1, keepdim=True) / n
        var = ((wave - mean).square() * m).sum(1, keepdim=True) / n
        return (wave - mean) / (var + 1e-7).sqrt() * m, mask


class Gemma3nLogMel(nn.Module):
    """Gemma 3n audio encoder input (USM style): 128-bin log mel of the magnitude spectrum, 32 ms
    frames every 10 ms, HTK-flavoured pre-emphasis, FFT "overdrive" (1024 points), optional
    per-bin normalisation. Wave (B, T) at 16 kHz -> (features (B, frames, bins), valid mask (B, frames)).

    Every constant (window, mel matrix, floor, per-bin statistics, scale) is read from a
    ``transformers`` ``Gemma3nAudioFeatureExtractor`` instance, by default one with its defaults,
    so this matches that extractor for the same settings. Like the extractor, input is zero-padded
    to a multiple of 128 samples before framing and a frame is valid when its first sample is.
    Unlike it, nothing is truncated at 30 s, and dithering (0 by default) is never applied: the
    encoder is frozen and its input should be deterministic.
    """

    pad_multiple = 128  # the extractor's default ``pad_to_multiple_of``

    def __init__(self, extractor: Any | None = None) -> None:
        super().__init__()
        if extractor is None:
            from transformers import Gemma3nAudioFeatureExtractor

            extractor = Gemma3nAudioFeatureExtractor()
        fe = extractor
        self.frame_length, self.hop_length = int(fe.frame_length), int(fe.hop_length)
        self.fft_length = int(fe.fft_length)
        self.preemphasis, self.htk_preemphasis = float(fe.preemphasis), bool(fe.preemphasis_htk_flavor)
        self.input_scale, self.mel_floor = float(fe.input_scale_factor), float(fe.mel_floor)
        self.register_buffer("window", torch.as_tensor(fe.window, dtype=torch.float64), persistent=False)
        self.register_buffer("mel", torch.as_tensor(fe.mel_filters, dtype=torch.float64), persistent=False)
        for name in ("per_bin_mean", "per_bin_stddev"):
            value = getattr(fe, name, None)
            stats = None if value is None else torch.as_tensor(value, dtype=torch.float64).reshape(-1)
            self.register_buffer(name, stats, persistent=False)
        self.num_bins = self.mel.shape[1]

    def _padded(self, num_samples: int) -> int:
        return -(-num_samples // self.pad_multiple) * self.pad_multiple

    def num_frames(self, num_samples: int) -> int:
        """Frames the extractor gives for ``num_samples`` at 16 kHz."""
        return max(0, (self._padded(num_samples) - self.frame_length - 1) // self.hop_length + 1)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, frames, bins), float64 inside."""
        wave = nn.functional.pad(wave.double(), (0, self._padded(wave.shape[-1]) - wave.shape[-1]))
        # one extra sample per frame: the non-HTK pre-emphasis reads the sample before the frame
        frames = (wave * self.input_scale).unfold(-1, self.frame_length + 1, self.hop_length)
        p = self.preemphasis
        if p > 0 and self.htk_preemphasis:
            frames = torch.cat([frames[..., :1] * (1 - p), frames[..., 1:-1] - p * frames[..., :-2]], -1)
        elif p > 0:
            frames = frames[..., 1:] - p * frames[..., :-1]
        else:
            frames = frames[..., :-1]
        magnitude = torch.fft.rfft(frames * self.window, n=self.fft_length).abs()
        feats = torch.matmul(magnitude, self.mel).clamp_min(self.mel_floor).log()
        if self.per_bin_mean is not None:
            feats = feats - self.per_bin_mean
        if self.per_bin_stddev is not None:
            feats = feats / self.per_bin_stddev
        return feats

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.log_mel(wave)
        if lengths is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        else:
            starts = torch.arange(feats.shape[1], device=feats.device) * self.hop_length
            mask = starts[None, :] < lengths.to(feats.device)[:, None]
        return feats.float(), mask


class WhisperLogMel(nn.Module):
    """Whisper encoder input: log10 mel power spectrogram, 25 ms Hann frames every 10 ms (n_fft
    400, hop 160, centred with reflect padding, the last frame dropped), floored at 1e-10, clamped
    to 8 (log10 units) below each item's maximum, then (x + 4) / 4. Wave (B, T) at 16 kHz ->
    (B, bins, T // 160), equal to ``WhisperFeatureExtractor`` on the same (already padded) audio.

    The mel filters come from a ``transformers`` ``WhisperFeatureExtractor`` (80 bins for
    Whisper up to large-v2, 128 for large-v3), so they are exactly the extractor's.
    """

    hop_length = 160

    def __init__(self, extractor: Any | None = None, num_mel_bins: int = 80) -> None:
        super().__init__()
        if extractor is None:
            from transformers import WhisperFeatureExtractor

            extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
        self.n_fft, self.hop_length = int(extractor.n_fft), int(extractor.hop_length)
        self.register_buffer("mel", torch.as_tensor(extractor.mel_filters, dtype=torch.float64), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, dtype=torch.float64), persistent=False)
        self.num_bins = self.mel.shape[1]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(wave.double(), self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = stft[..., :-1].abs().square()  # (B, freq, frames); the extractor drops the last frame
        log_spec = torch.matmul(self.mel.T, power).clamp_min(1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return ((torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0).float()
