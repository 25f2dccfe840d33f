"""Frozen speaker encoders: wave (B, T) at any rate -> L2-normalised embeddings (B, dim).

One contract for every encoder (Miipher-1's cleaner conditions on it): ``forward(wave, sr,
lengths)`` resamples to 16 kHz with julius, embeds each item over its valid length only (padding
never changes an embedding) and returns unit-norm rows; ``dim`` is the embedding size. Weights
never train: parameters need no gradient and the module stays in eval mode even when its parent
trains.
"""
from __future__ import annotations

import julius
import torch
from torch import nn

from restorekit.errors import ConfigError
from restorekit.models import MODELS

SPEAKER_SAMPLE_RATE = 16_000


class SpeakerEncoder(nn.Module):
    """Base class: wave (B, T) float at ``sr`` Hz, lengths (B,) samples or None -> (B, ``dim``) unit norm.

    Subclasses implement ``embed(wave16, lengths16)`` on 16 kHz audio and call ``freeze()`` last.
    """

    dim: int
    name = "speaker_encoder"

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SpeakerEncoder:
        """Always eval: batch-norm statistics and dropout of a pretrained encoder must not change."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if wave.ndim != 2:
            raise ConfigError(f"{self.name}: expected audio of shape (batch, time), got {tuple(wave.shape)}")
        wave16, lengths16 = to_16k(wave.float(), int(sr), lengths)
        if lengths16 is None:
            lengths16 = torch.full((wave16.shape[0],), wave16.shape[1], dtype=torch.long)
        lengths16 = lengths16.long().clamp(1, wave16.shape[1]).cpu()
        return self.embed(wave16, lengths16)

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T) at 16 kHz, lengths (B,) on the CPU -> (B, dim) unit-norm embeddings."""
        raise NotImplementedError


def to_16k(wave: torch.Tensor, sr: int, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resample (B, T) to 16 kHz on its device (julius); lengths scale with the rate."""
    if sr == SPEAKER_SAMPLE_RATE:
        return wave, lengths
    wave = julius.resample_frac(wave, sr, SPEAKER_SAMPLE_RATE)
    if lengths is not None:
        lengths = torch.div(lengths * SPEAKER_SAMPLE_RATE, sr, rounding_mode="floor")
    return wave, lengths


# --- resemblyzer ------------------------------------------------------------------------------
@MODELS.register("resemblyzer")
class ResemblyzerEncoder(SpeakerEncoder):
    """Resemblyzer GE2E speaker encoder (weights in its wheel, offline): wave (B, T) any rate -> (B, 256).

    A 3-layer LSTM on 40 mel bands. Each item is embedded with ``VoiceEncoder.embed_utterance``
    over its valid samples: 1.6 s partial windows at 1.3 per second, their embeddings averaged and
    renormalised to unit norm. The mel
    spectrogram is librosa's on the CPU (as resemblyzer computes it); the LSTM runs on the
    module's device. No voice-activity trimming: the caller decides what audio to embed.
    """

    name = "resemblyzer"

    def __init__(self) -> None:
        super().__init__()
        from restorekit.metrics.speaker import _import_resemblyzer

        self.encoder = _import_resemblyzer().VoiceEncoder(device="cpu", verbose=False)
        self.dim = int(self.encoder.linear.out_features)
        self.freeze()

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # embed_utterance moves its mels to encoder.device; keep that where the weights are
        self.encoder.device = self.encoder.linear.weight.device
        items = wave.detach().cpu().numpy()
        rows = [torch.from_numpy(self.encoder.embed_utterance(items[i, : int(n)])) for i, n in enumerate(lengths)]
        return torch.stack(rows).to(wave.device)
