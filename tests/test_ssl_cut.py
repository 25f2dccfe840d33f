"""Where the SSL encoder is cut and what the cleaner trains there, per backbone.

Each encoder is saved full depth (3 layers) with ``save_pretrained`` and loaded through the
pretrained path cut after a layer; its features are compared with transformers' own full model.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restorekit.config import load_yaml
from restorekit.models import MODELS
from restorekit.models.ssl import SSLEncoder

TINY_W2V = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "output_hidden_size": 32, "conv_depthwise_kernel_size": 5}
TINY_HUBERT = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
# Large checkpoints: pre-norm layers ("stable layer norm") and a layer-norm feature encoder
STABLE = {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}
TINY_GEMMA = {"hidden_size": 32, "conf_num_attention_heads": 2, "sscp_conv_channel_size": [8, 4]}
DEPTH = 3
# variant -> (registered encoder name, transformers config and model classes, config)
BACKBONES = {
    "w2v_bert2": ("w2v_bert2", "Wav2Vec2BertConfig", "Wav2Vec2BertModel", TINY_W2V),
    "hubert_base": ("hubert", "HubertConfig", "HubertModel", TINY_HUBERT),
    "hubert_large": ("hubert", "HubertConfig", "HubertModel", {**TINY_HUBERT, **STABLE}),
    "wavlm_base": ("wavlm", "WavLMConfig", "WavLMModel", {**TINY_HUBERT, "num_buckets": 8}),
    "wavlm_large": ("wavlm", "WavLMConfig", "WavLMModel", {**TINY_HUBERT, **STABLE, "num_buckets": 8}),
    "gemma3n_audio": ("gemma3n_audio", "Gemma3nAudioConfig", "Gemma3nAudioEncoder",
                      {**TINY_GEMMA, "conf_num_hidden_layers": DEPTH}),
}
LENGTHS = [16000, 11000]


def _save_full(tmp_path: Path, variant: str) -> torch.nn.Module:
    import transformers

    _, config_cls, model_cls, config = BACKBONES[variant]
    torch.manual_seed(0)
    config = {"num_hidden_layers": DEPTH, **config} if variant != "gemma3n_audio" else config
    full = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config)).eval()
    full.save_pretrained(tmp_path)
    return full


def _encoder(folder: Path, variant: str, layer: int) -> SSLEncoder:
    node = {"name": BACKBONES[variant][0], "args": {"pretrained": str(folder), "layer": layer}}
    return MODELS.build(node, where="models.encoder")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    wave = 0.1 * torch.randn(len(LENGTHS), max(LENGTHS))
    lengths = torch.tensor(LENGTHS)
    return wave * (torch.arange(wave.shape[1]) < lengths[:, None]), lengths


def _reference(full: torch.nn.Module, enc: SSLEncoder, wave: torch.Tensor, lengths: torch.Tensor,
               layer: int) -> torch.Tensor:
    """transformers' full model on the inputs our front end computes: hidden_states[layer] below
    the top, the model's own output (last_hidden_state) at the top."""
    inputs, mask = enc.input(wave, lengths)
    if enc.kind == "gemma3n_audio":  # Gemma3nAudioEncoder reports no hidden states: hook the block
        seen = []
        hook = full.conformer[layer - 1].register_forward_hook(lambda m, i, o: seen.append(o))
        full(inputs, ~mask)
        hook.remove()
        return seen[0]
    kwargs = {enc.spec.input_key: inputs}
    if enc.spec.frontend == "fbank" or full.config.feat_extract_norm == "layer":
        kwargs["attention_mask"] = mask.long()  # group-norm (base) models take no mask
    out = full(**kwargs, output_hidden_states=True)
    return out.last_hidden_state if layer == DEPTH else out.hidden_states[layer]


@pytest.mark.parametrize("layer", [2, DEPTH])
@pytest.mark.parametrize("variant", sorted(BACKBONES))
def test_features_are_transformers_hidden_states_at_the_cut(tmp_path, variant, layer):
    full = _save_full(tmp_path, variant)
    enc = _encoder(tmp_path, variant, layer)
    assert len(enc.blocks) == layer
    wave, lengths = _batch()
    with torch.no_grad():
        ours = enc(wave, 16000, lengths)
        expected = _reference(full, enc, wave, lengths, layer)
    assert ours.shape == expected.shape
    for i, n in enumerate(LENGTHS):  # valid frames; padding frames are the model's own business
        frames = enc.num_frames(n, 16000)
        torch.testing.assert_close(ours[i, :frames], expected[i, :frames], atol=1e-5, rtol=1e-5)


