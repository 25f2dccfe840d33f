"""Discriminator architecture: the MSD layer table against HiFi-GAN's DiscriminatorS, the MS-STFT
one against EnCodec's DiscriminatorSTFT."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.parametrizations import _SpectralNorm, _WeightNorm

from restorekit.errors import ConfigError
from restorekit.models import MODELS

# jik876/hifi-gan models.py DiscriminatorS: (in, out, kernel, stride, groups, padding), then the post conv.
HIFIGAN_MSD = [(1, 128, 15, 1, 1, 7), (128, 128, 41, 2, 4, 20), (128, 256, 41, 2, 16, 20),
               (256, 512, 41, 4, 16, 20), (512, 1024, 41, 4, 16, 20), (1024, 1024, 41, 1, 16, 20),
               (1024, 1024, 5, 1, 1, 2)]
HIFIGAN_POST = (1024, 1, 3, 1, 1, 1)


def _row(conv: torch.nn.Conv1d) -> tuple[int, ...]:
    c = conv
    return c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.groups, c.padding[0]


def _norm(conv: torch.nn.Conv1d) -> type:
    return type(conv.parametrizations.weight[0])


def test_msd_default_builds_hifigans_layer_table_and_norms():
    """Failed before the fix: strides were [1, 4, 4, 4, 4, 4, 1] (1024x downsampling), groups 16
    everywhere, and every scale used weight norm."""
    msd = MODELS.build({"name": "msd"}, where="models.discriminators")
    assert len(msd.discriminators) == 3
    for i, d in enumerate(msd.discriminators):
        assert [_row(c) for c in d.layers] == HIFIGAN_MSD
        assert _row(d.post) == HIFIGAN_POST
        expected = _SpectralNorm if i == 0 else _WeightNorm  # HiFi-GAN: spectral norm on the raw-rate scale
        assert all(_norm(c) is expected for c in [*d.layers, d.post]), f"scale {i}"


def test_msd_downsamples_64x_and_pools_each_later_scale_by_2():
    small = {"channels": [8, 8, 16, 16, 32, 32, 32], "groups": [1, 2, 4, 4, 4, 4, 1]}
    msd = MODELS.build({"name": "msd", "args": small}, where="models.discriminators")
    logits, maps = msd(torch.randn(1, 6400))
    # stride product 1*2*2*4*4*1*1 = 64; scales see 6400, 3201, 1601 samples (AvgPool1d(4, 2, padding=2))
    assert [lg.shape[-1] for lg in logits] == [100, 51, 26]
    assert [len(m) for m in maps] == [8, 8, 8]


def test_msd_table_mismatch_is_a_config_error():
    lengths = r"msd: channels \(3\), kernel_sizes \(7\), strides \(7\) and groups \(7\) must have one entry"
    with pytest.raises(ConfigError, match=lengths):
        MODELS.build({"name": "msd", "args": {"channels": [8, 16, 16]}}, where="models.discriminators")
    groups = r"msd: layer 1 has groups 4, which must divide its in \(8\) and out \(6\) channels"
    with pytest.raises(ConfigError, match=groups):
        MODELS.build({"name": "msd", "args": {"channels": [8, 6, 16, 16, 32, 32, 32]}}, where="models.msd")


# EnCodec (audiocraft msstftd.py) DiscriminatorSTFT with filters=32, filters_scale=1, kernel (3, 9),
# dilations (1, 2, 4), stride (1, 2): (in, out, kernel, stride, dilation, padding) per conv, then the post conv.
ENCODEC_STFT = [(2, 32, (3, 9), (1, 1), (1, 1), (1, 4)), (32, 32, (3, 9), (1, 2), (1, 1), (1, 4)),
                (32, 32, (3, 9), (1, 2), (2, 1), (2, 4)), (32, 32, (3, 9), (1, 2), (4, 1), (4, 4)),
                (32, 32, (3, 3), (1, 1), (1, 1), (1, 1))]
ENCODEC_STFT_POST = (32, 1, (3, 3), (1, 1), (1, 1), (1, 1))


def _row2d(conv: torch.nn.Conv2d) -> tuple:
    return conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.dilation, conv.padding


def test_ms_stft_default_builds_encodecs_layer_table_with_weight_norm():
    """Mutation caught: the dilated convs' padding (dil, 4) -> (1, 4) (their time axis then shrinks)."""
    disc = MODELS.build({"name": "ms_stft"}, where="models.discriminators")
    assert [d.n_fft for d in disc.discriminators] == [2048, 1024, 512]
    for d in disc.discriminators:
        assert d.hop == d.n_fft // 4
        assert [_row2d(c) for c in d.layers] == ENCODEC_STFT
        assert _row2d(d.post) == ENCODEC_STFT_POST
        assert all(_norm(c) is _WeightNorm for c in [*d.layers, d.post])


