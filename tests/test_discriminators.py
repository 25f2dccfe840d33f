"""Discriminator architecture: the MSD layer table against HiFi-GAN's DiscriminatorS."""
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
