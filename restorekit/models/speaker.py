"""Frozen speaker encoders: wave (B, T) at any rate -> L2-normalised embeddings (B, dim).

One contract for every encoder (Miipher-1's cleaner conditions on it): ``forward(wave, sr,
lengths)`` resamples to 16 kHz with julius, embeds each item over its valid length only (padding
never changes an embedding) and returns unit-norm rows; ``dim`` is the embedding size. Weights
never train: parameters need no gradient and the module stays in eval mode even when its parent
trains.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import julius
import torch
from torch import nn

from restorekit.errors import CheckpointError, ConfigError, one_line
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
        # A frozen encoder runs in float32 whatever the trainer's autocast (bf16 LSTMs have no CPU
        # kernel: oneDNN refuses them), so an embedding never depends on the training precision.
        with torch.autocast(device_type=wave16.device.type, enabled=False):
            return self.embed(wave16, lengths16).float()

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
        from restorekit.optional import import_resemblyzer

        self.encoder = import_resemblyzer().VoiceEncoder(device="cpu", verbose=False)
        self.dim = int(self.encoder.linear.out_features)
        self.freeze()

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # embed_utterance moves its mels to encoder.device; keep that where the weights are
        self.encoder.device = self.encoder.linear.weight.device
        items = wave.detach().cpu().numpy()
        rows = [torch.from_numpy(self.encoder.embed_utterance(items[i, : int(n)])) for i, n in enumerate(lengths)]
        return torch.stack(rows).to(wave.device)


# --- ECAPA-TDNN -------------------------------------------------------------------------------
# SpeechBrain's ECAPA-TDNN (speechbrain/spkrec-ecapa-voxceleb) written by hand: speechbrain itself
# depends on torchaudio, which restorekit must not import. Module names and nesting follow its
# `embedding_model.ckpt` state-dict keys (blocks.0.conv.conv.weight, blocks.1.res2net_block...,
# mfa, asp, asp_bn, fc), so the released checkpoint loads strictly; its Fbank front end and
# sentence mean normalisation are re-implemented in torch below.
ECAPA_HUB_ID = "speechbrain/spkrec-ecapa-voxceleb"
ECAPA_CKPT = "embedding_model.ckpt"


class _Conv1d(nn.Module):
    """SpeechBrain's Conv1d (channels first): "same" output length by reflect padding."""

    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        self.pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(cin, cout, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad), mode="reflect")
        return self.conv(x)


class _BatchNorm1d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class _TDNNBlock(nn.Module):
    """Conv1d -> ReLU -> BatchNorm (SpeechBrain's order)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = _Conv1d(cin, cout, kernel_size, dilation)
        self.activation = nn.ReLU()
        self.norm = _BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.conv(x)))


class _Res2NetBlock(nn.Module):
    """Channels split into ``scale`` groups; group i > 0 is convolved after adding group i-1's output."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(_TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(torch.chunk(x, self.scale, dim=1))
        out, y = [parts[0]], None
        for i, block in enumerate(self.blocks, start=1):
            y = block(parts[i] if y is None else parts[i] + y)
            out.append(y)
        return torch.cat(out, dim=1)


