"""FINALLY-family losses: LMOS and the mean/sum reduction of the GAN and feature-matching losses."""
from __future__ import annotations

import pytest
import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES
from tests.test_losses import TINY_WAVLM


def _lmos(**args):
    torch.manual_seed(0)
    node = {"name": "lmos", "args": {"pretrained": None, "config": TINY_WAVLM, **args}}
    return LOSSES.build(node, where="losses[0]")


def test_lmos_is_zero_on_identical_inputs_and_positive_otherwise():
    loss = _lmos()
    x = 0.1 * torch.randn(2, 8192, generator=torch.Generator().manual_seed(1))
    assert loss(x, x).item() == 0.0
    assert loss(x + 0.01 * torch.randn_like(x), x).item() > 0


def test_lmos_wavlm_part_has_gradients_and_wavlm_stays_frozen():
    loss = _lmos()
    ref = 0.1 * torch.randn(1, 8192, generator=torch.Generator().manual_seed(2))
    est = (ref + 0.05 * torch.randn_like(ref)).requires_grad_(True)
    feats = loss.features(est)
    target = loss.features(ref)
    (feats - target).square().mean().backward()  # the WavLM part alone
    assert est.grad is not None and est.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_lmos_combines_weighted_features_and_stft_magnitude():
    loss = _lmos(feature_weight=100.0)
    g = torch.Generator().manual_seed(3)
    ref, est = 0.1 * torch.randn(2, 8192, generator=g), 0.1 * torch.randn(2, 8192, generator=g)
    from restorekit.losses.spectral import stft_magnitude

    feat = (loss.features(est) - loss.features(ref)).square().mean()
    mag = (stft_magnitude(est, 1024, 256, 1024) - stft_magnitude(ref, 1024, 256, 1024)).abs().mean()
    assert loss(est, ref).item() == pytest.approx(100 * feat.item() + mag.item(), rel=1e-5)
    # phi is WavLM's conv encoder + projection norm: 512-d in WavLM Large, conv_dim[-1] here, at 50 Hz
    assert loss.features(ref).shape == (2, loss.encoder.num_frames(8192, 16000), TINY_WAVLM["conv_dim"][-1])
    assert loss.encoder.num_frames(8192, 16000) == 25


def test_lmos_resamples_48k_audio_before_wavlm():
    loss16, loss48 = _lmos(), _lmos(sample_rate=48000)
    x16 = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(4))
    import julius

    x48 = julius.resample_frac(x16, 16000, 48000)
    f16, f48 = loss16.features(x16), loss48.features(x48)
    assert f48.shape == f16.shape  # 48 kHz audio is brought to WavLM's 16 kHz, not fed as is (a fw bug)


def test_lmos_without_weights_or_config_is_a_config_error():
    with pytest.raises(ConfigError, match="lmos: set pretrained"):
        LOSSES.build({"name": "lmos", "args": {"pretrained": None}}, where="losses[0]")


@pytest.mark.parametrize("name", ["lsgan", "hinge_gan"])
def test_gan_loss_sum_reduction_adds_discriminators_mean_averages_them(name):
    g = torch.Generator().manual_seed(5)
    fake = [torch.randn(2, 7, generator=g), torch.randn(2, 3, generator=g), torch.randn(2, 5, generator=g)]
    real = [torch.randn(2, 7, generator=g), torch.randn(2, 3, generator=g), torch.randn(2, 5, generator=g)]
    mean = LOSSES.build({"name": name}, where="l")
    summed = LOSSES.build({"name": name, "args": {"reduction": "sum"}}, where="l")
    per = torch.stack([mean.generator([f]) for f in fake])
    assert summed.generator(fake).item() == pytest.approx(per.sum().item(), rel=1e-6)
    assert mean.generator(fake).item() == pytest.approx(per.mean().item(), rel=1e-6)
    assert summed.discriminator(real, fake).item() == pytest.approx(3 * mean.discriminator(real, fake).item(), rel=1e-6)


def test_feature_matching_sum_reduction_adds_every_map():
    g = torch.Generator().manual_seed(6)
    est = [[torch.randn(2, 4, 9, generator=g), torch.randn(2, 8, 3, generator=g)], [torch.randn(2, 2, 5, generator=g)]]
    ref = [[torch.randn(2, 4, 9, generator=g), torch.randn(2, 8, 3, generator=g)], [torch.randn(2, 2, 5, generator=g)]]
    maps = [(e - r).abs().mean() for es, rs in zip(est, ref) for e, r in zip(es, rs)]
    summed = LOSSES.build({"name": "feature_matching", "args": {"reduction": "sum"}}, where="l")
    mean = LOSSES.build({"name": "feature_matching"}, where="l")
    assert summed(est, ref).item() == pytest.approx(sum(m.item() for m in maps), rel=1e-6)
    assert mean(est, ref).item() == pytest.approx(sum(m.item() for m in maps) / 3, rel=1e-6)


@pytest.mark.parametrize("name", ["lsgan", "hinge_gan", "feature_matching"])
def test_unknown_reduction_is_a_config_error(name):
    with pytest.raises(ConfigError, match="reduction 'max' is not supported; use one of \\('mean', 'sum'\\)"):
        LOSSES.build({"name": name, "args": {"reduction": "max"}}, where="l")
