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
        grad = torch.autograd.grad(outs[k].square().sum(), outs[k - 1], retain_graph=True,
                                   allow_unused=True)[0]
        assert grad is None or not grad.any(), f"output {k} backpropagates into output {k - 1}"
    params = [feats, vocoder.power_head.weight, vocoder.ublocks[0].c1.weight]
    grads = torch.autograd.grad(outs[-1].square().mean(), params)
    assert all(g.abs().sum() > 0 for g in grads)


def _formula_weights(model: torch.nn.Module) -> None:
    """Fill every tensor from a fixed formula, so outputs depend on the code, not on the RNG's init."""
    def formula(n: int, i: int) -> torch.Tensor:
        return (0.05 * torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + i)).float()

    sd = model.state_dict()
    model.load_state_dict({k: formula(v.numel(), i).view(v.shape) for i, (k, v) in enumerate(sd.items())})


@pytest.mark.parametrize(("memory_efficient", "n_keys", "keys_sha", "abs_sum", "head"), [
    (False, 104, "0eade315eddad86c", 8751.6494, [-0.125971839, 1.294138908, -0.490603864]),
    (True, 96, "d136a943a4858c1b", 8834.7285, [0.122297101, 1.555199027, -0.247601181]),
])
def test_prenet_off_keeps_the_state_dict_and_outputs_of_earlier_versions(memory_efficient, n_keys, keys_sha,
                                                                          abs_sum, head):
    """Old exports must load and sound the same: the key/shape list and the output for fixed weights,
    features and noise were recorded with the code before feature_interpolation and prenet existed."""
    import hashlib

    vocoder = _wavefit(memory_efficient=memory_efficient)
    keys = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in vocoder.state_dict().items())
    assert len(vocoder.state_dict()) == n_keys and hashlib.sha256(keys.encode()).hexdigest()[:16] == keys_sha
    _formula_weights(vocoder)
    feats = torch.sin(torch.arange(2 * 10 * 16, dtype=torch.float64) * 0.11).float().view(2, 10, 16)
    noise = torch.sin(torch.arange(2 * 4800, dtype=torch.float64) * 1.7).float().view(2, 4800)
    out = vocoder.infer(feats, noise)
    assert out.abs().sum().item() == pytest.approx(abs_sum, rel=1e-5)
    torch.testing.assert_close(out[0, :3], torch.tensor(head), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_explicit_default_interpolation_equals_memory_efficients_choice(memory_efficient):
    mode = "repeat" if memory_efficient else "transposed_conv"
    implicit = _wavefit(memory_efficient=memory_efficient)
    explicit = _wavefit(memory_efficient=memory_efficient, feature_interpolation=mode)
    assert implicit.state_dict().keys() == explicit.state_dict().keys()
    explicit.load_state_dict(implicit.state_dict())
    feats, noise = torch.randn(1, 6, 16), torch.randn(1, 6 * 480)
    torch.testing.assert_close(explicit.infer(feats, noise), implicit.infer(feats, noise))


def test_linear_interpolation_equals_torch_linear_interpolate():
    vocoder = _wavefit(memory_efficient=True, feature_interpolation="linear")
    assert not hasattr(vocoder, "pre_up")
    c = torch.randn(2, 16, 7)
    expected = torch.nn.functional.interpolate(c, scale_factor=4, mode="linear", align_corners=False)
    torch.testing.assert_close(vocoder.interpolate(c), expected)
    feats = torch.randn(2, 7, 16)
    torch.testing.assert_close(vocoder.condition(feats), torch.nn.functional.interpolate(
        vocoder.cond_in(feats.transpose(1, 2)), scale_factor=4, mode="linear", align_corners=False))


PRENET = {"layers": 2, "dim": 32, "heads": 4, "ffn_dim": 48, "kernel_size": 5}


def _conformer_params(d: int, f: int, k: int) -> int:
    """Closed form per block: two FFNs (LN + 2 linears: 2df + f + 3d each), MHSA (LN + in/out
    projections: 4d^2 + 6d), conv module (2 LNs, pointwise d->2d, depthwise k, pointwise d->d:
    3d^2 + dk + 8d), final LN (2d)."""
    return 2 * (2 * d * f + f + 3 * d) + (4 * d * d + 6 * d) + (3 * d * d + d * k + 8 * d) + 2 * d


def test_prenet_parameter_count_matches_the_closed_form():
    vocoder = _wavefit(prenet=PRENET)
    expected = 16 * 32 + 32 + 2 * _conformer_params(32, 48, 5)  # input projection 16 -> 32, then 2 blocks
    assert sum(p.numel() for p in vocoder.prenet.parameters()) == expected == 29_088
    assert vocoder.cond_in.in_channels == 32  # the conditioning conv reads the pre-net's width
    no_proj = _wavefit(prenet={"layers": 1, "ffn_dim": 64, "heads": 2, "kernel_size": 3})
    assert sum(p.numel() for p in no_proj.prenet.parameters()) == _conformer_params(16, 64, 3)


@pytest.mark.parametrize("position", ["after_interpolation", "before_interpolation"])
@pytest.mark.parametrize("interpolation", ["repeat", "linear", "transposed_conv"])
def test_prenet_outputs_have_the_vocoder_shapes_and_gradients(position, interpolation):
    vocoder = _wavefit(prenet={**PRENET, "position": position}, feature_interpolation=interpolation,
                       cond_channels=24)
    feats = torch.randn(2, 10, 16, requires_grad=True)
    assert vocoder.condition(feats).shape == (2, 24, 40)
    outs = vocoder(feats)
    assert len(outs) == 3 and all(o.shape == (2, 4800) for o in outs)
    outs[-1].square().mean().backward()
    assert vocoder.prenet.blocks[0].attn.in_proj_weight.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0
    if interpolation == "transposed_conv":  # it upsamples the features (16) when the pre-net runs after it
        assert vocoder.pre_up.in_channels == (16 if position == "after_interpolation" else 24)


def test_prenet_runs_at_the_rate_its_position_names():
    seen = []
    for position in ("after_interpolation", "before_interpolation"):
        vocoder = _wavefit(prenet={**PRENET, "position": position}, feature_interpolation="linear")
        vocoder.prenet.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
        vocoder.condition(torch.randn(1, 10, 16))
    assert seen == [40, 10]  # frames at feature_rate * pre_upsample, then at feature_rate


def test_bad_prenet_and_interpolation_options_are_config_errors():
    options = r"\('repeat', 'linear', 'transposed_conv'\)"
    with pytest.raises(ConfigError, match=rf"feature_interpolation 'cubic' is unknown; use one of {options}"):
        _wavefit(feature_interpolation="cubic")
    with pytest.raises(ConfigError, match=r"prenet has unknown key\(s\) \['depth'\]; accepted keys: \["):
        _wavefit(prenet={"depth": 2})
    with pytest.raises(ConfigError, match=r"prenet.layers is -1; use 0 \(no pre-net\) or a positive count"):
        _wavefit(prenet={"layers": -1})
    with pytest.raises(ConfigError, match="prenet.dim 30 is not divisible by prenet.heads 4"):
        _wavefit(prenet={**PRENET, "dim": 30})
    with pytest.raises(ConfigError, match="prenet.kernel_size 4 must be odd"):
        _wavefit(prenet={**PRENET, "kernel_size": 4})
    with pytest.raises(ConfigError, match="prenet.position 'middle' is unknown"):
        _wavefit(prenet={**PRENET, "position": "middle"})
