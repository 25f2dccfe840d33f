"""SSL encoders and the parallel-adapter cleaner, built random-init from tiny configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import CheckpointError, ConfigError
from restorekit.models import MODELS
from restorekit.models.frontends import W2vBertFbank

TINY_W2V = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "output_hidden_size": 32, "conv_depthwise_kernel_size": 5}
TINY_HUBERT = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
ENCODERS = {
    "w2v_bert2": {"name": "w2v_bert2", "args": {"layer": 2, "config": TINY_W2V}},
    "hubert": {"name": "hubert", "args": {"layer": 2, "config": TINY_HUBERT}},
    "wavlm": {"name": "wavlm", "args": {"layer": 2, "config": {**TINY_HUBERT, "num_buckets": 8}}},
}


def _cleaner(encoder: str = "w2v_bert2", bottleneck: int = 16):
    torch.manual_seed(0)
    node = {"name": "parallel_adapter_cleaner", "args": {"encoder": ENCODERS[encoder], "bottleneck": bottleneck}}
    return MODELS.build(node, where="models.feature_cleaner")


def test_fbank_matches_transformers_extractor_batched_with_lengths():
    from transformers import SeamlessM4TFeatureExtractor

    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 12345)]
    extractor = SeamlessM4TFeatureExtractor()
    batch = torch.zeros(2, 16000)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    ours, mask = W2vBertFbank()(batch, torch.tensor([16000, 12345]))
    for i, w in enumerate(waves):
        ref = extractor(w, sampling_rate=16000, return_tensors="pt")
        n = ref["input_features"].shape[1]
        assert n == W2vBertFbank().num_frames(len(w))
        torch.testing.assert_close(ours[i, :n], ref["input_features"][0], atol=1e-4, rtol=0)
        assert mask[i, :n].long().tolist() == ref["attention_mask"][0].tolist()


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_encoder_is_frozen_truncated_and_counts_frames(encoder):
    enc = MODELS.build(ENCODERS[encoder], where="models.encoder")
    assert len(enc.model.encoder.layers) == 2
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training
    wave = torch.randn(2, 22050)
    feats = enc(wave, 22050)
    assert feats.shape == (2, enc.num_frames(22050, 22050), 32)
    assert enc.frame_rate == 50.0


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_zero_initialised_adapters_reproduce_frozen_features_exactly(encoder):
    cleaner = _cleaner(encoder)
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.equal(cleaner(wave, 16000), cleaner.target(wave, 16000))


def test_gradients_reach_adapters_and_block_norms_and_no_encoder_weight():
    cleaner = _cleaner()
    for name, p in cleaner.named_parameters():  # move the adapters off zero so all parts get gradient
        if ".adapter.up." in name:
            torch.nn.init.normal_(p, std=0.1)
    wave = torch.randn(1, 16000)
    (cleaner(wave, 16000) - cleaner.target(wave, 16000)).square().mean().backward()
    trainable = {n for n, p in cleaner.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n or ".final_layer_norm.trainable." in n for n in trainable)
    for name, p in cleaner.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_trained_adapters_change_features_but_not_the_target():
    cleaner = _cleaner()
    wave = torch.randn(1, 16000)
    before = cleaner.target(wave, 16000)
    for name, p in cleaner.named_parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(cleaner(wave, 16000), before)
    assert torch.equal(cleaner.target(wave, 16000), before)


def test_layer_out_of_range_and_missing_pretrained_are_user_errors():
    with pytest.raises(ConfigError, match=r"w2v_bert2: layer=5 is out of range; this encoder has layers 1..3"):
        MODELS.build({"name": "w2v_bert2", "args": {"layer": 5, "config": {**TINY_W2V, "num_hidden_layers": 3}}}, "m")
    with pytest.raises(CheckpointError, match=r"cannot load pretrained encoder 'no-such-org/no-such-model'"):
        MODELS.build({"name": "hubert", "args": {"pretrained": "no-such-org/no-such-model", "layer": 2}}, "m")
    with pytest.raises(ConfigError, match="activation 'tanh' is unknown"):
        MODELS.build({"name": "parallel_adapter_cleaner",
                      "args": {"encoder": ENCODERS["hubert"], "activation": "tanh"}}, "m")


def test_pretrained_local_folder_loads_only_layers_up_to_layer(tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    full = HubertModel(HubertConfig(**{**TINY_HUBERT, "num_hidden_layers": 3})).eval()
    full.save_pretrained(tmp_path)
    enc = MODELS.build({"name": "hubert", "args": {"pretrained": str(tmp_path), "layer": 2}}, "m")
    assert len(enc.model.encoder.layers) == 2
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        # post-norm HuBERT: the output of layer 2 is hidden_states[2] of the full model
        expected = full(wave, output_hidden_states=True).hidden_states[2]
        torch.testing.assert_close(enc(wave, 16000), expected)