def test_ms_stft_reads_real_and_imaginary_stft_as_time_by_frequency_images():
    """The first conv of each scale sees (B, 2, frames, bins): the real and imaginary parts of a
    Hann-window STFT with hop n_fft / 4. Mutations caught: the image transposed to (bins, frames),
    and the hop set to n_fft / 2."""
    disc = MODELS.build({"name": "ms_stft", "args": {"fft_sizes": [256, 128], "channels": 8}},
                        where="models.discriminators")
    wave = torch.randn(2, 4000) * 0.1
    seen = []
    for d in disc.discriminators:
        d.layers[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    logits, maps = disc(wave)
    for n_fft, image in zip((256, 128), seen, strict=True):
        spec = torch.stft(wave, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)
        assert image.shape == (2, 2, 4000 // (n_fft // 4) + 1, n_fft // 2 + 1)
        torch.testing.assert_close(image[:, 0], spec.real.transpose(1, 2))
        torch.testing.assert_close(image[:, 1], spec.imag.transpose(1, 2))
    assert len(logits) == len(maps) == 2 and all(len(m) == len(ENCODEC_STFT) + 1 for m in maps)


def test_msd_same_scale_feeds_every_scale_the_raw_audio():
    """HiFi++'s MSD: no pooling between scales. Mutation caught: pooling kept under same_scale."""
    small = {"channels": [8, 8, 16, 16, 32, 32, 32], "groups": [1, 2, 4, 4, 4, 4, 1], "same_scale": True}
    msd = MODELS.build({"name": "msd", "args": small}, where="models.discriminators")
    seen = []
    for d in msd.discriminators:
        d.layers[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    wave = torch.randn(2, 6400)
    logits, _ = msd(wave)
    assert [lg.shape[-1] for lg in logits] == [100, 100, 100]
    for image in seen:
        torch.testing.assert_close(image[:, 0], wave)


def test_ms_stft_encodec_options_normalise_uncentred_stft_and_keep_activation_maps():
    """EnCodec's options: STFT divided by the Hann window's L2 norm, center=False, LeakyReLU 0.2, and
    feature maps of the five activations without the output. Mutations caught: torch.stft's own
    normalisation (1/sqrt(n_fft)) instead of the window norm; center left on; slope 0.1."""
    args = {"fft_sizes": [256], "channels": 8, "normalized": True, "center": False, "negative_slope": 0.2,
            "post_in_maps": False}
    disc = MODELS.build({"name": "ms_stft", "args": args}, where="models.discriminators")
    d = disc.discriminators[0]
    seen, acts = [], []
    d.layers[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    d.layers[0].register_forward_hook(lambda m, a, out: acts.append(out))
    wave = torch.randn(1, 4000) * 0.1
    logits, maps = disc(wave)
    window = torch.hann_window(256)
    spec = torch.stft(wave, 256, 64, window=window, center=False, return_complex=True) / window.square().sum().sqrt()
    assert seen[0].shape == (1, 2, (4000 - 256) // 64 + 1, 129)
    torch.testing.assert_close(seen[0][:, 0], spec.real.transpose(1, 2))
    assert len(maps[0]) == 5 and maps[0][-1].shape[1] == 8  # activations only: no 1-channel output map
    torch.testing.assert_close(maps[0][0], torch.nn.functional.leaky_relu(acts[0], 0.2))


@pytest.mark.parametrize(("rate", "sizes"), [(16000, [2048, 1024, 512, 256, 128]), (48000, [4096, 2048, 1024, 512, 256])])
def test_ms_stft_picks_encodecs_scales_per_rate(rate, sizes):
    disc = MODELS.build({"name": "ms_stft", "args": {"fft_sizes": None, "sample_rate": rate, "channels": 4}},
                        where="models.discriminators")
    assert disc.fft_sizes == sizes


def test_ms_stft_without_sizes_or_rate_is_a_config_error():
    with pytest.raises(ConfigError, match="ms_stft: fft_sizes is null, so sample_rate must be set"):
        MODELS.build({"name": "ms_stft", "args": {"fft_sizes": None}}, where="models.discriminators")
