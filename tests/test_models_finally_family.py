"""FINALLY-family generators: hifigan, hifipp, a2a_hifipp and finally.

Full-size models are built once, on the meta device (shapes without memory or init), to count
parameters against the published numbers; everything that runs uses tiny widths on CPU.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn.utils import parametrize

from restorekit.errors import ConfigError, DataError
from restorekit.mel import LogMel
from restorekit.models import MODELS
from restorekit.models.hifigan import init_weights

TINY_WAVLM = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "num_buckets": 8,
              "num_hidden_layers": 2}
WAVLM_NODE = {"name": "wavlm", "args": {"layer": 2, "config": TINY_WAVLM}}
TINY_UNETS = {"spectralunet_widths": [4, 8], "spectralunet_depth": 1, "spectralunet_out": 16,
              "waveunet_widths": [4, 8], "waveunet_depth": 1, "spectralmasknet_widths": [4, 8],
              "spectralmasknet_depth": 1}
TINY = {
    "hifigan": {"channels": 32, "resblock_kernel_sizes": [3, 5], "resblock_dilations": [[1, 3], [1, 3]]},
    "hifipp": {"channels": 32, **TINY_UNETS},
    "a2a_hifipp": {"channels": 32, **TINY_UNETS},
    "finally": {"channels": 32, **TINY_UNETS, "wavlm": WAVLM_NODE, "upsampler_widths": [4, 8],
                "upsampler_depth": 1, "upsampler_channels": 8},
}
# Published sizes (HiFi-GAN paper, HiFi++ paper, FINALLY recipe), within 0.5 %.
FULL = {
    "hifigan_v1": ("hifigan", {"channels": 512}, 13.94e6),
    "hifigan_v2": ("hifigan", {"channels": 128}, 0.93e6),
    "hifipp": ("hifipp", {}, 1.71e6),
    "a2a_hifipp": ("a2a_hifipp", {}, 1.71e6),
    # with the stage-3 upsampler; WavLM-Large's own weights are not counted (a 1024-d stand-in)
    "finally": ("finally", {"upsample": True, "wavlm": {"name": "wavlm", "args": {
        "layer": 1, "config": {**TINY_WAVLM, "hidden_size": 1024, "num_hidden_layers": 1}}}}, 80.9e6),
}


def build(name: str, **overrides):
    torch.manual_seed(0)
    return MODELS.build({"name": name, "args": {**TINY[name], **overrides}}, where=f"models.{name}")


@pytest.fixture(scope="module")
def full_size():
    with torch.device("meta"):
        return {key: MODELS.build({"name": name, "args": args}, where=f"models.{key}")
                for key, (name, args, _) in FULL.items()}


def own_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("wavlm."))


@pytest.mark.slow  # five full-size builds (meta device: shapes only), ~15 s on a loaded 2-core machine
@pytest.mark.parametrize("key", sorted(FULL))
def test_full_size_parameter_counts_match_the_papers(full_size, key):
    expected = FULL[key][2]
    assert own_parameters(full_size[key]) == pytest.approx(expected, rel=0.005)


@pytest.mark.slow
def test_finally_stage3_upsampler_and_wavlm_fusion_widths(full_size):
    g = full_size["finally"]
    assert g.sample_rate == 48000 and g.input_rate == 16000 and g.hop == 256
    # SpectralUNet 512 + WavLM 1024 = 1536 channels into the pre-upsampler ResBlock
    assert g.pre_upsampler[0].convs1[0].in_channels == 1536
    assert g.pre_upsampler[2].out_channels == 512 and g.core.backbone.out_channels == 32
    upsampler = sum(p.numel() for p in g.upsampler.parameters())
    assert own_parameters(g) - upsampler == pytest.approx(77.0e6, rel=0.005)


def test_hifigan_generates_hop_samples_per_frame_and_pairs_with_its_mel(one_thread):
    g = build("hifigan")
    wave = 0.1 * torch.randn(2, 4096)
    mel = g.features(wave)
    assert g.hop == 256 and g.sample_rate == 16000
    assert mel.shape == (2, 80, 4096 // 256)  # T / hop frames: mel and audio pair sample-exactly
    torch.testing.assert_close(mel, LogMel(16000, center=False, pad=384)(wave))
    assert g(mel).shape == (2, 4096)
    assert g(torch.randn(1, 80, 7)).shape == (1, 7 * 256)


def test_hifigan_reads_any_feature_size_and_other_rates(one_thread):
    g = build("hifigan", in_channels=48, upsample_rates=[5, 4, 4, 3], upsample_kernel_sizes=[11, 8, 8, 7],
              sample_rate=24000, mel={"n_fft": 1200, "n_mels": 48})
    assert g.hop == 240 and g(torch.randn(1, 48, 5)).shape == (1, 1200)
    assert g.features(torch.randn(1, 2400)).shape == (1, 48, 10)


@pytest.mark.parametrize("name", ["hifigan", "hifipp"])
def test_mel_vocoders_end_in_tanh(name, one_thread):
    g = build(name)
    with torch.no_grad():  # a huge output conv drives the pre-activation far outside [-1, 1]
        g.conv_post.weight = g.conv_post.weight * 1e4
        out = g(g.features(torch.randn(1, 2048)))
    assert out.abs().max() <= 1.0 and out.abs().max() > 0.999


def test_hifipp_generates_hop_samples_per_frame(one_thread):
    g = build("hifipp")
    mel = g.features(0.1 * torch.randn(2, 3072))
    assert mel.shape == (2, 80, 12) and g(mel).shape == (2, 3072)


@pytest.mark.parametrize("length", [3000, 4096, 5000])
def test_a2a_hifipp_keeps_the_input_length(length, one_thread):
    g = build("a2a_hifipp")
    assert g.sample_rate == g.input_rate == 16000
    out = g(0.1 * torch.randn(2, length))
    assert out.shape == (2, length) and out.abs().max() < 1


@pytest.mark.parametrize("upsample,length,out_length", [(False, 8192, 8192), (True, 8192, 24576),
                                                        (False, 5000, 5000), (True, 5000, 15000)])
def test_finally_output_lengths(upsample, length, out_length, one_thread):
    g = build("finally", upsample=upsample)
    assert g.sample_rate == (48000 if upsample else 16000) and g.input_rate == 16000
    assert (g.upsampler is not None) == upsample and (g.conv_post is None) == upsample
    out = g(0.1 * torch.randn(2, length))
    assert out.shape == (2, out_length)  # one channel (the original 16 kHz model returned 32)
    assert out.abs().max() < 1


def test_finally_16k_output_is_conv_post_then_tanh(one_thread):
    """One output channel made by conv_post (the original 16 kHz model returned 32 channels)."""
    g = build("finally")
    wave = 0.1 * torch.randn(1, 2048)
    with torch.no_grad():
        g.conv_post.bias.fill_(0.5)
        g.conv_post.weight = g.conv_post.weight * 1e-9  # (exact zeros are NaN under weight norm)
        torch.testing.assert_close(g(wave), torch.full((1, 2048), math.tanh(0.5)))


def test_finally_upsampler_is_a_separate_trainable_part(one_thread):
    g = build("finally", upsample=True)
    out = g(0.1 * torch.randn(1, 2048))
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.upsampler.parameters())
    upsampler = {id(p) for p in g.upsampler.parameters()}
    assert upsampler and upsampler.isdisjoint(id(p) for p in g.core.parameters())


def expected_crop(features: torch.Tensor, offsets: list[int], frames: int) -> torch.Tensor:
    """WavLM frames of the whole context (B, Fc, D) cropped to each segment's mel frames: frame j takes
    the WavLM frame whose receptive-field centre (320 i + 199.5) is nearest the mel window's centre
    (offset + 256 j + 127.5)."""
    rows = []
    for b, offset in enumerate(offsets):
        index = [min(max(math.floor((offset + 256 * j + 127.5 - 199.5) / 320 + 0.5), 0), features.shape[1] - 1)
                 for j in range(frames)]
        rows.append(features[b, index].T)
    return torch.stack(rows)


def test_finally_crops_context_features_to_the_segment(one_thread):
    g = build("finally")
    context = 0.1 * torch.randn(2, 16000)
    offsets, length = [1000, 4321], 4096
    segment = torch.stack([context[b, o:o + length] for b, o in enumerate(offsets)])
    frames = length // 256
    got = g.ssl_features(segment, frames, context, torch.tensor(offsets))
    with torch.no_grad():
        whole = g.wavlm(context, 16000)
    torch.testing.assert_close(got, expected_crop(whole, offsets, frames))
    alone = g.ssl_features(segment, frames)
    assert alone.shape == got.shape and not torch.allclose(alone, got, atol=1e-3)
    # the offset counts to the sample: 160 samples later moves half the frames to the next WavLM frame
    shifted = g.ssl_features(segment, frames, context, torch.tensor(offsets) + 160)
    with torch.no_grad():
        torch.testing.assert_close(shifted, expected_crop(whole, [o + 160 for o in offsets], frames))
    # at N(0, 0.01) a tiny generator's output hardly depends on its features; larger weights show the path
    init_weights(g.pre_upsampler, 0.3)
    init_weights(g.core.backbone, 0.3)
    with torch.no_grad():
        out_ctx, out_alone = g(segment, context, torch.tensor(offsets)), g(segment)
    assert out_ctx.shape == (2, length) and (out_ctx - out_alone).abs().max() > 1e-3


def test_finally_context_lengths_keep_a_padded_row_equal_to_the_row_alone(one_thread):
    """A context row shorter than the batch's longest is zero-padded by collate; with its
    ``context_lengths`` WavLM gives its segment the features it gets alone. (WavLM Large's layout:
    layer-normed conv features, pre-norm layers, normalised input; group norm would read the padding.)"""
    large = {**TINY_WAVLM, "feat_extract_norm": "layer", "do_stable_layer_norm": True}
    g = build("finally", wavlm={"name": "wavlm", "args": {"layer": 2, "config": large, "normalize_waveform": True}})
    short, long = 0.1 * torch.randn(9000), 0.1 * torch.randn(16000)
    context = torch.stack([torch.nn.functional.pad(short, (0, 7000)), long])
    offsets, length = torch.tensor([1000, 4000]), 4096
    segment = torch.stack([context[b, o:o + length] for b, o in enumerate(offsets.tolist())])
    frames = length // 256
    batched = g.ssl_features(segment, frames, context, offsets, torch.tensor([9000, 16000]))
    alone = g.ssl_features(segment[:1], frames, short[None], offsets[:1])
    torch.testing.assert_close(batched[:1], alone, atol=1e-4, rtol=1e-4)
    unmasked = g.ssl_features(segment, frames, context, offsets)
    assert (unmasked[:1] - alone).abs().max() > 1e-3  # the padding does reach WavLM without lengths


def test_finally_without_context_aligns_its_own_wavlm_frames(one_thread):
    g = build("finally")
    wave = 0.1 * torch.randn(1, 8192)
    with torch.no_grad():
        whole = g.wavlm(wave, 16000)
    assert whole.shape[1] == 25  # 50 Hz for 8192 samples, against 32 mel frames
    torch.testing.assert_close(g.ssl_features(wave, 32), expected_crop(whole, [0], 32))


def test_finally_wavlm_is_frozen_and_stays_in_eval_mode(one_thread):
    g = build("finally")
    g.train()
    assert g.training and not g.wavlm.model.training
    assert not any(p.requires_grad for p in g.wavlm.parameters())
    g(0.1 * torch.randn(1, 2048)).square().mean().backward()
    assert all(p.grad is None for p in g.wavlm.parameters())
    assert g.core.spectralunet.post_1d.bias.grad.abs().sum() > 0


def test_finally_normalises_wavlm_input_by_default(one_thread):
    """WavLM-Large reads zero-mean unit-variance audio, so its features ignore the input gain."""
    wave = 0.1 * torch.randn(1, 4096)
    g = build("finally")
    assert g.wavlm.input.normalize
    torch.testing.assert_close(g.ssl_features(wave, 16), g.ssl_features(0.3 * wave, 16), atol=1e-4, rtol=1e-4)
    raw = build("finally", wavlm={"name": "wavlm", "args": {**WAVLM_NODE["args"], "normalize_waveform": False}})
    assert not torch.allclose(raw.ssl_features(wave, 16), raw.ssl_features(0.3 * wave, 16), atol=1e-3)


def test_finally_loads_a_saved_wavlm_and_uses_its_last_hidden_state(tmp_path, one_thread):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    saved = WavLMModel(WavLMConfig(**TINY_WAVLM)).eval()
    saved.save_pretrained(tmp_path)
    g = build("finally", wavlm={"name": "wavlm", "args": {"pretrained": str(tmp_path), "layer": 2}})
    wave = 0.1 * torch.randn(1, 8000)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True)  # WavLM-Large's preprocessing
    inputs = extractor(wave[0].numpy(), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        expected = saved(inputs).last_hidden_state
    frames = 8000 // 256
    torch.testing.assert_close(g.ssl_features(wave, frames), expected_crop(expected, [0], frames),
                               atol=1e-4, rtol=1e-4)


def test_finally_builds_without_the_wavlm_branch(one_thread):
    g = build("finally", wavlm=None)
    assert g.wavlm is None and g.pre_upsampler[0].convs1[0].in_channels == 16
    assert g(0.1 * torch.randn(1, 2048)).shape == (1, 2048)
    with pytest.raises(ConfigError, match="built with wavlm: null and has no WavLM features"):
        g.ssl_features(torch.zeros(1, 2048), 8)


def _convs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose1d)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and not n.startswith("wavlm.")]


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_conv_is_weight_normed(name):
    convs = _convs(build(name, upsample=True) if name == "finally" else build(name))
    assert convs and [n for n, m in convs if not parametrize.is_parametrized(m, "weight")] == []


def test_conv_weights_are_really_drawn_from_normal_0_01():
    """The effective (weight-normed) weights, not a copy the next forward overwrites."""
    g = MODELS.build({"name": "hifigan", "args": {"channels": 128}}, where="models.hifigan")
    g(torch.randn(1, 80, 2))  # a forward must not undo the init
    for conv in (g.backbone.conv_pre, g.backbone.ups[0], g.backbone.resblocks[0][2].convs1[1]):
        w = conv.weight.detach()  # tens of thousands of weights: mean and std to a few percent
        assert abs(w.mean().item()) < 2e-4 and w.std().item() == pytest.approx(0.01, rel=0.05)
    assert g.conv_post.weight.detach().std().item() == pytest.approx(0.01, rel=0.25)  # 56 weights
    f = build("finally", upsample=True, channels=256, upsampler_channels=256)
    for conv in (f.pre_upsampler[0].convs2[2], f.core.waveunet_pre, f.upsampler.up):
        assert conv.weight.detach().std().item() == pytest.approx(0.01, rel=0.2)


def test_spectral_mask_net_with_a_unit_mask_gives_its_input_back(one_thread):
    """softplus(mask) = 1 on bins 1.. and frames 1.., bin 0 and frame 0 untouched: STFT -> iSTFT only."""
    from restorekit.models.hifipp import SpectralMaskNet

    net = SpectralMaskNet(2, [4, 8], 1)
    out_conv = net.net.net[-1]
    with torch.no_grad():
        out_conv.weight = out_conv.weight * 1e-9
        out_conv.bias.fill_(math.log(math.e - 1))  # softplus^-1(1)
    x = 0.1 * torch.randn(2, 2, 2048)
    torch.testing.assert_close(net(x), x, atol=1e-5, rtol=0)


def test_skip_convs_start_as_the_identity(one_thread):
    g = build("a2a_hifipp")
    for skip in (g.core.waveunet_skip, g.core.spectralmasknet_skip):
        ch = skip.in_channels
        torch.testing.assert_close(skip.weight.detach(), torch.eye(ch)[:, :, None])
        x = torch.randn(1, ch, 64)
        torch.testing.assert_close(skip(x), x)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_generator_builds_from_a_small_config_and_runs(name, one_thread):
    g = build(name)
    wave = 0.1 * torch.randn(2, 3000)
    out = g(g.features(wave)) if name in ("hifigan", "hifipp") else g(wave)
    expected = 3000 // 256 * 256 if name in ("hifigan", "hifipp") else 3000
    assert out.shape == (2, expected) and torch.isfinite(out).all()
    assert g.sample_rate == 16000


def test_user_mistakes_say_what_to_fix():
    with pytest.raises(ConfigError, match=r"need k >= u and k - u even .* got \(u, k\) = \[\(8, 15\)\]"):
        build("hifigan", upsample_kernel_sizes=[15, 16, 4, 4])
    with pytest.raises(ConfigError, match="upsample_rates \\[8, 8\\] and upsample_kernel_sizes \\[16, 16, 4, 4\\]"):
        build("hifigan", upsample_rates=[8, 8])
    with pytest.raises(ConfigError, match="resblock must be \"1\" or \"2\", got '3'"):
        build("hifigan", resblock="3")
    with pytest.raises(ConfigError, match="mel.hop_length=200 must equal the product of upsample_rates \\(256\\)"):
        build("hifigan", mel={"hop_length": 200})
    ssl_vocoder = build("hifigan", in_channels=1024)
    with pytest.raises(ConfigError, match="features\\(\\) computes a 80-bin log mel but the generator reads "
                                          "in_channels=1024"):
        ssl_vocoder.features(torch.zeros(1, 2048))
    with pytest.raises(ConfigError, match="finally.wavlm: 'w2v_bert2' does not read the waveform itself"):
        build("finally", wavlm={"name": "w2v_bert2", "args": {"layer": 1, "config": {
            "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "output_hidden_size": 32,
            "conv_depthwise_kernel_size": 5}}})


def test_bad_context_is_a_data_error(one_thread):
    g = build("finally")
    seg, ctx = torch.zeros(2, 2048), torch.zeros(2, 4096)
    with pytest.raises(DataError, match="context was given without context_offset"):
        g(seg, ctx)
    with pytest.raises(DataError, match=r"offsets \[0, 3000\] do not lie inside the 4096-sample context; "
                                        r"offsets must be in \[0, 2048\]"):
        g(seg, ctx, torch.tensor([0, 3000]))
    with pytest.raises(DataError, match="expected context \\(batch, Tc\\) and context_offset \\(batch,\\)"):
        g(seg, ctx[:1], torch.tensor([0]))


@pytest.mark.slow
def test_length_multiples_are_what_the_unets_need(full_size):
    # full-size WaveUNets downsample 4x per level: 4^3 (hifi++, finally) and 4^4 (upsampler) samples
    assert full_size["a2a_hifipp"].length_multiple == 1024
    assert full_size["finally"].length_multiple == math.lcm(256, 4**3, 4**4)
