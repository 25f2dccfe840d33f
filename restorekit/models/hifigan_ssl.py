"""HiFi-GAN on SSL features: the vocoder of the Miipher-2 variant with a HiFi-GAN (Atotti/miipher-2).

SSL features at their frame rate (50 Hz) -> an optional Conformer pre-net (2 layers, 768-d, 8
heads, FFN 1024, kernel 31 in that variant) -> linear interpolation to HiFi-GAN's frame rate
(``sample_rate / prod(upsample_rates)``: 86.13 Hz at 22.05 kHz with hop 256) -> HiFi-GAN. One
feature frame stands for ``hop = sample_rate / feature_rate`` output samples (441 at 22.05 kHz, 480
at 24 kHz), so the module has WaveFit's interface (``forward`` returns a one-element list, ``infer``
the waveform, ``hop``, ``feature_dim``, ``feature_rate``) and is the ``vocoder`` role of the
Miipher-2 stages 2 and 3 by YAML alone (``configs/miipher2/vocoder_hifigan.yaml``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.models.conformer import Conformer
from restorekit.models.hifigan import HiFiGANGenerator
from restorekit.models.wavefit import prenet_config

V1 = {"channels": 512, "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4]}


@MODELS.register("hifigan_ssl_vocoder")
class HiFiGANSSLVocoder(nn.Module):
    """HiFi-GAN SSL vocoder: features (B, F, feature_dim) at feature_rate Hz -> [wave (B, F * hop)] at sample_rate Hz.

    ``hop = sample_rate / feature_rate`` must be a whole number (22050 / 50 = 441, 24000 / 50 = 480).
    ``prenet``: Conformer blocks on the features before interpolation (keys ``layers`` (0: none),
    ``dim``, ``heads``, ``ffn_dim``, ``kernel_size``, ``dropout``); ``generator``: HiFi-GAN's args
    (default V1: 512 channels, rates 8,8,2,2); its ``in_channels`` is the pre-net's (or the
    features') width. ``forward`` returns a one-element list (the trainers' WaveFit interface);
    ``infer(features, noise=None)`` the waveform (``noise`` is ignored: HiFi-GAN draws none).
    """

    def __init__(self, feature_dim: int = 1024, feature_rate: float = 50.0, sample_rate: int = 22050,
                 prenet: Mapping[str, Any] | None = None, generator: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        hop = sample_rate / feature_rate
        if abs(hop - round(hop)) > 1e-9:
            raise ConfigError(f"hifigan_ssl_vocoder: sample_rate / feature_rate = {sample_rate} / {feature_rate} is "
                              "not a whole number of samples per feature frame; pick rates that divide (e.g. 22050 / 50)")
        self.feature_dim, self.feature_rate, self.sample_rate = int(feature_dim), float(feature_rate), int(sample_rate)
        self.hop = round(hop)
        cfg = prenet_config(prenet, self.feature_dim, "hifigan_ssl_vocoder")
        self.prenet: Conformer | None = None
        if cfg["layers"]:
            self.prenet = Conformer(self.feature_dim, cfg["layers"], cfg["dim"], cfg["heads"], cfg["ffn_dim"],
                                    cfg["kernel_size"], cfg["dropout"])
        width = cfg["dim"] if self.prenet is not None else self.feature_dim
        args = {**V1, **dict(generator or {}), "in_channels": width, "sample_rate": self.sample_rate}
        self.generator = HiFiGANGenerator(**args)

    def forward(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> list[torch.Tensor]:
        if features.ndim != 3 or features.shape[-1] != self.feature_dim:
            raise ConfigError(f"hifigan_ssl_vocoder: expected features (batch, frames, {self.feature_dim}), got "
                              f"{tuple(features.shape)}; set models.vocoder.args.feature_dim to the encoder's width")
        x = self.prenet(features) if self.prenet is not None else features
        samples = features.shape[1] * self.hop
        frames = math.ceil(samples / self.generator.hop)
        x = F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=False)
        return [self.generator(x)[:, :samples]]

    def infer(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The waveform (B, frames * hop) at ``sample_rate`` Hz."""
        return self.forward(features)[0]


__all__ = ["HiFiGANSSLVocoder"]
