"""Frozen self-supervised speech encoders from transformers, truncated after a layer.

``w2v_bert2`` (the open stand-in for Google's USM), ``hubert``, ``wavlm``, ``gemma3n_audio``
(the USM-derived audio encoder of Gemma 3n) and ``whisper_encoder`` (Whisper's encoder). Each takes audio at any rate, resamples it to
16 kHz with julius on the model's device, computes the encoder's input in torch (batched), and
returns the hidden states after ``layer`` (layers above are never built): transformers'
``hidden_states[layer]`` of the full model, or its ``last_hidden_state`` when ``layer`` is the top.
The encoder is always frozen and in eval mode.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import julius
import torch
from torch import nn

from restorekit.errors import CheckpointError, ConfigError, one_line
from restorekit.models import MODELS
from restorekit.models.frontends import (
    SSL_SAMPLE_RATE,
    Gemma3nLogMel,
    W2vBertFbank,
    WaveformInput,
    WhisperLogMel,
    valid_mask,
)


@dataclass(frozen=True)
class _Backbone:
    """How one transformers encoder is built, fed, truncated and fitted with adapters."""

    model: str  # transformers model class
    config: str  # transformers config class
    frontend: str  # "fbank" | "waveform" | "gemma_mel" | "whisper_mel"
    input_key: str  # keyword the model's forward takes the frontend output under
    depth_key: str = "num_hidden_layers"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # settings we always impose
    ffn: str = "feed_forward"  # the per-layer FFN an adapter runs beside; "" where there is no FFN module
    # the FFN module's own input norm where it normalises inside (Gemma 3n); "" where the layer
    # normalises before calling it, so the FFN's argument is already its normalised input
    ffn_norm: str = ""
    # the norm that closes each post-norm block (applied to residual + FFN); pre-norm ("stable
    # layer norm") HuBERT / WavLM layers have none, see SSLEncoder.block_norm
    block_norm: str = "final_layer_norm"


_BACKBONES = {
    # w2v-BERT's adapter stack (add_adapter) is never used; layerdrop would make features random.
    "w2v_bert2": _Backbone("Wav2Vec2BertModel", "Wav2Vec2BertConfig", "fbank", "input_features",
                           fixed={"add_adapter": False, "use_intermediate_ffn_before_adapter": False,
                                  "layerdrop": 0.0}, ffn="ffn2"),
    "hubert": _Backbone("HubertModel", "HubertConfig", "waveform", "input_values", fixed={"layerdrop": 0.0}),
    "wavlm": _Backbone("WavLMModel", "WavLMConfig", "waveform", "input_values", fixed={"layerdrop": 0.0}),
    # conf_reduction_factor 1: keep every 40 ms frame (25 Hz); the released model keeps every
    # 4th after its last layer (6.25 Hz), which suits a language model, not a vocoder.
    "gemma3n_audio": _Backbone("Gemma3nAudioEncoder", "Gemma3nAudioConfig", "gemma_mel", "audio_mel",
                               depth_key="conf_num_hidden_layers", fixed={"conf_reduction_factor": 1},
                               ffn="ffw_layer_end", ffn_norm="pre_layer_norm", block_norm="norm"),
    # Whisper's encoder layers (pre-norm) call fc1 / fc2 inline: no FFN module for an adapter
    "whisper_encoder": _Backbone("models.whisper.modeling_whisper.WhisperEncoder", "WhisperConfig", "whisper_mel", "input_features",
                                 depth_key="encoder_layers", fixed={"encoder_layerdrop": 0.0}, ffn="",
                                 block_norm=""),
}


class SSLEncoder(nn.Module):
    """A frozen SSL encoder: wave (B, T) at ``sr`` Hz -> features (B, frames, feature_dim).

    ``pretrained`` is a hub id or local folder; otherwise ``config`` overrides the transformers
    config for random initialisation. Features are the hidden states after layer ``layer``:
    transformers' ``hidden_states[layer]`` of the full model; at the top layer, its
    ``last_hidden_state`` (for pre-norm HuBERT / WavLM Large, after the encoder's final norm).
    """

    def __init__(
        self, kind: str, pretrained: str | None, config: Mapping[str, Any] | None, layer: int,
        normalize_waveform: bool = False,
    ) -> None:
        super().__init__()
        self.kind, self.pretrained, self.layer = kind, pretrained, int(layer)
        self.spec = _BACKBONES[kind]
        if normalize_waveform and self.spec.frontend != "waveform":
            raise ConfigError(
                f"{kind}: normalize_waveform applies to waveform encoders (hubert, wavlm) only; "
                f"{kind} normalises its own spectral input, so remove the argument"
            )
        self.model = _build_backbone(kind, pretrained, dict(config or {}), self.layer)
        self.model.requires_grad_(False)
        self.model.eval()
        if self.spec.frontend == "fbank":
            self.input: nn.Module = W2vBertFbank()
        elif self.spec.frontend == "gemma_mel":
            self.input = Gemma3nLogMel(_gemma_extractor(pretrained))
            _check_gemma_bins(self.input, self.model.config)
        elif self.spec.frontend == "whisper_mel":
            self.input = WhisperLogMel(_whisper_extractor(pretrained, self.model.config))
        else:
            self.input = WaveformInput(normalize_waveform)
        self.feature_dim = int(self.model.config.hidden_size)
        self.frame_rate = SSL_SAMPLE_RATE / self._hop()

    def train(self, mode: bool = True) -> SSLEncoder:
        """The backbone stays in eval mode (no dropout) whatever the caller asks for."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def blocks(self) -> nn.ModuleList:
        """The encoder's layers (conformer / transformer blocks), ``layer`` of them."""
        if self.spec.frontend == "whisper_mel":
            return self.model.layers
        return self.model.conformer if self.spec.frontend == "gemma_mel" else self.model.encoder.layers

    @property
    def block_norm(self) -> str | None:
        """Name of the norm closing each block (applied to residual + FFN), None where there is none.

        Pre-norm ("stable layer norm") HuBERT / WavLM layers end on the bare residual sum; their
        ``final_layer_norm`` is the FFN's input norm, not a closing one.
        """
        if getattr(self.model.config, "do_stable_layer_norm", False):
            return None
        return self.spec.block_norm or None

    def _hop(self) -> int:
        if self.spec.frontend == "fbank":
            return W2vBertFbank.hop_length * W2vBertFbank.stride
        if self.spec.frontend == "gemma_mel":
            return self.input.hop_length * math.prod(s[0] for s in self.model.config.sscp_conv_stride_size)
        if self.spec.frontend == "whisper_mel":
            return self.input.hop_length * self.model.conv2.stride[0]
        return math.prod(self.model.config.conv_stride)

    def num_frames(self, num_samples: int, sr: int) -> int:
        """Feature frames produced for ``num_samples`` samples at ``sr`` Hz."""
        n = _resampled_length(num_samples, sr)
        if self.spec.frontend == "fbank":
            return self.input.num_frames(n)
        if self.spec.frontend == "whisper_mel":  # conv2 (kernel 3, stride 2, padding 1): ceil(mel / 2)
            return -(-(n // self.input.hop_length) // 2)
        if self.spec.frontend == "gemma_mel":
            n = self.input.num_frames(n)
            # each subsampling conv pads time by (0, kernel - 1): ceil(n / stride) frames
            for s in self.model.config.sscp_conv_stride_size:
                n = -(-n // s[0])
            return n
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = (n - k) // s + 1
        return max(n, 0)

    def forward(self, wave: torch.Tensor, sr: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        wave16, lengths16 = self.to_16k(wave, sr, lengths)
        if self.spec.frontend == "whisper_mel":
            return self._encode_whisper(wave16, lengths16)
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
        kwargs = {self.spec.input_key: inputs}
        if self.spec.frontend == "gemma_mel":
            # Gemma 3n takes the mask inverted (True on padding) and always needs one
            if mask is None:
                mask = torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
            kwargs["audio_mel_mask"] = ~mask
        elif mask is not None and self._takes_mask():
            kwargs["attention_mask"] = mask.long()
        return self.model(**kwargs).last_hidden_state

    def _encode_whisper(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Whisper's encoder reads exactly one window (30 s for released models: 3000 mel frames,
        1500 positions) and was trained on shorter speech zero-padded to it. So each item is
        zero-padded past its length to whole windows, as the feature extractor pads; audio longer
        than one window is cut into consecutive windows encoded independently; the outputs are
        joined and cut to the real frame count. A frame thus never depends on what follows the
        item, and a 1 s input gives the frames of that audio with any amount of silence after it.
        """
        frames = self.num_frames(wave.shape[1], SSL_SAMPLE_RATE)
        if lengths is not None:
            wave = wave * valid_mask(lengths, wave.shape[1], wave.shape[0], wave.device)
        window = self.model.config.max_source_positions * self._hop()
        windows = max(1, -(-wave.shape[1] // window))
        wave = nn.functional.pad(wave, (0, windows * window - wave.shape[1]))
        hidden = self.model(input_features=self.input(wave.reshape(-1, window))).last_hidden_state
        return hidden.reshape(wave.shape[0], -1, hidden.shape[-1])[:, :frames]

    def _takes_mask(self) -> bool:
        # Group-norm feature encoders (HuBERT/WavLM base) were trained without attention masks.
        return self.spec.frontend == "fbank" or self.model.config.feat_extract_norm == "layer"


def _resampled_length(num_samples: int, sr: int) -> int:
    """Length julius.resample_frac gives when going from ``sr`` to 16 kHz."""
    if sr == SSL_SAMPLE_RATE:
        return int(num_samples)
    g = math.gcd(int(sr), SSL_SAMPLE_RATE)
    return int(SSL_SAMPLE_RATE // g * num_samples / (int(sr) // g))


def _build_backbone(kind: str, pretrained: str | None, overrides: dict[str, Any], layer: int) -> nn.Module:
    import transformers

    spec = _BACKBONES[kind]
    model_cls, config_cls = _transformers_class(spec.model), getattr(transformers, spec.config)
    fixed = {**spec.fixed, spec.depth_key: layer}
    if pretrained:
        if overrides:
            fixed = {**overrides, **fixed}
        if kind == "gemma3n_audio":
            return _gemma_from_pretrained(model_cls, config_cls, pretrained, layer, fixed)
        if kind == "whisper_encoder":
            return _whisper_from_pretrained(pretrained, layer, fixed)
        return _from_pretrained(model_cls, kind, pretrained, layer, fixed)
    full_depth = overrides.get(spec.depth_key, getattr(config_cls(), spec.depth_key))
    _check_layer(kind, layer, full_depth)
    try:
        config = config_cls(**{**overrides, **fixed})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind}: config overrides {overrides} are not valid for {spec.config}: {exc}") from exc
    return _cut(model_cls(config), layer, full_depth)


def _transformers_class(name: str) -> type:
    """A transformers class by its top-level name, or by module path where it has none
    (``models.whisper.modeling_whisper.WhisperEncoder``)."""
    import importlib

    import transformers

    module, _, cls = name.rpartition(".")
    return getattr(importlib.import_module(f"transformers.{module}") if module else transformers, cls)


def _cut(model: nn.Module, layer: int, depth: int) -> nn.Module:
    """``model`` (built with ``layer`` of its ``depth`` layers) giving transformers' hidden_states[layer].

    Pre-norm ("stable layer norm": HuBERT / WavLM Large) encoders normalise the residual stream
    once, after the top layer (``encoder.layer_norm``). That norm was trained for the top layer's
    output and hidden_states[layer] do not include it, so below the top it is dropped; at the top
    it stays and features are the model's own output. Post-norm encoders (HuBERT / WavLM base,
    w2v-BERT, Gemma 3n) end every layer with a norm and need nothing.
    """
    if layer < depth and getattr(model.config, "do_stable_layer_norm", False):
        model.encoder.layer_norm = nn.Identity()
    if layer < depth and model.config.model_type == "whisper":  # pre-norm too; its norm sits on the encoder
        model.layer_norm = nn.Identity()
    return model


def _check_layer(kind: str, layer: int, depth: int) -> None:
    if not 1 <= layer <= depth:
        raise ConfigError(f"{kind}: layer={layer} is out of range; this encoder has layers 1..{depth}")


def _load_error(kind: str, pretrained: str, exc: BaseException, hint: str = "") -> CheckpointError:
    return CheckpointError(
        f"{kind}: cannot load pretrained encoder '{pretrained}' ({one_line(exc)[:200]}); "
        "give a local folder holding config.json and the weights, or download it first "
        f"(huggingface-cli download ID) while online; offline mode is HF_HUB_OFFLINE=1{hint}"
    )


def _from_pretrained(model_cls: type, kind: str, pretrained: str, layer: int, kwargs: dict) -> nn.Module:
    from transformers import AutoConfig

    try:
        depth = AutoConfig.from_pretrained(pretrained).num_hidden_layers
    except (OSError, ValueError) as exc:
        raise _load_error(kind, pretrained, exc) from exc
    _check_layer(kind, layer, depth)
    return _cut(model_cls.from_pretrained(pretrained, **kwargs), layer, depth)


# --- Gemma 3n ---------------------------------------------------------------------------------
# Released Gemma 3n checkpoints hold the whole multimodal model (text, vision, audio; ~10 GB) with
# the audio encoder under "model.audio_tower.". transformers has no call that loads just that
# tower truncated, so this reads the audio encoder's config (Gemma3nAudioConfig finds it inside
# the composite config.json) and only the audio tensors of layers up to ``layer`` from the
# safetensors shards. An encoder saved on its own (no prefix) loads the same way.
_GEMMA_GATED = ("; Gemma checkpoints are gated: accept the licence on the model page and log in "
                "(huggingface-cli login) before downloading")
_GEMMA_ANCHOR = "subsample_conv_projection.input_proj_linear.weight"


def _gemma_from_pretrained(model_cls: type, config_cls: type, pretrained: str, layer: int,
                           fixed: dict) -> nn.Module:
    try:
        config = config_cls.from_pretrained(pretrained)
    except (OSError, ValueError) as exc:
        raise _load_error("gemma3n_audio", pretrained, exc, _GEMMA_GATED) from exc
    if config.model_type != "gemma3n_audio":
        raise CheckpointError(
            f"gemma3n_audio: '{pretrained}' holds a '{config.model_type}' model, not a Gemma 3n audio encoder; "
            "give a Gemma 3n checkpoint (e.g. google/gemma-3n-E2B) or a folder saved from Gemma3nAudioEncoder"
        )
    _check_layer("gemma3n_audio", layer, config.conf_num_hidden_layers)
    for key, value in fixed.items():
        setattr(config, key, value)
    model = model_cls(config)
    model.load_state_dict(_gemma_state_dict(pretrained, model.state_dict()), strict=True)
    return model


def _gemma_state_dict(pretrained: str, wanted: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``wanted`` (our truncated encoder's state dict) read from the checkpoint."""
    from safetensors import safe_open

    weight_map = _gemma_weight_map(pretrained)
    anchors = [k for k in weight_map if k.endswith(_GEMMA_ANCHOR)]
    if not anchors:
        raise CheckpointError(
            f"gemma3n_audio: '{pretrained}' has no audio encoder weights (no tensor named "
            f"'...{_GEMMA_ANCHOR}'); give a Gemma 3n checkpoint with its audio tower"
        )
    prefix = anchors[0][: -len(_GEMMA_ANCHOR)]
    missing = [k for k in wanted if prefix + k not in weight_map]
    if missing:
        raise CheckpointError(
            f"gemma3n_audio: '{pretrained}' lacks {len(missing)} audio encoder tensors, e.g. "
            f"{prefix + missing[0]}; the checkpoint does not match its config"
        )
    by_file: dict[str, list[str]] = {}
    for key in wanted:
        by_file.setdefault(weight_map[prefix + key], []).append(key)
    state: dict[str, torch.Tensor] = {}
    for filename, keys in by_file.items():
        with safe_open(_resolve(pretrained, filename), framework="pt") as f:
            for key in keys:
                state[key] = f.get_tensor(prefix + key).to(wanted[key].dtype)
    return state


def _gemma_weight_map(pretrained: str) -> dict[str, str]:
    """Tensor name -> safetensors file, from the shard index or the single weights file."""
    from safetensors import safe_open

    index = _resolve(pretrained, "model.safetensors.index.json", required=False)
    if index is not None:
        with open(index, encoding="utf-8") as f:
            return dict(json.load(f)["weight_map"])
    with safe_open(_resolve(pretrained, "model.safetensors"), framework="pt") as f:
        return {k: "model.safetensors" for k in f.keys()}


def _resolve(pretrained: str, filename: str, required: bool = True) -> str | None:
    """Local path of ``filename`` in a folder or hub repo (downloaded when online)."""
    from transformers.utils import cached_file

    try:
        path = cached_file(pretrained, filename, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError) as exc:
        raise _load_error("gemma3n_audio", pretrained, exc, _GEMMA_GATED) from exc
    if path is None and required:
        raise CheckpointError(
            f"gemma3n_audio: '{pretrained}' has no {filename} (nor model.safetensors.index.json); "
            "Gemma 3n weights are loaded from safetensors files"
        )
    return path


def _gemma_extractor(pretrained: str | None) -> Any:
    """The checkpoint's feature extractor settings (preprocessor_config.json), else the defaults."""
    from transformers import Gemma3nAudioFeatureExtractor

    if pretrained and _resolve(pretrained, "preprocessor_config.json", required=False):
        return Gemma3nAudioFeatureExtractor.from_pretrained(pretrained)
    return Gemma3nAudioFeatureExtractor()


def _check_gemma_bins(frontend: Gemma3nLogMel, config: Any) -> None:
    if frontend.num_bins != config.input_feat_size:
        raise ConfigError(
            f"gemma3n_audio: the encoder reads {config.input_feat_size} mel bins but the feature extractor gives "
            f"{frontend.num_bins}; set config.input_feat_size to {frontend.num_bins}"
        )


# --- Whisper ----------------------------------------------------------------------------------
def _whisper_from_pretrained(pretrained: str, layer: int, fixed: dict) -> nn.Module:
    """The encoder of a Whisper checkpoint (WhisperModel or WhisperForConditionalGeneration layout),
    built with ``layer`` encoder layers and no decoder layers; the weights above are not loaded."""
    from transformers import AutoConfig, WhisperModel

    try:
        config = AutoConfig.from_pretrained(pretrained)
    except (OSError, ValueError) as exc:
        raise _load_error("whisper_encoder", pretrained, exc) from exc
    if config.model_type != "whisper":
        raise CheckpointError(
            f"whisper_encoder: '{pretrained}' holds a '{config.model_type}' model, not Whisper; "
            "give a Whisper checkpoint (e.g. openai/whisper-small) or a folder saved from WhisperModel"
        )
    _check_layer("whisper_encoder", layer, config.encoder_layers)
    model = WhisperModel.from_pretrained(pretrained, **{**fixed, "decoder_layers": 0}).encoder
    return _cut(model, layer, config.encoder_layers)


def _whisper_extractor(pretrained: str | None, config: Any) -> Any:
    """The checkpoint's feature extractor (preprocessor_config.json), else one for its mel bins."""
    from transformers import WhisperFeatureExtractor

    if pretrained and _resolve(pretrained, "preprocessor_config.json", required=False):
        extractor = WhisperFeatureExtractor.from_pretrained(pretrained)
    else:
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    if extractor.feature_size != config.num_mel_bins:
        raise ConfigError(
            f"whisper_encoder: the encoder reads {config.num_mel_bins} mel bins but the feature extractor gives "
            f"{extractor.feature_size}; set config.num_mel_bins to {extractor.feature_size}"
        )
    return extractor


def _register(name: str, summary: str) -> None:
    def factory(
        pretrained: str | None = None, config: dict | None = None, layer: int = 12,
        normalize_waveform: bool = False,
    ) -> SSLEncoder:
        return SSLEncoder(name, pretrained, config, layer, normalize_waveform)

    factory.__doc__ = summary + (
        "\n\n``pretrained``: hub id or local folder; else ``config`` overrides the transformers config"
        " for random initialisation. ``layer``: features are taken after this layer (1-based;"
        " transformers' hidden_states[layer]) and layers above are not built. ``normalize_waveform``:"
        " per-utterance input normalisation (HuBERT/WavLM large checkpoints). Frozen, always in eval mode."
    )
    factory.__name__ = factory.__qualname__ = name
    MODELS.register(name)(factory)


_register("w2v_bert2", "w2v-BERT 2.0 conformer encoder (USM stand-in): wave (B, T) any rate -> (B, frames, 1024) at 50 Hz.")
_register("hubert", "HuBERT encoder: wave (B, T) any rate -> (B, frames, hidden) at 50 Hz.")
_register("wavlm", "WavLM encoder: wave (B, T) any rate -> (B, frames, hidden) at 50 Hz.")
_register("whisper_encoder", "Whisper encoder: wave (B, T) any rate -> (B, frames, d_model) at 50 Hz; inputs "
          "zero-padded to its 30 s window (longer ones encoded window by window), output cut to the real frames.")
_register("gemma3n_audio", "Gemma 3n audio encoder (USM-derived conformer): wave (B, T) any rate -> "
          "(B, frames, 1536) at 25 Hz (every 40 ms frame; the released model's final 4x frame drop is not applied).")
