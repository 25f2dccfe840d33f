"""The Miipher-1 feature cleaner (Koizumi et al., WASPAA 2023): SSL features cleaned by Conformer
blocks that attend to the transcript's phonemes and a speaker embedding.

Network (``Miipher1Network``; sizes are arguments, defaults the paper's / open implementation's):

- linear projections: phone features ``text_dim -> hidden``, speaker ``speaker_dim -> hidden``,
  SSL features ``feature_dim -> hidden``, and ``hidden -> feature_dim`` back;
- speaker conditioning of the phone sequence (``CondBlock``): conv1d(k3) -> LeakyReLU(0.1) ->
  + speaker vector (broadcast over phones) -> conv1d(k3); additive only, no scale;
- ``iterations`` (2) refinements; at each, a sinusoidal encoding of the iteration index is added
  to the phone sequence through a second such block, then ``blocks`` (4) of [cross-attention
  (query: SSL frames, key/value: the conditioned phones, ``heads`` heads) + residual -> LayerNorm
  -> Conformer layer + residual], the output projection, and a Tacotron-2 postnet added residually
  (5 conv1d k5, 512 channels, BatchNorm, tanh on all but the last, dropout 0.5). The next
  iteration reads the previous one's postnet output;
- every intermediate output is returned (after the blocks and after the postnet, at each
  iteration: 4 with 2 iterations); the loss sums over all of them, the last is the cleaned features.

Padding never changes a valid frame: attention takes boolean key-padding masks (True = padding;
the open implementation passed a float mask that *adds* 1 to the scores instead of masking), every
convolution over time sees zeros at padded positions (as past the end of an unpadded sequence),
and the postnet's BatchNorm takes its statistics over valid frames only. So a padded batch and its
items run alone give the same features on their valid frames.

Without text (``text_encoder: null``, the paper's "w/o text" ablation) the key/value sequence is a
single learned token (conditioned on speaker and iteration); without a speaker encoder
(``speaker_encoder: null``) the speaker term is left out.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ConfigError, DataError
from restorekit.models import MODELS
from restorekit.models.conformer import ConformerBlock
from restorekit.models.miipher2 import Miipher2


def valid_mask(lengths: torch.Tensor | None, size: int, batch: int, device: torch.device) -> torch.Tensor:
    """(B, size) bool, True on the first ``lengths[b]`` positions (all True when lengths is None)."""
    if lengths is None:
        return torch.ones(batch, size, dtype=torch.bool, device=device)
    return torch.arange(size, device=device)[None] < lengths.to(device)[:, None]


def _zero_pad(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T, C) with the padded positions (``valid`` False) set to zero."""
    return x * valid[..., None].to(x.dtype)


def iteration_encoding(index: int, dim: int, device: torch.device) -> torch.Tensor:
    """(dim,) sinusoidal encoding of an iteration index (Transformer positional encoding at ``index``).

    Written by hand: four lines of arithmetic, no library offers it on its own.
    """
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    enc = torch.zeros(dim, device=device)
    enc[0::2], enc[1::2] = torch.sin(index * freqs), torch.cos(index * freqs)
    return enc


