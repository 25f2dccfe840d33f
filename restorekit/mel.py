"""The one log-mel front end shared by models, losses and metrics.

HiFi-GAN's convention, which the FINALLY / HiFi++ family and most vocoders inherit: Hann-window
STFT, magnitude ``sqrt(re² + im² + mag_eps)``, Slaney mel filters from librosa (the field's
reference implementation), natural log of the mel energies floored at ``log_floor``.

Two framings:

- ``center=True`` (librosa's): reflect-pad ``n_fft // 2`` each side, ``1 + T // hop`` frames.
- ``center=False`` with ``pad``: reflect-pad ``pad`` samples each side first. HiFi-GAN pads
  ``(n_fft - hop) / 2`` (384 for n_fft 1024, hop 256) and so gets exactly ``T / hop`` frames when
  ``T`` is a multiple of ``hop``: mel frame ``j`` pairs with samples ``[j * hop, (j + 1) * hop)``,
  which is what a vocoder trainer needs to cut mel and audio sample-exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from restorekit.errors import AudioError, ConfigError


class LogMel(nn.Module):
    """Log-mel spectrogram: wave (B, T) at ``sample_rate`` Hz -> (B, n_mels, frames), float32.

    ``n_fft``, ``hop_length``, ``win_length`` (default ``n_fft``) in samples; ``fmin``/``fmax``
    in Hz (``fmax`` None: Nyquist). ``center``: librosa framing (reflect pad ``n_fft // 2``);
    ``pad``: reflect pad in samples each side, for ``center=False`` (HiFi-GAN: ``(n_fft - hop) / 2``
    gives ``T / hop`` frames). ``mag_eps`` is added under the magnitude's square root (a finite
    gradient at silence); ``log_floor`` clamps mel energies before the natural log. Always
    computed in float32, also under autocast: a bf16 STFT loses the quiet bins. ``power`` 1 filters
    the magnitude (vocoders, losses), 2 the power spectrum (librosa's melspectrogram; metrics).
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = None,
        center: bool = True,
        pad: int | None = None,
        mag_eps: float = 1e-9,
        log_floor: float = 1e-5,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        import librosa

        win_length = n_fft if win_length is None else int(win_length)
        _check_args(sample_rate, n_fft, hop_length, win_length, n_mels, center, pad)
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.win_length, self.n_mels, self.center = win_length, int(n_mels), bool(center)
        self.pad = int(pad or 0)
        self.fmin, self.fmax = float(fmin), None if fmax is None else float(fmax)
        self.mag_eps, self.log_floor, self.power = float(mag_eps), float(log_floor), float(power)
        if self.power not in (1.0, 2.0):
            raise ConfigError(f"log mel: power must be 1 (magnitude, vocoders) or 2 (power, librosa's default), got {power}")
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def frames(self, num_samples: int) -> int:
        """Mel frames produced for ``num_samples`` samples."""
        if self.center:
            return 1 + int(num_samples) // self.hop_length
        return 1 + (int(num_samples) + 2 * self.pad - self.n_fft) // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim != 2:
            raise AudioError(f"log mel: expected audio of shape (batch, time), got {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._log_mel(wave.float())

    def _log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        if self.pad:
            self._check_length(wave.shape[-1], self.pad, "pad")
            wave = torch.nn.functional.pad(wave[:, None], (self.pad, self.pad), mode="reflect")[:, 0]
        if self.center:
            self._check_length(wave.shape[-1], self.n_fft // 2, "center=True padding")
        elif wave.shape[-1] < self.n_fft:
            raise AudioError(f"log mel: {wave.shape[-1]} samples (after padding) are fewer than n_fft="
                             f"{self.n_fft}; give at least one window of audio")
        spec = torch.stft(wave, self.n_fft, self.hop_length, self.win_length, self.window.float(),
                          center=self.center, pad_mode="reflect", return_complex=True)
        energy = spec.real.square() + spec.imag.square() + self.mag_eps
        mag = energy if self.power == 2.0 else energy.sqrt()
        return torch.matmul(self.mel_basis.float(), mag).clamp_min(self.log_floor).log()

    @staticmethod
    def _check_length(num_samples: int, pad: int, what: str) -> None:
        # reflect padding needs more samples than it pads; torch's own error names no cause
        if num_samples <= pad:
            raise AudioError(f"log mel: {num_samples} samples are too short for the {pad}-sample reflect "
                             f"{what}; give more than {pad} samples")


def _check_args(sample_rate: int, n_fft: int, hop: int, win: int, n_mels: int, center: bool,
                pad: int | None) -> None:
    if min(sample_rate, n_fft, hop, win, n_mels) <= 0:
        raise ConfigError(f"log mel: sample_rate, n_fft, hop_length, win_length and n_mels must be positive, got "
                          f"{sample_rate}, {n_fft}, {hop}, {win}, {n_mels}")
    if win > n_fft:
        raise ConfigError(f"log mel: win_length={win} is longer than n_fft={n_fft}; set win_length <= n_fft")
    if pad is not None and (pad < 0 or (pad and center)):
        raise ConfigError(f"log mel: pad={pad} must be >= 0 and is for center=false framing (center=true pads "
                          "n_fft // 2 itself); set center: false or drop pad")


__all__ = ["LogMel"]
