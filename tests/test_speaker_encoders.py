"""Speaker encoders: one contract (wave at any rate -> unit-norm (B, dim)), frozen, padding-blind."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import CheckpointError, ConfigError
from restorekit.models import MODELS


def _voice(seconds: float, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A crude vowel: harmonics of f0 with a slow vibrato and a little noise (float32, peak ~0.5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) + 0.01 * rng.standard_normal(t.size)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="module")
def resemblyzer():
    return MODELS.build({"name": "resemblyzer", "args": {}}, where="models.speaker_encoder")


def test_resemblyzer_equals_embed_utterance_per_item_over_valid_length(resemblyzer, one_thread):
    a, b = _voice(2.0, f0=120.0), _voice(1.3, f0=210.0, seed=1)
    batch = torch.zeros(2, a.size)
    batch[0], batch[1, : b.size] = torch.from_numpy(a), torch.from_numpy(b)
    out = resemblyzer(batch, 16000, torch.tensor([a.size, b.size]))
    assert out.shape == (2, resemblyzer.dim) == (2, 256)
    ref = np.stack([resemblyzer.encoder.embed_utterance(w) for w in (a, b)])
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(out.norm(dim=1).numpy(), [1.0, 1.0], atol=1e-5)
    # the padded item's embedding ignores the padding: the same as embedding it alone
    alone = resemblyzer(torch.from_numpy(b)[None], 16000)
    torch.testing.assert_close(out[1:], alone, atol=1e-6, rtol=0)
    assert float(out[0] @ out[1]) < 0.99  # two different voices are not one point


def test_resemblyzer_resamples_other_rates_to_16k(resemblyzer, one_thread):
    import julius

    wave = torch.from_numpy(_voice(1.0, sr=24000))[None]
    out = resemblyzer(wave, 24000)
    ref = resemblyzer.encoder.embed_utterance(julius.resample_frac(wave, 24000, 16000)[0].numpy())
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-6)


def test_resemblyzer_stays_frozen_in_a_training_parent(resemblyzer):
    parent = torch.nn.ModuleDict({"speaker": resemblyzer}).train()
    assert parent.training
    assert not resemblyzer.training and not resemblyzer.encoder.training
    assert not any(p.requires_grad for p in resemblyzer.parameters())


def test_resemblyzer_embeds_silence_and_short_items_finite_unit_norm(resemblyzer):
    out = resemblyzer(torch.zeros(2, 8000), 16000, torch.tensor([8000, 100]))
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.norm(dim=1).numpy(), [1.0, 1.0], atol=1e-5)


def test_speaker_encoder_rejects_non_batched_audio(resemblyzer):
    with pytest.raises(ConfigError, match=r"resemblyzer: expected audio of shape \(batch, time\), got \(16000,\)"):
        resemblyzer(torch.zeros(16000), 16000)


# --- ecapa ------------------------------------------------------------------------------------
TINY_ECAPA = {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "res2net_scale": 4, "se_channels": 8,
              "lin_neurons": 12}
# keys of SpeechBrain's embedding_model.ckpt (spkrec-ecapa-voxceleb), which ours must reproduce
SPEECHBRAIN_KEYS = ["blocks.0.conv.conv.weight", "blocks.0.norm.norm.running_var",
                    "blocks.1.tdnn1.conv.conv.bias", "blocks.1.res2net_block.blocks.2.norm.norm.num_batches_tracked",
                    "blocks.3.se_block.conv2.conv.weight", "blocks.3.tdnn2.norm.norm.weight",
                    "mfa.conv.conv.weight", "asp.tdnn.conv.conv.weight", "asp.conv.conv.bias",
                    "asp_bn.norm.running_mean", "fc.conv.weight", "fc.conv.bias"]


def _ecapa(pretrained=None):
    return MODELS.build({"name": "ecapa", "args": {"pretrained": pretrained, **TINY_ECAPA}}, where="models.speaker_encoder")


def _saved_ecapa(folder):
    """A tiny random ECAPA with non-trivial batch-norm statistics, saved as SpeechBrain saves it."""
    torch.manual_seed(0)
    enc = _ecapa()
    for name, tensor in enc.embedding_model.state_dict().items():
        if name.endswith(("running_mean", "running_var", "norm.weight", "norm.bias")):
            tensor.copy_(torch.rand_like(tensor) + (0.5 if "var" in name or "weight" in name else -0.5))
    torch.save(enc.embedding_model.state_dict(), folder / "embedding_model.ckpt")
    return enc


def test_ecapa_loads_the_speechbrain_layout_strictly_and_embeds_the_same(tmp_path, one_thread):
    saved = _saved_ecapa(tmp_path)
    state = torch.load(tmp_path / "embedding_model.ckpt", weights_only=True)
    assert set(SPEECHBRAIN_KEYS) <= set(state)
    assert not any("shortcut" in k for k in state)  # equal widths: SpeechBrain builds no shortcut conv
    loaded = _ecapa(str(tmp_path))
    wave = torch.from_numpy(np.stack([_voice(1.0, f0=120.0), _voice(1.0, f0=220.0, seed=1)]))
    out = loaded(wave, 16000)
    assert out.shape == (2, loaded.dim) == (2, 12)
    torch.testing.assert_close(out, saved(wave, 16000), atol=0, rtol=0)
    np.testing.assert_allclose(out.norm(dim=1).numpy(), [1.0, 1.0], atol=1e-5)
    assert not torch.allclose(out, _ecapa()(wave, 16000))  # the weights came from the file


def test_ecapa_pads_resamples_and_stays_frozen(tmp_path, one_thread):
    enc = _saved_ecapa(tmp_path)
    short = torch.from_numpy(_voice(0.7, seed=2))
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, : short.numel()] = torch.from_numpy(_voice(1.0)), short
    batch[1, short.numel():] = 0.3  # garbage past the valid length
    out = enc(batch, 16000, torch.tensor([16000, short.numel()]))
    torch.testing.assert_close(out[1:], enc(short[None], 16000), atol=1e-6, rtol=0)
    assert enc(torch.randn(1, 24000) * 0.1, 24000).shape == (1, 12)  # resampled to 16 kHz inside
    assert torch.isfinite(enc(torch.zeros(1, 200), 16000)).all()  # shorter than 0.1 s: padded
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    torch.nn.ModuleDict({"speaker": enc}).train()
    enc(batch, 16000)
    assert not enc.training and not enc.embedding_model.blocks[0].norm.norm.training
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # no batch-norm update
    assert not any(p.requires_grad for p in enc.parameters())


def test_ecapa_fbank_is_speechbrains_mean_normalised_log_mel():
    from restorekit.models.speaker import SpeechBrainFbank

    fbank = SpeechBrainFbank(80)
    t = torch.arange(16000) / 16000
    feats = fbank((0.5 * torch.sin(2 * torch.pi * 1000 * t))[None])
    assert feats.shape == (1, 101, 80)
    torch.testing.assert_close(feats.mean(dim=1), torch.zeros(1, 80), atol=1e-4, rtol=0)
    # the peak bin of a 1 kHz tone is the filter centred nearest 1 kHz (HTK mel)
    mel = torch.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82)
    centres = 700 * (10 ** (mel[1:-1] / 2595) - 1)
    assert int(feats[0, 50].argmax()) == int((centres - 1000).abs().argmin())
    # 80 dB range: nothing lies further than 80 dB below the item's peak (before mean removal)
    assert float(feats.max() - feats.min()) <= 80.0 + 1e-3


def test_ecapa_checkpoint_errors_say_what_to_do(tmp_path):
    _saved_ecapa(tmp_path)
    state = torch.load(tmp_path / "embedding_model.ckpt", weights_only=True)
    state["fc.conv.weights"] = state.pop("fc.conv.weight")
    torch.save(state, tmp_path / "embedding_model.ckpt")
    with pytest.raises(CheckpointError, match=r"ecapa: .*embedding_model.ckpt does not fit the ECAPA-TDNN built from "
                                              r"the config: 1 missing key\(s\) \(e.g. \['fc.conv.weight'\]\), "
                                              r"1 unexpected \(e.g. \['fc.conv.weights'\]\)"):
        _ecapa(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"ecapa: .* has no embedding_model.ckpt; put SpeechBrain's"):
        _ecapa(str(tmp_path / ".."))
    with pytest.raises(CheckpointError, match=r"ecapa: cannot get embedding_model.ckpt of "
                                              r"'speechbrain/spkrec-ecapa-voxceleb' .*huggingface-cli download "
                                              r"speechbrain/spkrec-ecapa-voxceleb embedding_model.ckpt"):
        _ecapa("speechbrain/spkrec-ecapa-voxceleb")


def test_resemblyzer_under_bf16_autocast_gives_its_float32_embedding(resemblyzer, one_thread):
    """A bf16 training step (Miipher-1 stage 1) calls the frozen encoder under autocast: it runs in
    float32 (oneDNN has no CPU bf16 LSTM; it raised) and gives the embedding it gives outside."""
    wave = 0.1 * torch.randn(1, 16000)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = resemblyzer(wave, 16000)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, resemblyzer(wave, 16000))
