"""SSL encoders and the parallel-adapter cleaner, built random-init from tiny configs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restorekit.errors import CheckpointError, ConfigError
from restorekit.models import MODELS
from restorekit.models.frontends import Gemma3nLogMel, W2vBertFbank

TINY_W2V = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "output_hidden_size": 32, "conv_depthwise_kernel_size": 5}
TINY_HUBERT = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
TINY_GEMMA = {"hidden_size": 32, "conf_num_attention_heads": 2, "sscp_conv_channel_size": [8, 4]}
ENCODERS = {
    "w2v_bert2": {"name": "w2v_bert2", "args": {"layer": 2, "config": TINY_W2V}},
    "gemma3n_audio": {"name": "gemma3n_audio", "args": {"layer": 2, "config": TINY_GEMMA}},
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
    assert len(enc.blocks) == 2
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training
    for n, sr in ((22050, 22050), (16000, 16000), (12345, 16000), (700, 16000)):
        feats = enc(torch.randn(2, n), sr)
        assert feats.shape == (2, enc.num_frames(n, sr), 32)
    assert enc.frame_rate == (25.0 if encoder == "gemma3n_audio" else 50.0)


def tones(sr: int, seconds: float) -> np.ndarray:
    """220, 1375 and 3300 Hz: inside every band the encoders' resampling keeps (8 kHz input included)."""
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t)
            + 0.1 * np.sin(2 * np.pi * 3300 * t)).astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