class CondBlock(nn.Module):
    """conv1d(k3) -> LeakyReLU(0.1) -> + cond (B, dim) broadcast over the sequence -> conv1d(k3):
    (B, L, dim) -> (B, L, dim); padded positions are zeroed before each convolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(dim, dim, 3, padding=1), nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, valid: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(_zero_pad(x, valid).transpose(1, 2)), 0.1)
        if cond is not None:
            h = h + cond[:, :, None]
        return self.conv2(_zero_pad(h.transpose(1, 2), valid).transpose(1, 2)).transpose(1, 2)


class MaskedConformerBlock(ConformerBlock):
    """restorekit's Conformer block (conformer.py) with a key-padding mask in self-attention and
    zeros at padded frames before the depthwise convolution: (B, T, dim), valid (B, T) -> (B, T, dim)."""

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x + 0.5 * self.ffn1(x)
        h = self.attn_norm(x)
        x = x + self.attn_dropout(self.attn(h, h, h, key_padding_mask=~valid, need_weights=False)[0])
        x = x + self._conv(x, valid)
        return self.out_norm(x + 0.5 * self.ffn2(x))

    def _conv(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        c = self.conv
        h = F.glu(c.pointwise_in(c.norm(x).transpose(1, 2)), dim=1)
        h = c.depthwise(h * valid[:, None].to(h.dtype))
        h = F.silu(c.depth_norm(h.transpose(1, 2))).transpose(1, 2)
        return c.dropout(c.pointwise_out(h).transpose(1, 2))


class CleanerBlock(nn.Module):
    """Cross-attention to the conditioning sequence + residual -> LayerNorm -> Conformer layer + residual."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.conformer = MaskedConformerBlock(dim, heads, ffn_dim, kernel_size, dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, memory: torch.Tensor,
                memory_valid: torch.Tensor) -> torch.Tensor:
        x = x + self.cross(x, memory, memory, key_padding_mask=~memory_valid, need_weights=False)[0]
        x = _zero_pad(self.norm(x), valid)
        return _zero_pad(x + self.conformer(x, valid), valid)


