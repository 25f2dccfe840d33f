"""Losses on waveforms through spectra: multi-resolution STFT and mel L1."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss, check_same_shape
from restorekit.losses.feature import spectral_convergence
from restorekit.mel import LogMel


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int, win: int, eps: float = 1e-7) -> torch.Tensor:
    """|STFT| of (B, T) audio with a Hann window, (B, freq, frames), floored at ``eps``."""
    window = torch.hann_window(win, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, n_fft, hop, win, window, center=True, return_complex=True)
    return spec.abs().clamp_min(eps)


@LOSSES.register("multi_resolution_stft")
class MultiResolutionSTFTLoss(Loss):
    """Spectral convergence + L1 log-magnitude, averaged over STFT resolutions; audio (B, T) -> scalar.

    ``fft_sizes``, ``hop_sizes`` and ``win_lengths`` (samples) give one resolution per position.
    Each term is computed per resolution and the result is the mean over resolutions.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (120, 240, 480),
        win_lengths: Sequence[int] = (480, 960, 1920),
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths) or not fft_sizes:
            raise ConfigError(
                "multi_resolution_stft: fft_sizes, hop_sizes and win_lengths must be non-empty lists of "
                f"equal length, got {list(fft_sizes)}, {list(hop_sizes)}, {list(win_lengths)}"
            )
        self.resolutions = list(zip(fft_sizes, hop_sizes, win_lengths))

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_same_shape(estimate, reference, "multi_resolution_stft")
        total = estimate.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            est, ref = stft_magnitude(estimate, n_fft, hop, win), stft_magnitude(reference, n_fft, hop, win)
            total = total + spectral_convergence(est, ref) + (est.log() - ref.log()).abs().mean()
        return total / len(self.resolutions)


@LOSSES.register("mel_l1")
class MelL1Loss(Loss):
    """Mean |log mel(estimate) - log mel(reference)| of audio (B, T) at ``sample_rate`` Hz -> scalar.

    The shared front end (restorekit.mel.LogMel): Slaney mel filters from librosa, Hann-window
    STFT (centred, n_fft window), natural log of magnitudes floored at 1e-5 (HiFi-GAN's convention).
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 100,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax,
                          center=True, log_floor=1e-5)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        return self.mel(wave)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_same_shape(estimate, reference, "mel_l1")
        return (self.log_mel(estimate) - self.log_mel(reference)).abs().mean()


__all__ = ["MultiResolutionSTFTLoss", "MelL1Loss", "stft_magnitude"]
