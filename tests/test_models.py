"""Registry sweep over every model, and the discriminators' contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.models import MODELS

TINY_W2V = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "output_hidden_size": 32, "conv_depthwise_kernel_size": 5}
TINY_WAV = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
TINY_ENCODER = {"name": "w2v_bert2", "args": {"layer": 2, "config": TINY_W2V}}
TINY_WAVEFIT = {"feature_dim": 32, "iterations": 2, "cond_channels": 16, "upsample_channels": [16, 16, 8, 8],
                "downsample_channels": [4, 8, 8, 16], "memory_efficient": True}

# name -> example args; every registered model must appear here (the sweep checks it).
_UNETS = {"channels": 32, "spectralunet_widths": [4, 8], "spectralunet_depth": 1, "spectralunet_out": 16,
          "waveunet_widths": [4, 8], "waveunet_depth": 1, "spectralmasknet_widths": [4, 8], "spectralmasknet_depth": 1}
EXAMPLES = {
    "w2v_bert2": TINY_ENCODER["args"],
    "hubert": {"layer": 2, "config": TINY_WAV},
    "wavlm": {"layer": 2, "config": {**TINY_WAV, "num_buckets": 8}},
    "gemma3n_audio": {"layer": 2, "config": {"hidden_size": 32, "conf_num_attention_heads": 2,
                                             "sscp_conv_channel_size": [8, 4]}},
    "parallel_adapter_cleaner": {"encoder": TINY_ENCODER, "bottleneck": 16},
    "miipher1_cleaner": {"encoder": TINY_ENCODER, "hidden": 16, "heads": 2, "blocks": 1, "ffn_dim": 32,
                         "kernel_size": 5, "postnet_channels": 8},  # no text: runs on audio alone
    "miipher1": {"feature_cleaner": {"name": "miipher1_cleaner", "args": {
        "encoder": TINY_ENCODER, "text_encoder": {"name": "phoneme_embedding", "args": {"dim": 8}}, "hidden": 16,
        "heads": 2, "blocks": 1, "ffn_dim": 32, "kernel_size": 5, "postnet_channels": 8}},
        "vocoder": {"name": "wavefit", "args": TINY_WAVEFIT}},
    "wavefit": TINY_WAVEFIT,
    "mpd": {"periods": [2, 3], "channels": [8, 16]},
    "msd": {"scales": 2, "channels": [8, 8, 16, 16, 32, 32, 32], "groups": [1, 2, 4, 4, 4, 4, 1]},
    "ms_stft": {"fft_sizes": [256, 128], "channels": 8, "depth": 2},
    "discriminator_set": {"members": [{"name": "mpd", "args": {"periods": [2], "channels": [8, 16]}},
                                      {"name": "ms_stft", "args": {"fft_sizes": [128], "channels": 8, "depth": 1}}]},
    "miipher2": {"feature_cleaner": {"name": "parallel_adapter_cleaner", "args": {"encoder": TINY_ENCODER, "bottleneck": 16}},
                 "vocoder": {"name": "wavefit", "args": TINY_WAVEFIT}},
    "hifigan": {"channels": 32, "resblock_kernel_sizes": [3], "resblock_dilations": [[1, 3]]},
    "hifipp": _UNETS,
    "a2a_hifipp": _UNETS,
    "finally": {**_UNETS, "wavlm": {"name": "wavlm", "args": {"layer": 2, "config": {**TINY_WAV, "num_buckets": 8}}}},
    "wave_restorer": {"generator": {"name": "a2a_hifipp", "args": _UNETS}},
    "hifigan_ssl_vocoder": {"feature_dim": 32, "generator": {"channels": 16, "resblock_kernel_sizes": [3],
                                                             "resblock_dilations": [[1, 3]]}},
    "phoneme_embedding": {"dim": 16, "num_layers": 1},
    "plbert": {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 32,
               "embedding_size": 8},
    "xphonebert": {"pretrained": None, "config": {"hidden_size": 16, "num_attention_heads": 2,
                                                  "num_hidden_layers": 1, "intermediate_size": 32}},
    "resemblyzer": {},
    "ecapa": {"pretrained": None, "channels": [16, 16, 16, 16, 48], "attention_channels": 8, "res2net_scale": 4,
              "se_channels": 8, "lin_neurons": 12},
    "whisper_encoder": {"layer": 2, "config": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
                                               "encoder_ffn_dim": 64, "max_source_positions": 50}},
    "mimi": {"n_filters": 4, "dimension": 16, "transformer_layers": 1, "heads": 2, "ffn": 32, "n_q": 3,
             "codebook_size": 16, "codebook_dim": 8},
}
TEXT_ENCODERS = ("phoneme_embedding", "plbert", "xphonebert")
SPEAKER_ENCODERS = ("resemblyzer", "ecapa")


def _run(name: str, model: torch.nn.Module) -> None:
    wave = torch.randn(2, 16000) * 0.1
    if name == "wavefit":
        out = model.infer(torch.randn(2, 5, 32))
        assert out.shape == (2, 5 * 480)
    elif name in ("mpd", "msd", "ms_stft", "discriminator_set"):
        logits, maps = model(wave)
        assert len(logits) == len(maps) > 0 and all(lg.shape[0] == 2 for lg in logits)
    elif name == "miipher2":
        out, sr = model.restore(wave[0].numpy(), 16000)
        assert sr == 24000 and out.shape == (24000,)
    elif name == "miipher1":  # the transcript is part of the input
        out, sr = model.restore(wave[0].numpy(), 16000, text="Bring two pencils.")
        assert sr == 24000 and out.shape == (24000,)
    elif name in ("hifigan", "hifipp"):
        assert model(model.features(wave)).shape == (2, 16000 // 256 * 256)
    elif name in ("a2a_hifipp", "finally"):
        assert model(wave).shape == (2, 16000)
    elif name == "hifigan_ssl_vocoder":
        assert model.infer(torch.randn(2, 5, 32)).shape == (2, 5 * 441)  # 22050 / 50 samples per frame
    elif name in TEXT_ENCODERS:  # phoneme ids (B, L), lengths (B,) -> (B, L', dim), lengths (B,)
        feats, lengths = model(torch.tensor([[50, 83, 54, 16], [65, 156, 0, 0]]), torch.tensor([4, 2]))
        assert feats.shape[0] == 2 and feats.shape[-1] == model.dim and lengths.shape == (2,)
    elif name in SPEAKER_ENCODERS:  # wave (B, T) -> unit-norm (B, dim)
        emb = model(wave, 16000)
        assert emb.shape == (2, model.dim) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    elif name == "mimi":  # 24 kHz codec: 16000 samples -> 9 frames of 1920 samples
        codes = model.encode(wave)
        assert codes.shape == (2, 3, 9) and model.decode(codes).shape == (2, 9 * 1920)
    elif name == "wave_restorer":
        out, sr = model.restore(wave[0].numpy(), 48000)  # resampled to the generator's 16 kHz
        assert sr == 16000 and out.shape == (16000 // 3,) and np.abs(out).max() == pytest.approx(0.9)
    else:
        feats = model(wave, 16000)
        assert feats.shape == (2, model.num_frames(16000, 16000), 32)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_builds_from_example_and_runs_on_cpu(name):
    assert name in EXAMPLES, f"add an example config for model '{name}' to EXAMPLES"
    torch.manual_seed(0)
    model = MODELS.build({"name": name, "args": EXAMPLES[name]}, where=f"models.{name}")
    with torch.no_grad():
        _run(name, model)


@pytest.mark.parametrize("name", ["mpd", "msd", "ms_stft"])
def test_discriminators_give_gradients_to_generated_audio(name):
    disc = MODELS.build({"name": name, "args": EXAMPLES[name]}, where="models.discriminators")
    fake = (torch.randn(2, 4000) * 0.1).requires_grad_()
    logits, maps = disc(fake)
    assert all(isinstance(m, list) and m for m in maps)
    sum(lg.mean() for lg in logits).backward()
    assert fake.grad.abs().sum() > 0


def test_mpd_folds_by_each_period():
    disc = MODELS.build({"name": "mpd", "args": EXAMPLES["mpd"]}, where="models.discriminators")
    _, maps = disc(torch.randn(1, 3001))
    assert [m[0].shape[-1] for m in maps] == [2, 3]  # last axis of the 2-D map is the period