class Postnet(nn.Module):
    """Tacotron-2 postnet: ``layers`` conv1d (``kernel_size``, ``channels``), BatchNorm over valid
    frames, tanh on all but the last, dropout: (B, T, dim) -> (B, T, dim) residual to add."""

    def __init__(self, dim: int, channels: int, layers: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        widths = [dim] + [channels] * (layers - 1) + [dim]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = conv(_zero_pad(x, valid).transpose(1, 2)).transpose(1, 2)
            h = self._norm(norm, h, valid)
            x = self.dropout(torch.tanh(h) if i < len(self.convs) - 1 else h)
        return _zero_pad(x, valid)

    @staticmethod
    def _norm(norm: nn.BatchNorm1d, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # statistics over valid frames only: padding must not shift the mean a frame is normalised by
        out = torch.zeros_like(h)
        out[valid] = norm(h[valid])
        return out


class Miipher1Network(nn.Module):
    """Miipher-1's cleaner network on plain tensors (the module docstring has the structure).

    ``forward(features (B, N, feature_dim), frame_valid (B, N) bool, text (B, L, text_dim) | None,
    text_valid (B, L) bool | None, speaker (B, speaker_dim) | None)`` -> list of ``2 * iterations``
    feature tensors (B, N, feature_dim), last = the cleaned features; padded frames are zero.
    """

    def __init__(self, feature_dim: int, text_dim: int | None, speaker_dim: int | None, hidden: int = 1024,
                 heads: int = 8, blocks: int = 4, ffn_dim: int = 4096, kernel_size: int = 31, iterations: int = 2,
                 postnet_channels: int = 512, postnet_layers: int = 5, postnet_kernel: int = 5,
                 postnet_dropout: float = 0.5, dropout: float = 0.1) -> None:
        super().__init__()
        self.iterations, self.hidden = int(iterations), int(hidden)
        self.in_proj, self.out_proj = nn.Linear(feature_dim, hidden), nn.Linear(hidden, feature_dim)
        self.text_proj = nn.Linear(text_dim, hidden) if text_dim else None
        # without text the key/value sequence is one learned token (the "w/o text" ablation)
        self.no_text = None if text_dim else nn.Parameter(torch.zeros(1, 1, hidden))
        self.speaker_proj = nn.Linear(speaker_dim, hidden) if speaker_dim else None
        self.speaker_block, self.iteration_block = CondBlock(hidden), CondBlock(hidden)
        self.blocks = nn.ModuleList(CleanerBlock(hidden, heads, ffn_dim, kernel_size, dropout) for _ in range(blocks))
        self.postnet = Postnet(feature_dim, postnet_channels, postnet_layers, postnet_kernel, postnet_dropout)

    def forward(self, features: torch.Tensor, frame_valid: torch.Tensor, text: torch.Tensor | None = None,
                text_valid: torch.Tensor | None = None, speaker: torch.Tensor | None = None) -> list[torch.Tensor]:
        memory, memory_valid = self._phones(features.shape[0], text, text_valid, features.device)
        spk = self.speaker_proj(speaker) if self.speaker_proj is not None and speaker is not None else None
        memory = self.speaker_block(memory, spk, memory_valid)
        outputs, x = [], features
        for i in range(self.iterations):
            step = iteration_encoding(i, self.hidden, features.device)[None].expand(features.shape[0], -1)
            mem_i = _zero_pad(self.iteration_block(memory, step, memory_valid), memory_valid)
            h = _zero_pad(self.in_proj(x), frame_valid)
            for block in self.blocks:
                h = block(h, frame_valid, mem_i, memory_valid)
            coarse = _zero_pad(self.out_proj(h), frame_valid)
            x = coarse + self.postnet(coarse, frame_valid)
            outputs += [coarse, x]
        return outputs

    def _phones(self, batch: int, text: torch.Tensor | None, text_valid: torch.Tensor | None,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The key/value sequence before conditioning (B, L, hidden) and its valid mask (B, L)."""
        if self.text_proj is None:
            return self.no_text.expand(batch, 1, -1), torch.ones(batch, 1, dtype=torch.bool, device=device)
        assert text is not None and text_valid is not None, "a text-conditioned network needs text and its mask"
        assert bool(text_valid.any(dim=1).all()), "every item needs at least one phone (a fully masked row is NaN)"
        return _zero_pad(self.text_proj(text), text_valid), text_valid


def _build(node: Mapping[str, Any] | None, where: str) -> nn.Module | None:
    return None if node is None else MODELS.build(node, where=where)


@MODELS.register("miipher1_cleaner")
class Miipher1Cleaner(nn.Module):
    """Miipher-1 feature cleaner: degraded wave (B, T) at sr Hz + phonemes (B, L) -> cleaned SSL features (B, frames, dim).

    ``encoder``: the frozen SSL encoder node (``w2v_bert2``, ``hubert``, ``wavlm``,
    ``whisper_encoder``); ``target(clean, sr, lengths)`` is its features of clean speech.
    ``text_encoder``: a text encoder node (``plbert``, ``xphonebert``, ``phoneme_embedding``) or
    null (no text: the paper's ablation); it trains unless frozen (``plbert`` / ``xphonebert``
    freeze by default; ``phoneme_embedding`` trains). ``speaker_encoder``: a frozen speaker encoder node (``resemblyzer``, ``ecapa``) on the
    degraded input, or null. The network: ``hidden`` width, ``blocks`` cross-attention + Conformer
    blocks (``heads``, ``ffn_dim``, ``kernel_size``, ``dropout``), ``iterations`` refinements, a
    Tacotron-2 postnet (``postnet_channels``, ``postnet_layers``, ``postnet_kernel``,
    ``postnet_dropout``). ``outputs(...)`` returns every intermediate output (2 per iteration).
    """

    def __init__(self, encoder: Mapping[str, Any], text_encoder: Mapping[str, Any] | None = None,
                 speaker_encoder: Mapping[str, Any] | None = None, hidden: int = 1024, heads: int = 8,
                 blocks: int = 4, ffn_dim: int = 4096, kernel_size: int = 31, iterations: int = 2,
                 postnet_channels: int = 512, postnet_layers: int = 5, postnet_kernel: int = 5,
                 postnet_dropout: float = 0.5, dropout: float = 0.1) -> None:
        super().__init__()
        where = "models.feature_cleaner.args"
        _check_sizes(hidden, heads, blocks, iterations, postnet_layers)
        self.encoder = MODELS.build(encoder, where=f"{where}.encoder")
        if not all(hasattr(self.encoder, a) for a in ("num_frames", "feature_dim", "frame_rate")):
            raise ConfigError(f"{where}.encoder must name an SSL encoder (w2v_bert2, hubert, wavlm, whisper_encoder)")
        self.text_encoder = _build(text_encoder, f"{where}.text_encoder")
        self.speaker_encoder = _build(speaker_encoder, f"{where}.speaker_encoder")
        if self.speaker_encoder is not None:
            self.speaker_encoder.requires_grad_(False)
        self.feature_dim, self.frame_rate = int(self.encoder.feature_dim), float(self.encoder.frame_rate)
        self.network = Miipher1Network(
            self.feature_dim, _dim(self.text_encoder), _dim(self.speaker_encoder), hidden, heads, blocks, ffn_dim,
            kernel_size, iterations, postnet_channels, postnet_layers, postnet_kernel, postnet_dropout, dropout)
        # batch keys the vocoder stages and restorers pass on to forward (see trainers/vocoder.py)
        self.conditioning: tuple[str, ...] = ("phonemes", "text_lengths") if self.text_encoder is not None else ()
        self._transcript: torch.Tensor | None = None

    @contextlib.contextmanager
    def transcript(self, phonemes: torch.Tensor) -> Iterator[None]:
        """Inside the block, calls that pass no phonemes read these (1, L) ids for every item: how a
        restorer hands one file's transcript through code that calls ``cleaner(wave, sr)``."""
        self._transcript = phonemes
        try:
            yield
        finally:
            self._transcript = None

    def train(self, mode: bool = True) -> Miipher1Cleaner:
        """Frozen encoders stay in eval mode (no dropout, fixed norms) whatever the caller asks."""
        super().train(mode)
        for module in (self.encoder, self.speaker_encoder, self.text_encoder):
            if module is not None and not any(p.requires_grad for p in module.parameters()):
                module.eval()
        return self

    def num_frames(self, num_samples: int, sr: int) -> int:
        """Feature frames produced for ``num_samples`` samples at ``sr`` Hz."""
        return self.encoder.num_frames(num_samples, sr)

    def frame_lengths(self, lengths: torch.Tensor | None, sr: int) -> torch.Tensor | None:
        """(B,) valid feature frames of each item (None when the batch is unpadded)."""
        if lengths is None:
            return None
        return torch.tensor([self.num_frames(int(n), sr) for n in lengths], device=lengths.device)

    @torch.no_grad()
    def target(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen encoder's features of (clean) speech, without gradient: the training target."""
        return self.encoder(wave, sr, lengths)

    def forward(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None,
                phonemes: torch.Tensor | None = None, text_lengths: torch.Tensor | None = None,
                intermediate: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Cleaned features (B, frames, feature_dim); ``intermediate``: the list ``outputs`` gives (a
        trainer's one forward call through DDP)."""
        outputs = self.outputs(wave, sr, lengths, phonemes, text_lengths)
        return outputs if intermediate else outputs[-1]

    def outputs(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None,
                phonemes: torch.Tensor | None = None, text_lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Every intermediate output (B, frames, feature_dim), after the blocks and after the postnet at
        each iteration; the last is the cleaned features. Padded frames are zero."""
        with torch.no_grad():
            feats = self.encoder(wave, sr, lengths)
        frames = self.frame_lengths(lengths, sr)
        valid = valid_mask(frames, feats.shape[1], feats.shape[0], feats.device)
        text, text_valid = self._text(phonemes, text_lengths, wave.shape[0])
        return self.network(_zero_pad(feats, valid), valid, text, text_valid, self._speaker(wave, sr, lengths))

    def _text(self, phonemes: torch.Tensor | None, text_lengths: torch.Tensor | None,
              batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.text_encoder is None:
            return None, None
        if phonemes is None and self._transcript is not None:
            phonemes, text_lengths = self._transcript.expand(batch, -1), None
        if phonemes is None:
            raise DataError(
                "miipher1_cleaner is text-conditioned but got no phonemes: give the datasets `phonemes: true` "
                "(items need a transcript), pass transcripts=CSV to inference.py, or set text_encoder: null")
        if text_lengths is None:
            text_lengths = torch.full((batch,), phonemes.shape[1], dtype=torch.long, device=phonemes.device)
        if bool((text_lengths < 1).any()):
            raise DataError("miipher1_cleaner: an item has an empty phoneme sequence; every item needs a transcript "
                            "with at least one phoneme")
        text, lengths = self.text_encoder(phonemes, text_lengths)
        return text, valid_mask(lengths, text.shape[1], text.shape[0], text.device)

    def _speaker(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None) -> torch.Tensor | None:
        if self.speaker_encoder is None:
            return None
        with torch.no_grad():
            return self.speaker_encoder(wave, sr, lengths).float()


def _dim(module: nn.Module | None) -> int | None:
    return None if module is None else int(module.dim)


def _check_sizes(hidden: int, heads: int, blocks: int, iterations: int, postnet_layers: int) -> None:
    where = "models.feature_cleaner.args"
    if hidden % heads or hidden % 2:
        raise ConfigError(f"{where}: hidden ({hidden}) must be even and divisible by heads ({heads})")
    for key, value in (("blocks", blocks), ("iterations", iterations), ("postnet_layers", postnet_layers)):
        if int(value) < 1:
            raise ConfigError(f"{where}.{key} must be >= 1, got {value}")


@MODELS.register("miipher1")
class Miipher1(Miipher2):
    """Miipher-1 restorer: degraded wave (T,) at any rate + its transcript -> restored wave at the vocoder's rate.

    Miipher-2's restorer (chunking, noise, level policy: see ``miipher2``) whose text-conditioned
    cleaner also reads the transcript: ``restore(wave, sr, text)`` phonemizes ``text`` with eSpeak
    NG in ``language`` (as the datasets' ``phonemes: true`` did in training) and hands the phonemes
    to the cleaner. A long file's chunks each get the whole transcript (the cross-attention finds
    the part a chunk says). Arguments as ``miipher2``'s; ``feature_cleaner`` is a ``miipher1_cleaner``.
    """

    language = "en-us"  # eSpeak NG voice of the transcripts; from_export takes the training data's

    @classmethod
    def from_export(cls, directory: str | Path, **kwargs: Any) -> Miipher1:
        """A restorer from an export folder holding ``feature_cleaner`` and ``vocoder``, phonemizing in the
        language its training data used (``data.train.args.language``, else en-us)."""
        from omegaconf import OmegaConf

        from restorekit.models.export import load_config

        restorer = super().from_export(directory, **kwargs)
        restorer.language = str(OmegaConf.select(load_config(directory), "data.train.args.language", default="en-us"))
        return restorer

    @property
    def text_conditioned(self) -> bool:
        """Whether the cleaner reads a transcript (False for the no-text ablation)."""
        return bool(getattr(self.feature_cleaner, "conditioning", ()))

    @torch.no_grad()
    def restore(self, wave: np.ndarray | torch.Tensor, sr: int, text: str | None = None) -> tuple[np.ndarray, int]:
        """Restore mono audio (T,) at ``sr`` Hz saying ``text``; returns (float32 (round(T * rate / sr),), rate)."""
        if not self.text_conditioned:
            return super().restore(wave, sr)
        with self.feature_cleaner.transcript(self.phonemes(text).to(self.device)):
            return super().restore(wave, sr)

    def phonemes(self, text: str | None) -> torch.Tensor:
        """(1, L) phoneme ids of ``text``; a DataError when there is no text or it gives no phonemes."""
        from restorekit.text import phoneme_ids, phonemize

        if text is None or not text.strip():
            raise DataError("miipher1: this restorer is text-conditioned and got no transcript; pass the text of "
                            "the recording (inference.py: transcripts=<name,text CSV> or transcripts=asr)")
        ids = phoneme_ids(phonemize([text], self.language)[0])
        if not ids:
            raise DataError(f"miipher1: the transcript {text!r} gives no phonemes in language '{self.language}'")
        return torch.tensor([ids], dtype=torch.long)

    def _features(self, waves: list[torch.Tensor], sr: int) -> list[torch.Tensor]:
        # each piece through the whole cleaner: a batched pass straight through its SSL encoder
        # (Miipher-2's shortcut, where the cleaner lives inside the encoder) would skip the network
        return [self.feature_cleaner(w[None], sr)[0] for w in waves]
