"""FINALLY generator (Babaev et al., NeurIPS 2024): HiFi++ with WavLM-Large features, 16 -> 16 or 48 kHz.

16 kHz wave -> log mel -> SpectralUNet (512 channels) ++ WavLM-Large's last hidden state (1024-d,
frozen, nearest-aligned to the 62.5 Hz mel frames) -> ResBlock1 over 1536 channels -> LeakyReLU ->
1x1 conv to 512 -> HiFi backbone (C 512) -> WaveUNet over [backbone output, input wave] ->
SpectralMaskNet -> conv_post + tanh (16 kHz), or, for stage 3, the Upsample WaveUNet
(``upsampler``) + tanh (48 kHz). The module name avoids the keyword ``finally``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from restorekit.errors import AudioError, ConfigError, DataError
from restorekit.mel import LogMel
from restorekit.models import MODELS
from restorekit.models.hifigan import LRELU_SLOPE, ResBlock1, init_weights, wn
from restorekit.models.hifipp import A2A_MEL, HiFiPlusPlusCore, MultiScaleResnet, pad_to_multiple

WAVLM_LARGE: dict[str, Any] = {"name": "wavlm", "args": {"pretrained": "microsoft/wavlm-large", "layer": 24,
                                                            "normalize_waveform": True}}
_HOP = 256  # mel hop at 16 kHz: one mel frame per 256 samples (62.5 Hz)


class UpsampleWaveUNet(nn.Module):
    """FINALLY stage-3 upsampler: waveform channels (B, in_width, T) at 16 kHz -> (B, 1, factor * T).

    A WaveUNet (MultiScaleResnet, scale 4; T a multiple of 4^(levels - 1)) to ``channels`` ->
    LeakyReLU 0.1 -> weight-normed ConvTranspose1d(channels -> 1, kernel = stride = ``factor``).
    """

    def __init__(self, in_width: int, widths: Sequence[int], depth: int, channels: int, factor: int = 3) -> None:
        super().__init__()
        self.waveunet = MultiScaleResnet(widths, depth, in_width=in_width, out_width=channels, scale=4, dims=1)
        self.up = init_weights(wn(nn.ConvTranspose1d(channels, 1, factor, factor)))
        self.factor, self.length_multiple = int(factor), self.waveunet.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(nn.functional.leaky_relu(self.waveunet(x), LRELU_SLOPE))


@MODELS.register("finally")
class FinallyGenerator(nn.Module):
    """FINALLY generator: wave (B, T) at 16 kHz [+ WavLM context] -> wave (B, T * sample_rate / 16000) in [-1, 1].

    ``wavlm``: a MODELS node for the frozen encoder (default WavLM-Large, ``layer`` 24 = its last
    hidden state, per-utterance input normalisation on unless the node sets
    ``normalize_waveform: false``); null builds the generator without the WavLM branch (tiny
    tests). ``upsample``: add the stage-3 Upsample WaveUNet (``upsampler``; 48 kHz out) instead of
    conv_post (16 kHz out). Widths (recipe defaults): SpectralUNet ``spectralunet_widths`` /
    ``spectralunet_depth`` / ``spectralunet_out``; HiFi backbone ``channels`` (rates 8/8/2/2);
    WaveUNet ``waveunet_widths`` / ``waveunet_depth``; SpectralMaskNet ``spectralmasknet_widths`` /
    ``spectralmasknet_depth``; upsampler ``upsampler_widths`` / ``upsampler_depth`` /
    ``upsampler_channels``. About 80.9M parameters without WavLM.
    forward(wave, context=None, context_offset=None, context_lengths=None): ``context`` (B, Tc) is the longer degraded
    row at 16 kHz and ``context_offset`` (B,) the sample in it where ``wave`` starts; WavLM then
    reads the whole context and its frames are cropped to the segment (without context it reads
    ``wave``). Mel frame j (window centre at sample 256 j + 127.5 of the segment) takes the WavLM
    frame whose receptive-field centre is nearest: index round((offset + 256 j - 72) / 320) for
    WavLM's 400-sample field and 320-sample hop, clamped to the frames there are. So the offset
    counts to the sample, and the features move in 20 ms steps. T need not be a multiple of 256:
    the input is zero-padded at the end and the output cropped back.
    """

    input_rate = 16000

    def __init__(
        self,
        wavlm: dict | None = WAVLM_LARGE,  # copied, never mutated
        upsample: bool = False,
        channels: int = 512,
        spectralunet_widths: Sequence[int] = (16, 32, 64, 128, 256),
        spectralunet_depth: int = 4,
        spectralunet_out: int = 512,
        waveunet_widths: Sequence[int] = (128, 128, 256, 512),
        waveunet_depth: int = 4,
        spectralmasknet_widths: Sequence[int] = (64, 128, 256, 512),
        spectralmasknet_depth: int = 1,
        upsampler_widths: Sequence[int] = (128, 128, 128, 128, 256),
        upsampler_depth: int = 3,
        upsampler_channels: int = 512,
    ) -> None:
        super().__init__()
        self.wavlm = _build_wavlm(wavlm)
        fused = spectralunet_out + (self.wavlm.feature_dim if self.wavlm is not None else 0)
        self.mel = LogMel(sample_rate=self.input_rate, **A2A_MEL)
        self.core = HiFiPlusPlusCore(self.mel, channels, spectralunet_widths, spectralunet_depth, spectralunet_out,
                                     waveunet_widths, waveunet_depth, spectralmasknet_widths, spectralmasknet_depth,
                                     "both", "finally", backbone_in=channels)
        self.pre_upsampler = init_weights(nn.Sequential(ResBlock1(fused, 3, (1, 3, 5)), nn.LeakyReLU(LRELU_SLOPE),
                                                        wn(nn.Conv1d(fused, channels, 1))))
        ch = self.core.out_channels
        self.upsampler = UpsampleWaveUNet(ch, upsampler_widths, upsampler_depth, upsampler_channels) if upsample else None
        self.conv_post = None if upsample else init_weights(wn(nn.Conv1d(ch, 1, 7, padding=3)))
        self.sample_rate = self.input_rate * (self.upsampler.factor if self.upsampler is not None else 1)
        self.hop = _HOP
        multiples = [_HOP, self.core.length_multiple] + ([self.upsampler.length_multiple] if upsample else [])
        self.length_multiple = math.lcm(*multiples)

    def forward(self, wave: torch.Tensor, context: torch.Tensor | None = None,
                context_offset: torch.Tensor | None = None, context_lengths: torch.Tensor | None = None) -> torch.Tensor:
        length = wave.shape[-1]
        x = pad_to_multiple(wave, self.length_multiple, "finally")
        h = self.core.spectralunet(self.mel(x))
        if self.wavlm is not None:
            feats = self.ssl_features(wave, h.shape[-1], context, context_offset, context_lengths)
            h = torch.cat([feats.to(h.dtype), h], 1)
        y = self.core.vocode(self.pre_upsampler(h), x)
        y = self.upsampler(y) if self.upsampler is not None else self.conv_post(y)
        return torch.tanh(y)[:, 0, : length * self.sample_rate // self.input_rate]

    def ssl_features(self, wave: torch.Tensor, frames: int, context: torch.Tensor | None = None,
                     context_offset: torch.Tensor | None = None,
                     context_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen WavLM features aligned to ``frames`` mel frames of ``wave``: (B, feature_dim, frames).

        WavLM reads ``context`` (B, Tc) when given, else ``wave`` (B, T) itself (offset 0); see the
        class docstring for the frame alignment. ``context_lengths`` (B,): the valid samples of each
        zero-padded context row (collate's ``context_lengths``), so WavLM's input normalisation and
        attention ignore the padding of rows shorter than the longest.
        """
        if self.wavlm is None:
            raise ConfigError("finally: this generator was built with wavlm: null and has no WavLM features")
        context, offset = _context(wave, context, context_offset)
        with torch.no_grad():
            feats = self.wavlm(context, self.input_rate, context_lengths)  # (B, Fc, D)
        if feats.shape[1] == 0:
            raise AudioError(f"finally: {context.shape[-1]} samples are too short for WavLM (one frame needs "
                             f"{self._receptive_field()}); give at least that much audio or context")
        index = self.nearest_ssl_frames(offset, frames, feats.shape[1])
        return torch.gather(feats, 1, index[..., None].expand(-1, -1, feats.shape[-1])).transpose(1, 2)

    def nearest_ssl_frames(self, offset: torch.Tensor, frames: int, ssl_frames: int) -> torch.Tensor:
        """(B, frames) long: for mel frame j of a segment starting at context sample ``offset`` (B,),
        the SSL frame whose receptive-field centre is nearest to the mel window's centre."""
        hop = math.prod(self.wavlm.model.config.conv_stride)
        # twice the centre difference, to stay in integers: mel window centre 256 j - pad + (n_fft - 1) / 2,
        # SSL frame centre hop * i + (field - 1) / 2
        shift2 = self.mel.n_fft - 2 * self.mel.pad - self._receptive_field()
        start2 = 2 * (offset.long()[:, None] + _HOP * torch.arange(frames, device=offset.device)[None])
        index = torch.div(start2 + shift2 + hop, 2 * hop, rounding_mode="floor")
        return index.clamp(0, ssl_frames - 1)

    def _receptive_field(self) -> int:
        config = self.wavlm.model.config
        field, jump = 1, 1
        for k, s in zip(config.conv_kernel, config.conv_stride):
            field, jump = field + (k - 1) * jump, jump * s
        return field