@pytest.mark.parametrize("sr", [8000, 22050, 24000, 48000])
def test_encoders_resample_to_16k_as_soxr_does(sr):
    """julius on the model's device against soxr (restorekit.audio.resample, the toolkit's CPU path):
    the lengths num_frames assumes, and the same samples to within -60 dB away from the edges
    (measured: 66 dB from 8 kHz, 100 dB from the others). Mutations caught: julius with 4 zero
    crossings instead of its default 24 (at most 55 dB), and lengths scaled by sr / 16000 instead of
    16000 / sr."""
    from restorekit.audio import resample
    from restorekit.models.ssl import _resampled_length

    enc = MODELS.build(ENCODERS["hubert"], where="models.encoder")
    long, short = tones(sr, 1.0), tones(sr, 0.63)
    batch = torch.zeros(2, len(long))
    batch[0], batch[1, : len(short)] = torch.from_numpy(long), torch.from_numpy(short)
    wave16, lengths16 = enc.to_16k(batch, sr, torch.tensor([len(long), len(short)]))
    assert wave16.shape == (2, _resampled_length(len(long), sr))
    assert lengths16.tolist() == [len(long) * 16000 // sr, len(short) * 16000 // sr]
    for row, x in zip(wave16.numpy(), (long, short)):
        reference = resample(x, sr, 16000)
        assert abs(len(reference) - len(x) * 16000 // sr) <= 1
        middle = slice(400, len(reference) - 400)  # the two pad the ends differently
        assert snr_db(reference[middle], row[middle]) > 60


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_zero_initialised_adapters_reproduce_frozen_features_exactly(encoder):
    cleaner = _cleaner(encoder)
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.equal(cleaner(wave, 16000), cleaner.target(wave, 16000))


# per layer: adapter down/up weight + bias (4) and the norm copy (LayerNorm weight + bias; RMSNorm weight)
@pytest.mark.parametrize("encoder, norm, per_layer", [("w2v_bert2", ".final_layer_norm.", 6),
                                                      ("gemma3n_audio", ".norm.", 5)])
def test_gradients_reach_adapters_and_block_norms_and_no_encoder_weight(encoder, norm, per_layer):
    cleaner = _cleaner(encoder)
    for name, p in cleaner.named_parameters():  # move the adapters off zero so all parts get gradient
        if ".adapter.up." in name:
            torch.nn.init.normal_(p, std=0.1)
    wave = torch.randn(1, 16000)
    (cleaner(wave, 16000) - cleaner.target(wave, 16000)).square().mean().backward()
    trainable = {n for n, p in cleaner.named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * per_layer
    assert all(".adapter." in n or f"{norm}trainable." in n for n in trainable)
    for name, p in cleaner.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_trained_adapters_change_features_but_not_the_target():
    cleaner = _cleaner()
    wave = torch.randn(1, 16000)
    before = cleaner.target(wave, 16000)
    for p in cleaner.parameters():
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
    with pytest.raises(ConfigError, match="w2v_bert2: normalize_waveform applies to waveform encoders"):
        MODELS.build({"name": "w2v_bert2",
                      "args": {**ENCODERS["w2v_bert2"]["args"], "normalize_waveform": True}}, "m")
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


def _gemma_batch(lengths):
    rng = np.random.default_rng(1)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    batch = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    return waves, batch


@pytest.mark.parametrize("settings", [{}, {"preemphasis_htk_flavor": False, "input_scale_factor": 0.5},
                                      {"per_bin_mean": list(np.linspace(-3, 1, 128)),
                                       "per_bin_stddev": list(np.linspace(0.5, 2, 128))}])
def test_gemma3n_log_mel_matches_transformers_extractor_batched_with_lengths(settings):
    from transformers import Gemma3nAudioFeatureExtractor

    extractor = Gemma3nAudioFeatureExtractor(**settings)
    waves, batch = _gemma_batch([16000, 12345, 777])
    ours, mask = Gemma3nLogMel(extractor)(batch, torch.tensor([16000, 12345, 777]))
    ref = extractor(waves, return_tensors="pt")  # pads to the longest, then to a multiple of 128
    assert ours.shape == ref["input_features"].shape == (3, 97, 128)
    torch.testing.assert_close(ours, ref["input_features"], atol=1e-4, rtol=0)
    assert torch.equal(mask, ref["input_features_mask"])
    assert mask.sum(1).tolist() == [97, 78, 5]  # frames whose first sample is inside the utterance
    for w in waves:  # one at a time, as the extractor pads a single utterance
        single = extractor(w, return_tensors="pt")["input_features"]
        assert single.shape[1] == Gemma3nLogMel(extractor).num_frames(len(w))


def _tiny_gemma_checkpoint(folder, layers=3, composite=True, shards=2):
    """A Gemma 3n checkpoint on disk as released (audio tower inside a composite model, sharded)
    or as saved from Gemma3nAudioEncoder alone. Returns the full random-init encoder."""
    from safetensors.torch import save_file
    from transformers import Gemma3nAudioConfig, Gemma3nAudioEncoder, Gemma3nAudioFeatureExtractor

    torch.manual_seed(0)
    full = Gemma3nAudioEncoder(Gemma3nAudioConfig(**TINY_GEMMA, conf_num_hidden_layers=layers)).eval()
    Gemma3nAudioFeatureExtractor(per_bin_mean=[0.5] * 128, per_bin_stddev=[2.0] * 128).save_pretrained(folder)
    if not composite:
        full.save_pretrained(folder)
        return full
    config = {"model_type": "gemma3n", "audio_config": full.config.to_dict()}
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {f"model.audio_tower.{k}": v.contiguous() for k, v in full.state_dict().items()}
    tensors["model.language_model.embed_tokens.weight"] = torch.zeros(4, 4)
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        filename = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k] for k in part}, str(folder / filename))
        weight_map.update({k: filename for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return full


@pytest.mark.parametrize("composite", [True, False])
def test_gemma3n_pretrained_loads_only_the_audio_tower_up_to_layer(tmp_path, composite):
    from transformers import Gemma3nAudioFeatureExtractor

    full = _tiny_gemma_checkpoint(tmp_path, composite=composite)
    enc = MODELS.build({"name": "gemma3n_audio", "args": {"pretrained": str(tmp_path), "layer": 2}}, "m")
    assert len(enc.blocks) == 2 and enc.frame_rate == 25.0
    assert enc.input.per_bin_stddev is not None  # the checkpoint's extractor settings are used
    # reference: transformers' own extractor and encoder, cut after layer 2 with every frame kept
    full.conformer = full.conformer[:2]
    full.config.conf_reduction_factor = 1
    waves, batch = _gemma_batch([16000, 9000])
    ref_in = Gemma3nAudioFeatureExtractor.from_pretrained(tmp_path)(waves, return_tensors="pt")
    with torch.no_grad():
        expected = full(ref_in["input_features"], ~ref_in["input_features_mask"]).last_hidden_state
        ours = enc(batch, 16000, torch.tensor([16000, 9000]))
    assert ours.shape == expected.shape == (2, 25, 32)
    torch.testing.assert_close(ours, expected, atol=2e-4, rtol=1e-4)
    assert ours[1, 15:].abs().max() == 0  # padding frames are zeroed, as transformers does


def test_gemma3n_bad_checkpoints_are_checkpoint_errors(tmp_path):
    from transformers import HubertConfig

    with pytest.raises(CheckpointError, match=r"cannot load pretrained encoder 'no-such-org/gemma'.*gated"):
        MODELS.build({"name": "gemma3n_audio", "args": {"pretrained": "no-such-org/gemma", "layer": 2}}, "m")
    hubert = tmp_path / "hubert"
    HubertConfig(**TINY_HUBERT).save_pretrained(hubert)
    with pytest.raises(CheckpointError, match="holds a 'hubert' model, not a Gemma 3n audio encoder"):
        MODELS.build({"name": "gemma3n_audio", "args": {"pretrained": str(hubert), "layer": 2}}, "m")
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    _tiny_gemma_checkpoint(gemma, layers=3)
    with pytest.raises(ConfigError, match=r"gemma3n_audio: layer=4 is out of range; this encoder has layers 1..3"):
        MODELS.build({"name": "gemma3n_audio", "args": {"pretrained": str(gemma), "layer": 4}}, "m")
    index = gemma / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: v for k, v in data["weight_map"].items() if ".conformer.1." not in k}
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError,
                       match=r"lacks \d+ audio encoder tensors, e.g. model\.audio_tower\.conformer\.1\."):
        MODELS.build({"name": "gemma3n_audio", "args": {"pretrained": str(gemma), "layer": 2}}, "m")
