"""Losses against hand-computed values on small tensors, argument order, config weights."""
from __future__ import annotations

import math

import pytest
import torch

from restorekit.errors import ConfigError
from restorekit.losses import LOSSES, build_losses

TINY_WAVLM = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "num_buckets": 8}
EXAMPLE_ARGS = {
    "mel_l1": {"sample_rate": 16000, "n_fft": 256, "hop_length": 64, "n_mels": 20},
    "multi_resolution_stft": {"fft_sizes": [128, 256], "hop_sizes": [32, 64], "win_lengths": [128, 256]},
    "lmos": {"pretrained": None, "config": TINY_WAVLM, "n_fft": 256, "hop_length": 64},
}


def _example_inputs(name: str) -> tuple:
    g = torch.Generator().manual_seed(0)
    if name in ("hinge_gan", "lsgan"):
        return [torch.randn(2, 1, 7, generator=g), torch.randn(2, 5, generator=g)], None
    if name == "feature_matching":
        maps = lambda: [[torch.randn(2, 4, 9, generator=g, requires_grad=True)]]  # noqa: E731
        return maps(), maps()
    if name == "miipher_feature_loss":
        return torch.randn(2, 6, 8, generator=g, requires_grad=True), torch.randn(2, 6, 8, generator=g)
    if name == "semantic_distillation":  # projected codec frames (12.5 Hz) vs teacher features (50 Hz)
        return torch.randn(2, 5, 8, generator=g, requires_grad=True), torch.randn(2, 20, 8, generator=g)
    if name == "commitment":  # the codec's scalar term
        return torch.rand((), generator=g).requires_grad_(True), None
    return torch.randn(2, 2048, generator=g, requires_grad=True), torch.randn(2, 2048, generator=g)


def _utmos_args(folder) -> dict:
    """A tiny WV-MOS in its released layout (see tests/test_mos.py): utmos_loss needs real weights."""
    from tests.test_mos import WvMos, legacy_weight_norm, save_encoder, tiny_config

    torch.manual_seed(0)
    state = {f"model.{k}": v for k, v in legacy_weight_norm(WvMos(tiny_config()).state_dict()).items()}
    torch.save({"state_dict": state}, folder / "wav2vec2.ckpt")
    return {"predictor": "wvmos", "checkpoint": str(folder / "wav2vec2.ckpt"), "encoder": save_encoder(folder / "enc")}


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_builds_and_gives_a_differentiable_scalar(name, tmp_path):
    args = _utmos_args(tmp_path) if name == "utmos_loss" else EXAMPLE_ARGS.get(name, {})
    loss = LOSSES.build({"name": name, "args": args}, where=f"losses.{name}")
    estimate, reference = _example_inputs(name)
    value = loss(estimate, reference)
    assert value.ndim == 0 and torch.isfinite(value)
    leaf = estimate[0] if isinstance(estimate, list) else estimate
    leaf = leaf[0] if isinstance(leaf, list) else leaf
    if leaf.requires_grad:
        value.backward()
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_miipher_feature_loss_matches_hand_computed_value():
    est = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    ref = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])
    # diff = [0, 2, 0, 4]: L1 mean 1.5, L2 mean 5.0, SC = sqrt(20) / sqrt(10)
    expected = 1.5 + 5.0 + math.sqrt(2.0)
    assert LOSSES.build({"name": "miipher_feature_loss"}, "l")(est, ref).item() == pytest.approx(expected)
    summed = LOSSES.build({"name": "miipher_feature_loss", "args": {"reduction": "sum"}}, "l")(est, ref)
    assert summed.item() == pytest.approx(6.0 + 20.0 + math.sqrt(2.0))


def test_miipher_feature_loss_squared_sc_is_the_miipher_papers_form():
    """||S - S^||_1 / (K D) + ||S - S^||_2^2 / (K D) + ||S - S^||_2^2 / ||S||_2^2, MAE counted once."""
    est = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    ref = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])
    # diff = [0, 2, 0, 4]: L1 mean 1.5, L2 mean 5.0, squared SC = 20 / 10
    node = {"name": "miipher_feature_loss", "args": {"spectral_convergence": "squared"}}
    assert LOSSES.build(node, "l")(est, ref).item() == pytest.approx(1.5 + 5.0 + 2.0)
    with pytest.raises(ConfigError, match="spectral_convergence 'cubed' is not supported; use one of"):
        LOSSES.build({"name": "miipher_feature_loss", "args": {"spectral_convergence": "cubed"}}, "l")