def _build_wavlm(node: Mapping[str, Any] | None) -> nn.Module | None:
    if node is None:
        return None
    if not isinstance(node, Mapping) or "name" not in node:
        raise ConfigError(f"finally.wavlm must be a model node {{name: wavlm, args: {{...}}}} or null, got {node!r}")
    args = dict(node.get("args") or {})
    if node["name"] in ("wavlm", "hubert"):
        args.setdefault("normalize_waveform", True)  # WavLM-Large was trained on normalised input
    encoder = MODELS.build({"name": node["name"], "args": args}, where="models.generator.args.wavlm")
    if getattr(getattr(encoder, "spec", None), "frontend", None) != "waveform":
        raise ConfigError(f"finally.wavlm: '{node['name']}' does not read the waveform itself; FINALLY aligns "
                          "features by the encoder's conv frames, so use wavlm (or hubert)")
    return encoder


def _context(wave: torch.Tensor, context: torch.Tensor | None,
             offset: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, offset) checked; the segment itself at offset 0 when no context is given."""
    if context is None:
        if offset is not None:
            raise DataError("finally: context_offset was given without context; pass both or neither")
        return wave, torch.zeros(wave.shape[0], dtype=torch.long, device=wave.device)
    if offset is None:
        raise DataError("finally: context was given without context_offset; pass (batch,) sample indices "
                        "where each segment starts in its context row")
    if context.ndim != 2 or context.shape[0] != wave.shape[0] or tuple(offset.shape) != (wave.shape[0],):
        raise DataError(f"finally: expected context (batch, Tc) and context_offset (batch,) for a batch of "
                        f"{wave.shape[0]}, got {tuple(context.shape)} and {tuple(offset.shape)}")
    end = int((offset.long() + wave.shape[-1]).max())
    if int(offset.min()) < 0 or end > context.shape[-1]:
        raise DataError(f"finally: segments of {wave.shape[-1]} samples at offsets {offset.tolist()} do not lie "
                        f"inside the {context.shape[-1]}-sample context; offsets must be in "
                        f"[0, {context.shape[-1] - wave.shape[-1]}]")
    return context, offset.long()


__all__ = ["FinallyGenerator", "UpsampleWaveUNet", "WAVLM_LARGE"]
