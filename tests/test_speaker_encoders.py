"""Speaker encoders: one contract (wave at any rate -> unit-norm (B, dim)), frozen, padding-blind."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import ConfigError
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