def _cleaner(tmp_path: Path, variant: str, layer: int = 2):
    _save_full(tmp_path, variant)
    torch.manual_seed(0)
    encoder = {"name": BACKBONES[variant][0], "args": {"pretrained": str(tmp_path), "layer": layer}}
    node = {"name": "parallel_adapter_cleaner", "args": {"encoder": encoder, "bottleneck": 8}}
    return MODELS.build(node, where="models.feature_cleaner")


# the norm copy that trains in each layer: the block's closing norm, applied to residual + FFN +
# adapter; pre-norm (stable layer norm) layers have none, so only their adapters train
TRAINED_NORMS = {"w2v_bert2": "final_layer_norm", "hubert_base": "final_layer_norm", "hubert_large": None,
                 "wavlm_base": "final_layer_norm", "wavlm_large": None, "gemma3n_audio": "norm"}


@pytest.mark.parametrize("variant", sorted(BACKBONES))
def test_each_backbone_trains_its_adapters_and_only_its_closing_norms(tmp_path, variant):
    cleaner = _cleaner(tmp_path, variant)
    trainable = {n for n, p in cleaner.named_parameters() if p.requires_grad}
    adapters = {n for n in trainable if ".adapter." in n}
    assert len(adapters) == 2 * 4  # down/up weight and bias in each of the 2 layers
    norms = {n.split(".")[-3] for n in trainable - adapters}
    assert {n for n in trainable - adapters if ".trainable." not in n} == set()
    assert norms == ({TRAINED_NORMS[variant]} if TRAINED_NORMS[variant] else set())
    for name, p in cleaner.named_parameters():  # move everything trainable off its start
        if p.requires_grad:
            torch.nn.init.normal_(p, mean=1.0 if "norm" in name else 0.0, std=0.1)
    wave, lengths = _batch()
    (cleaner(wave, 16000, lengths) - cleaner.target(wave, 16000, lengths)).square().mean().backward()
    for name, p in cleaner.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (name in trainable), name


# the FFN's first linear layer: what it reads is the FFN's normalised input
FIRST_LINEAR = ("intermediate_dense", "ffw_layer_1")


@pytest.mark.parametrize("variant", sorted(BACKBONES))
def test_adapter_reads_the_normalised_input_its_ffn_reads(tmp_path, variant):
    cleaner = _cleaner(tmp_path, variant)
    for name, p in cleaner.named_parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, mean=1.0 if "norm" in name else 0.0, std=0.1)
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for i, block in enumerate(cleaner.encoder.blocks):
        ffn = getattr(block, cleaner.encoder.spec.ffn)
        first = [m for n, m in ffn.named_modules() if n.endswith(FIRST_LINEAR) and "adapter" not in n]
        assert len(first) == 1
        for key, module in ((f"ffn{i}", first[0]), (f"adapter{i}", ffn.adapter.down)):
            hooks.append(module.register_forward_hook(lambda m, x, y, key=key: seen.__setitem__(key, x[0])))
    wave, lengths = _batch()
    with torch.no_grad():
        cleaner(wave, 16000, lengths)
    for h in hooks:
        h.remove()
    for i in range(len(cleaner.encoder.blocks)):
        torch.testing.assert_close(seen[f"adapter{i}"], seen[f"ffn{i}"], atol=0, rtol=0)


@pytest.mark.parametrize("variant", sorted(BACKBONES))
def test_untrained_cleaner_is_the_frozen_encoder_exactly(tmp_path, variant):
    cleaner = _cleaner(tmp_path, variant)
    enc = _encoder(tmp_path, variant, 2)
    wave, lengths = _batch()
    with torch.no_grad():
        assert torch.equal(cleaner(wave, 16000, lengths), cleaner.target(wave, 16000, lengths))
        assert torch.equal(cleaner(wave, 16000, lengths), enc(wave, 16000, lengths))


def test_gemma3n_recipe_vocoder_follows_the_paper_upsampling():
    repo = Path(__file__).resolve().parents[1]
    vocoder = load_yaml(repo / "configs/miipher2/models_gemma3n_audio.yaml").models.vocoder
    # Miipher-2's WaveFit: USM features at 25 Hz, x4 frame repetition, then x5 x4 x3 x2 x2 = 24 kHz
    assert vocoder.args.feature_rate == 25 and vocoder.args.pre_upsample == 4
    assert list(vocoder.args.upsample_factors) == [5, 4, 3, 2, 2]
    torch.manual_seed(0)
    wavefit = MODELS.build(vocoder, where="models.vocoder")
    assert wavefit.hop == 960 and len(wavefit.ublocks) == 5
    with torch.no_grad():
        out = wavefit.infer(torch.randn(1, 2, 1536))
    assert out.shape == (1, 2 * 960) and torch.isfinite(out).all()
