"""WaveFit vocoder: output shapes and rates, gain adjustment, the memory-efficient variant."""
from __future__ import annotations

import pytest
import torch

from restorekit.errors import ConfigError
from restorekit.models import MODELS

TINY = {"feature_dim": 16, "iterations": 3, "cond_channels": 16, "upsample_channels": [16, 16, 8, 8],
        "downsample_channels": [4, 8, 8, 16]}


def _wavefit(**args):
    torch.manual_seed(0)
    return MODELS.build({"name": "wavefit", "args": {**TINY, **args}}, where="models.vocoder")


@pytest.mark.parametrize("seconds", [1.0, 7.3, 30.0])
def test_output_shape_and_rate_for_1_7_3_and_30_seconds(seconds):
    vocoder = _wavefit(iterations=1, memory_efficient=True)
    frames = round(seconds * 50)
    out = vocoder.infer(torch.randn(1, frames, 16))
    assert vocoder.sample_rate == 24000
    assert out.shape == (1, round(seconds * 24000))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("noise", ["white", "shaped"])
def test_forward_returns_all_iterations_with_gradient(memory_efficient, noise):
    vocoder = _wavefit(memory_efficient=memory_efficient, initial_noise=noise)
    feats = torch.randn(2, 10, 16, requires_grad=True)
    outs = vocoder(feats)
    assert len(outs) == 3 and all(o.shape == (2, 4800) for o in outs)
    outs[-1].square().mean().backward()
    assert feats.grad.abs().sum() > 0 and vocoder.ublocks[0].c1.weight.grad.abs().sum() > 0


def test_every_iteration_output_has_the_power_predicted_from_the_features():
    vocoder = _wavefit()
    feats = torch.randn(2, 10, 16)
    power = vocoder.target_power(feats)
    for out in vocoder(feats):
        torch.testing.assert_close(out.square().mean(dim=1, keepdim=True), power, rtol=1e-4, atol=0)


def test_gain_step_scales_by_square_root_of_the_power_ratio():
    vocoder = _wavefit()
    z = torch.tensor([[1.0, -1.0, 1.0, -1.0]])  # power 1
    out = vocoder.gain(z, torch.tensor([[4.0]]))
    torch.testing.assert_close(out, 2 * z)


def test_memory_efficient_variant_repeats_frames_and_drops_full_rate_film():
    vocoder = _wavefit(memory_efficient=True)
    assert not hasattr(vocoder, "pre_up")
    assert isinstance(vocoder.films[0], torch.nn.Identity)  # the full-rate (longest) FiLM
    assert all(f.shift_only for f in list(vocoder.films)[1:])
    cond = vocoder.condition(torch.randn(1, 3, 16))
    torch.testing.assert_close(cond[..., 0::4], cond[..., 3::4])  # each frame repeated 4 times
    assert sum(p.numel() for p in vocoder.parameters()) < sum(p.numel() for p in _wavefit().parameters())


def test_rate_mismatch_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match=r"= 20000 Hz, but sample_rate is 24000 Hz; change the factors so their product is 480"):
        _wavefit(upsample_factors=[5, 5, 2, 2])
    with pytest.raises(ConfigError, match="initial_noise 'pink' is unknown"):
        _wavefit(initial_noise="pink")
    with pytest.raises(ConfigError, match=r"expected features \(batch, frames, 16\)"):
        _wavefit().infer(torch.randn(1, 5, 8))


@pytest.mark.parametrize("noise", ["white", "shaped"])
def test_each_iteration_trains_only_its_own_pass(noise):
    """Iteration k's loss gives no gradient through iteration k-1's output (y is detached between
    iterations, as in WaveFit-pytorch and Open-Miipher-2); the features, the power head and the
    shared generator still get gradient from every iteration. Failed before the fix: the gradient of
    output k w.r.t. output k-1 was non-zero (backpropagation through all iterations)."""
    vocoder = _wavefit(initial_noise=noise)
    feats = torch.randn(2, 10, 16, requires_grad=True)
    outs = vocoder(feats)
    for k in range(1, len(outs)):
        grad = torch.autograd.grad(outs[k].square().sum(), outs[k - 1], retain_graph=True, allow_unused=True)[0]
        assert grad is None or not grad.any(), f"iteration {k}'s output depends on iteration {k - 1}'s through autograd"
    params = [feats, vocoder.power_head.weight, vocoder.ublocks[0].c1.weight]
    grads = torch.autograd.grad(outs[-1].square().mean(), params)
    assert all(g.abs().sum() > 0 for g in grads)
