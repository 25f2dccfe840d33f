"""LMOS: FINALLY's regression loss, WavLM convolutional features plus STFT magnitudes."""
from __future__ import annotations

from typing import Any

import julius
import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from restorekit.losses.base import Loss, check_same_shape
from restorekit.losses.spectral import stft_magnitude

WAVLM_RATE = 16_000


@LOSSES.register("lmos")
class LMOSLoss(Loss):
    """LMOS (FINALLY, Babaev et al. 2024): ``feature_weight * ||phi(ref) - phi(est)||^2 + || |STFT ref| - |STFT est| ||_1``.

    Audio (B, T) at ``sample_rate`` Hz -> scalar. ``phi`` is WavLM's convolutional feature encoder
    followed by the feature-projection LayerNorm (512-d at 50 Hz, before the 512->1024 linear), run on
    the audio resampled to 16 kHz; WavLM is frozen but differentiable, so the gradient reaches the
    estimate. The STFT term is on the audio at its own rate (Hann, ``n_fft`` 1024, hop 256). Both
    norms are means over their elements (the paper writes norms; a mean keeps the weight 100
    meaningful whatever the segment length). ``pretrained``: WavLM hub id or folder (FINALLY:
    microsoft/wavlm-large); else ``config`` builds a random-init one (tests). ``normalize_waveform``:
    WavLM Large's per-utterance input normalisation (the open framework omits it: a bug).
    Only the convolutional encoder is used, so only one transformer layer is ever built.
    """

    def __init__(self, pretrained: str | None = "microsoft/wavlm-large", config: dict | None = None,
                 sample_rate: int = 16000, feature_weight: float = 100.0, n_fft: int = 1024,
                 hop_length: int = 256, normalize_waveform: bool = True) -> None:
        super().__init__()
        from restorekit.models import MODELS

        if pretrained is None and config is None:
            raise ConfigError("lmos: set pretrained (a WavLM hub id or folder, e.g. microsoft/wavlm-large) "
                              "or config (a transformers WavLMConfig override for a random-init encoder)")
        node: dict[str, Any] = {"name": "wavlm", "args": {"pretrained": pretrained, "config": config, "layer": 1,
                                                          "normalize_waveform": normalize_waveform}}
        self.encoder = MODELS.build(node, where="losses.lmos")
        self.sample_rate, self.feature_weight = int(sample_rate), float(feature_weight)
        self.n_fft, self.hop = int(n_fft), int(hop_length)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """phi(wave): (B, T) at ``sample_rate`` -> (B, frames, 512) conv features after the projection norm."""
        wave = wave.float()
        if self.sample_rate != WAVLM_RATE:
            wave = julius.resample_frac(wave, self.sample_rate, WAVLM_RATE)
        inputs, _ = self.encoder.input(wave)
        model = self.encoder.model
        hidden = model.feature_extractor(inputs).transpose(1, 2)
        return model.feature_projection.layer_norm(hidden)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        check_same_shape(estimate, reference, "lmos")
        with torch.no_grad():
            target = self.features(reference)
        feature_term = (self.features(estimate) - target).square().mean()
        est = stft_magnitude(estimate.float(), self.n_fft, self.hop, self.n_fft)
        ref = stft_magnitude(reference.float(), self.n_fft, self.hop, self.n_fft)
        return self.feature_weight * feature_term + (est - ref).abs().mean()


__all__ = ["LMOSLoss"]
