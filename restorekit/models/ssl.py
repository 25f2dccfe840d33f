"""Frozen self-supervised speech encoders from transformers, truncated after a layer.

``w2v_bert2`` (the open stand-in for Google's USM), ``hubert`` and ``wavlm``. Each takes audio at
any rate, resamples it to 16 kHz with julius on the model's device, computes the encoder's input
in torch (batched), and returns the hidden states after ``layer`` (layers above are never built).
The encoder is always frozen and in eval mode.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import julius
import torch
from torch import nn

from restorekit.errors import CheckpointError, ConfigError, one_line
from restorekit.models import MODELS
from restorekit.models.frontends import SSL_SAMPLE_RATE, W2vBertFbank, WaveformInput

# name -> (transformers model class, config class, input kind)
_BACKBONES = {
    "w2v_bert2": ("Wav2Vec2BertModel", "Wav2Vec2BertConfig", "fbank"),
    "hubert": ("HubertModel", "HubertConfig", "waveform"),
    "wavlm": ("WavLMModel", "WavLMConfig", "waveform"),
}
# Settings that would add modules we never use (w2v-BERT's adapter stack) or randomness.
_FIXED = {"w2v_bert2": {"add_adapter": False, "use_intermediate_ffn_before_adapter": False}}


class SSLEncoder(nn.Module):
    """A frozen SSL encoder: wave (B, T) at ``sr`` Hz -> features (B, frames, feature_dim).

    ``pretrained`` is a hub id or local folder; otherwise ``config`` overrides the transformers
    config for random initialisation. Features are the hidden states after layer ``layer``.
    """

    def __init__(
        self, kind: str, pretrained: str | None, config: Mapping[str, Any] | None, layer: int,
        normalize_waveform: bool = False,
    ) -> None:
        super().__init__()
        self.kind, self.pretrained, self.layer = kind, pretrained, int(layer)
        self.model = _build_backbone(kind, pretrained, dict(config or {}), self.layer)
        self.model.requires_grad_(False)
        self.model.eval()
        self.input = W2vBertFbank() if _BACKBONES[kind][2] == "fbank" else WaveformInput(normalize_waveform)
        self.feature_dim = int(self.model.config.hidden_size)
        self.frame_rate = SSL_SAMPLE_RATE / self._hop()

    def train(self, mode: bool = True) -> "SSLEncoder":
        """The backbone stays in eval mode (no dropout) whatever the caller asks for."""
        super().train(mode)
        self.model.eval()
        return self

    def _hop(self) -> int:
        if isinstance(self.input, W2vBertFbank):
            return W2vBertFbank.hop_length * W2vBertFbank.stride
        return math.prod(self.model.config.conv_stride)

    def num_frames(self, num_samples: int, sr: int) -> int:
        """Feature frames produced for ``num_samples`` samples at ``sr`` Hz."""
        n = _resampled_length(num_samples, sr)
        if isinstance(self.input, W2vBertFbank):
            return self.input.num_frames(n)
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = (n - k) // s + 1
        return max(n, 0)

    def forward(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        wave16, lengths16 = self.to_16k(wave, sr, lengths)
        inputs, mask = self.input(wave16, lengths16)
        return self.encode(inputs, mask if lengths is not None else None)

    def to_16k(
        self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if wave.ndim != 2:
            raise ConfigError(f"{self.kind}: expected audio of shape (batch, time), got {tuple(wave.shape)}")
        wave = wave.float()
        if sr != SSL_SAMPLE_RATE:
            wave = julius.resample_frac(wave, int(sr), SSL_SAMPLE_RATE)
            if lengths is not None:
                lengths = torch.div(lengths * SSL_SAMPLE_RATE, int(sr), rounding_mode="floor")
        return wave, lengths

    def encode(self, inputs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        key = "input_features" if isinstance(self.input, W2vBertFbank) else "input_values"
        kwargs = {key: inputs}
        if mask is not None and self._takes_mask():
            kwargs["attention_mask"] = mask.long()
        return self.model(**kwargs).last_hidden_state

    def _takes_mask(self) -> bool:
        # Group-norm feature encoders (HuBERT/WavLM base) were trained without attention masks.
        return isinstance(self.input, W2vBertFbank) or self.model.config.feat_extract_norm == "layer"


def _resampled_length(num_samples: int, sr: int) -> int:
    """Length julius.resample_frac gives when going from ``sr`` to 16 kHz."""
    if sr == SSL_SAMPLE_RATE:
        return int(num_samples)
    g = math.gcd(int(sr), SSL_SAMPLE_RATE)
    return int(SSL_SAMPLE_RATE // g * num_samples / (int(sr) // g))


def _build_backbone(kind: str, pretrained: str | None, overrides: dict[str, Any], layer: int) -> nn.Module:
    import transformers

    model_name, config_name, _ = _BACKBONES[kind]
    model_cls, config_cls = getattr(transformers, model_name), getattr(transformers, config_name)
    fixed = {**_FIXED.get(kind, {}), "num_hidden_layers": layer, "layerdrop": 0.0}
    if pretrained:
        if overrides:
            fixed = {**overrides, **fixed}
        return _from_pretrained(model_cls, kind, pretrained, layer, fixed)
    full_depth = overrides.get("num_hidden_layers", config_cls().num_hidden_layers)
    _check_layer(kind, layer, full_depth)
    try:
        config = config_cls(**{**overrides, **fixed})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind}: config overrides {overrides} are not valid for {config_name}: {exc}") from exc
    return model_cls(config)


def _check_layer(kind: str, layer: int, depth: int) -> None:
    if not 1 <= layer <= depth:
        raise ConfigError(f"{kind}: layer={layer} is out of range; this encoder has layers 1..{depth}")


def _from_pretrained(model_cls: type, kind: str, pretrained: str, layer: int, kwargs: dict) -> nn.Module:
    from transformers import AutoConfig

    try:
        depth = AutoConfig.from_pretrained(pretrained).num_hidden_layers
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{kind}: cannot load pretrained encoder '{pretrained}' ({one_line(exc)[:200]}); "
            "give a local folder holding config.json and the weights, or download it first "
            "(huggingface-cli download ID) while online; offline mode is HF_HUB_OFFLINE=1"
        ) from exc
    _check_layer(kind, layer, depth)
    return model_cls.from_pretrained(pretrained, **kwargs)


def _register(name: str, summary: str) -> None:
    def factory(
        pretrained: str | None = None, config: dict | None = None, layer: int = 12,
        normalize_waveform: bool = False,
    ) -> SSLEncoder:
        return SSLEncoder(name, pretrained, config, layer, normalize_waveform)

    factory.__doc__ = summary + (
        "\n\n``pretrained``: hub id or local folder; else ``config`` overrides the transformers config"
        " for random initialisation. ``layer``: features are taken after this layer (1-based) and"
        " layers above are not built. ``normalize_waveform``: per-utterance input normalisation"
        " (HuBERT/WavLM large checkpoints). Frozen, always in eval mode."
    )
    factory.__name__ = factory.__qualname__ = name
    MODELS.register(name)(factory)


_register("w2v_bert2", "w2v-BERT 2.0 conformer encoder (USM stand-in): wave (B, T) any rate -> (B, frames, 1024) at 50 Hz.")
_register("hubert", "HuBERT encoder: wave (B, T) any rate -> (B, frames, hidden) at 50 Hz.")
_register("wavlm", "WavLM encoder: wave (B, T) any rate -> (B, frames, hidden) at 50 Hz.")