class _SEBlock(nn.Module):
    """Squeeze-excitation: channel gates from the time average."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.conv1 = _Conv1d(channels, se_channels, 1)
        self.relu = nn.ReLU()
        self.conv2 = _Conv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.relu(self.conv1(x.mean(dim=2, keepdim=True)))
        return torch.sigmoid(self.conv2(s)) * x


class _SERes2NetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, scale: int, se_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.tdnn1 = _TDNNBlock(cin, cout, 1, 1)
        self.res2net_block = _Res2NetBlock(cout, scale, kernel_size, dilation)
        self.tdnn2 = _TDNNBlock(cout, cout, 1, 1)
        self.se_block = _SEBlock(cout, se_channels)
        self.shortcut = _Conv1d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + residual


class _AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and std over time, the attention seeing global mean/std as context."""

    eps = 1e-12

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.tdnn = _TDNNBlock(channels * 3, attention_channels, 1, 1)
        self.tanh = nn.Tanh()
        self.conv = _Conv1d(attention_channels, channels, 1)

    def _stats(self, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (weights * x).sum(2)
        std = (weights * (x - mean.unsqueeze(2)).square()).sum(2).clamp(self.eps).sqrt()
        return mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        mean, std = self._stats(x, torch.full_like(x[:, :1], 1.0 / frames))
        context = torch.cat([x, mean.unsqueeze(2).expand(-1, -1, frames), std.unsqueeze(2).expand(-1, -1, frames)], 1)
        attention = torch.softmax(self.conv(self.tanh(self.tdnn(context))), dim=2)
        mean, std = self._stats(x, attention)
        return torch.cat([mean, std], dim=1).unsqueeze(2)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN (Desplanques et al. 2020) in SpeechBrain's layout: fbank (B, frames, n_mels) -> (B, lin_neurons)."""

    def __init__(
        self, n_mels: int = 80, channels: Sequence[int] = (1024, 1024, 1024, 1024, 3072),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1), dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128, res2net_scale: int = 8, se_channels: int = 128, lin_neurons: int = 192,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_TDNNBlock(n_mels, channels[0], kernel_sizes[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(_SERes2NetBlock(channels[i - 1], channels[i], res2net_scale, se_channels,
                                               kernel_sizes[i], dilations[i]))
        self.mfa = _TDNNBlock(sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1])
        self.asp = _AttentiveStatsPool(channels[-1], attention_channels)
        self.asp_bn = _BatchNorm1d(channels[-1] * 2)
        self.fc = _Conv1d(channels[-1] * 2, lin_neurons, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x, outs = feats.transpose(1, 2), []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))  # multi-layer feature aggregation
        return self.fc(self.asp_bn(self.asp(x))).squeeze(2)


class SpeechBrainFbank(nn.Module):
    """SpeechBrain's ``Fbank`` (as spkrec-ecapa-voxceleb configures it) + sentence mean normalisation:
    16 kHz wave (1, T) -> (1, 1 + T // 160, n_mels). Centred 400-point STFT of 25 ms Hamming
    frames every 10 ms (zero padding), power spectrum, SpeechBrain's triangular mel filters
    (HTK mel scale, 0-8 kHz, each triangle as wide on both sides as its lower band), 10 log10 with
    a 1e-10 floor and an 80 dB range below the item's peak, then each bin's mean over the item
    subtracted."""

    n_fft, hop_length = 400, 160

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        mel = torch.linspace(_hz_to_mel(0.0), _hz_to_mel(SPEAKER_SAMPLE_RATE / 2), n_mels + 2, dtype=torch.float64)
        hz = 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
        band, central = (hz[1:] - hz[:-1])[:-1], hz[1:-1]
        freqs = torch.linspace(0, SPEAKER_SAMPLE_RATE // 2, self.n_fft // 2 + 1, dtype=torch.float64)
        slope = (freqs[None, :] - central[:, None]) / band[:, None]
        filters = torch.clamp(torch.minimum(slope + 1.0, 1.0 - slope), min=0.0).T  # (freq, n_mels)
        self.register_buffer("filters", filters.float(), persistent=False)
        self.register_buffer("window", torch.hamming_window(self.n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        stft = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        power = stft.abs().square().transpose(1, 2)  # (B, frames, freq)
        db = 10.0 * torch.log10(torch.matmul(power, self.filters).clamp_min(1e-10))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - 80.0)
        return db - db.mean(dim=1, keepdim=True)


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


@MODELS.register("ecapa")
class EcapaEncoder(SpeakerEncoder):
    """ECAPA-TDNN speaker encoder (SpeechBrain spkrec-ecapa-voxceleb layout): wave (B, T) any rate -> (B, 192).

    ``pretrained``: a hub id or a local folder holding SpeechBrain's ``embedding_model.ckpt``
    (loaded strictly); None builds the network with random weights (tests). The other arguments
    are the network's sizes, the released model's by default. Each item is embedded over its
    valid samples alone (items shorter than 0.1 s are zero-padded to it) and L2-normalised.
    """

    name = "ecapa"
    min_samples = 1600  # the dilated convolutions' reflect padding needs a few frames

    def __init__(
        self, pretrained: str | None = ECAPA_HUB_ID, n_mels: int = 80,
        channels: Sequence[int] = (1024, 1024, 1024, 1024, 3072), kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1), attention_channels: int = 128, res2net_scale: int = 8,
        se_channels: int = 128, lin_neurons: int = 192,
    ) -> None:
        super().__init__()
        self.fbank = SpeechBrainFbank(n_mels)
        self.embedding_model = EcapaTdnn(n_mels, tuple(channels), tuple(kernel_sizes), tuple(dilations),
                                         attention_channels, res2net_scale, se_channels, lin_neurons)
        if pretrained:
            load_ecapa_checkpoint(self.embedding_model, pretrained)
        self.dim = int(lin_neurons)
        self.freeze()

    def embed(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = []
        for item, n in zip(wave, lengths.tolist()):
            item = item[:n]
            if n < self.min_samples:
                item = nn.functional.pad(item, (0, self.min_samples - n))
            rows.append(self.embedding_model(self.fbank(item[None])))
        return nn.functional.normalize(torch.cat(rows), dim=1)


def load_ecapa_checkpoint(model: EcapaTdnn, pretrained: str) -> None:
    """Load SpeechBrain's ``embedding_model.ckpt`` from a folder or hub repo into ``model``, strictly."""
    path = _ecapa_file(pretrained)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise CheckpointError(f"ecapa: {path} cannot be read as a PyTorch state dict ({one_line(exc)[:200]})") from exc
    missing, unexpected = _key_mismatch(model.state_dict(), state)
    if missing or unexpected:
        raise CheckpointError(
            f"ecapa: {path} does not fit the ECAPA-TDNN built from the config: {len(missing)} missing key(s) "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); give SpeechBrain's "
            "embedding_model.ckpt and the channels / kernel_sizes / dilations it was trained with"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # same keys, other shapes
        raise CheckpointError(f"ecapa: {path} has tensors of other shapes than the config builds: "
                              f"{one_line(exc)[:300]}; set channels / lin_neurons / n_mels to the checkpoint's") from exc


def _key_mismatch(wanted: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))


def _ecapa_file(pretrained: str) -> str:
    folder = Path(pretrained).expanduser()
    if folder.is_dir():
        if not (folder / ECAPA_CKPT).is_file():
            raise CheckpointError(f"ecapa: {folder} has no {ECAPA_CKPT}; put SpeechBrain's {ECAPA_CKPT} there")
        return str(folder / ECAPA_CKPT)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(pretrained, ECAPA_CKPT)
    except Exception as exc:  # offline, unknown repo, no such file: all mean "get the file first"
        raise CheckpointError(
            f"ecapa: cannot get {ECAPA_CKPT} of '{pretrained}' ({one_line(exc)[:160]}); while online run "
            f"`huggingface-cli download {pretrained} {ECAPA_CKPT} --local-dir DIR` and set pretrained: DIR "
            "(offline mode is HF_HUB_OFFLINE=1)"
        ) from exc