def test_miipher_feature_loss_is_zero_for_identical_features_and_rejects_bad_reduction():
    x = torch.randn(2, 5, 3)
    assert LOSSES.build({"name": "miipher_feature_loss"}, "l")(x, x).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ConfigError, match="reduction 'max' is not supported; use one of"):
        LOSSES.build({"name": "miipher_feature_loss", "args": {"reduction": "max"}}, "l")


def test_spectral_convergence_is_not_symmetric_so_order_matters():
    loss = LOSSES.build({"name": "miipher_feature_loss"}, "l")
    est, ref = torch.full((1, 1, 2), 2.0), torch.full((1, 1, 2), 1.0)
    # L1 1 + L2 1 + SC: |ref-est|/|ref| = 1 (estimate first) vs 0.5 swapped
    assert loss(est, ref).item() == pytest.approx(3.0)
    assert loss(ref, est).item() == pytest.approx(2.5)


def test_multi_resolution_stft_of_scaled_signal_matches_hand_computed_value():
    loss = LOSSES.build({"name": "multi_resolution_stft", "args": EXAMPLE_ARGS["multi_resolution_stft"]}, "l")
    ref = torch.randn(1, 4096, generator=torch.Generator().manual_seed(1))
    # estimate = 2 * ref: SC = |ref - 2ref| / |ref| = 1 and |log 2|ref| - log|ref|| = log 2 per bin
    # (exact wherever |ref| is above the 1e-7 floor, i.e. everywhere for noise)
    assert loss(2 * ref, ref).item() == pytest.approx(1.0 + math.log(2.0), rel=1e-4)
    assert loss(ref, ref).item() == pytest.approx(0.0, abs=1e-6)


def test_mel_l1_of_scaled_signal_is_log_of_the_scale():
    loss = LOSSES.build({"name": "mel_l1", "args": EXAMPLE_ARGS["mel_l1"]}, "l")
    ref = torch.randn(1, 4096, generator=torch.Generator().manual_seed(2))
    assert loss(3 * ref, ref).item() == pytest.approx(math.log(3.0), rel=1e-4)


def test_hinge_and_lsgan_match_hand_computed_values():
    real, fake = [torch.tensor([2.0, 0.5])], [torch.tensor([-0.5, 0.5])]
    hinge, ls = LOSSES.build({"name": "hinge_gan"}, "l"), LOSSES.build({"name": "lsgan"}, "l")
    assert hinge.generator(fake).item() == pytest.approx(0.0)  # mean(0.5, -0.5)
    assert hinge(fake).item() == pytest.approx(0.0)
    # relu(1-real) = [0, 0.5] -> 0.25; relu(1+fake) = [0.5, 1.5] -> 1.0
    assert hinge.discriminator(real, fake).item() == pytest.approx(1.25)
    assert ls.generator(fake).item() == pytest.approx((2.25 + 0.25) / 2)
    # (1-real)^2 = [1, 0.25] -> 0.625; fake^2 = [0.25, 0.25] -> 0.25
    assert ls.discriminator(real, fake).item() == pytest.approx(0.875)


def test_feature_matching_matches_hand_computed_value_and_detaches_reference():
    est = [[torch.zeros(1, 2), torch.ones(1, 3)], [torch.zeros(1, 1)]]
    ref = [[torch.ones(1, 2, requires_grad=True), torch.ones(1, 3)], [torch.full((1, 1), 4.0)]]
    value = LOSSES.build({"name": "feature_matching"}, "l")(est, ref)
    assert value.item() == pytest.approx((1.0 + 0.0 + 4.0) / 3)
    assert not value.requires_grad  # nothing flows into the reference maps


def test_build_losses_reads_weights_and_injects_sample_rate():
    losses = build_losses(
        [{"name": "mel_l1", "weight": 45, "args": {"n_fft": 256, "hop_length": 64, "n_mels": 20}},
         {"name": "miipher_feature_loss", "weight": 0}],
        where="losses.vocoder", sample_rate=16000,
    )
    assert [(w.name, w.weight) for w in losses] == [("mel_l1", 45.0), ("miipher_feature_loss", 0.0)]
    with pytest.raises(ConfigError, match=r"losses.vocoder\[0\].weight must be a number >= 0"):
        build_losses([{"name": "lsgan", "weight": -1}], where="losses.vocoder")
