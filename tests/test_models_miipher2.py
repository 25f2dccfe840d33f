"""The Miipher-2 restorer: output length and rate, chunked vs whole-file restoration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import AudioError, ConfigError
from restorekit.models import MODELS
from restorekit.models.miipher2 import Miipher2

from test_models import EXAMPLES

SR = 16000


def _restorer(**args) -> Miipher2:
    torch.manual_seed(0)
    node = {"name": "miipher2", "args": {
        "feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
        "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}, **args}}
    return MODELS.build(node, where="models.restorer")


def _speechlike(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * noise).astype(np.float32)


@pytest.mark.parametrize(("seconds", "sr"), [(0.5, 16000), (2.3, 22050)])
def test_restore_gives_24k_audio_of_the_input_duration(seconds, sr):
    out, rate = _restorer(chunk_seconds=1.0, overlap_seconds=0.25).restore(_speechlike(seconds, sr), sr)
    assert rate == 24000 and out.dtype == np.float32
    assert out.shape == (round(int(seconds * sr) * 24000 / sr),)
    assert np.isfinite(out).all() and np.abs(out).max() > 0


def test_chunked_restore_matches_whole_file_away_from_seams_without_discontinuity():
    restorer, wave = _restorer(chunk_seconds=2.0, overlap_seconds=0.5), _speechlike(5.0)
    chunked, _ = restorer.restore(wave, SR)
    restorer.chunk_seconds = 60.0
    whole, _ = restorer.restore(wave, SR)
    seams = [int(s * 24000) for s in (1.5, 2.0, 3.0, 3.5, 4.5)]  # overlap starts and ends
    near = np.zeros(len(whole), bool)
    for s in seams:
        near[max(0, s - 2400): s + 2400] = True
    rel = np.sqrt(np.mean((chunked - whole)[~near] ** 2) / np.mean(whole[~near] ** 2))
    assert rel < 0.05
    for s in seams[:-1]:  # no step at a seam: sample-to-sample jumps as in the whole-file output
        win = slice(s - 240, s + 240)
        assert np.abs(np.diff(chunked[win])).max() < 1.2 * np.abs(np.diff(whole[win])).max()
        before, after = chunked[s - 2400: s], chunked[s: s + 2400]
        assert 0.8 < np.sqrt(np.mean(after**2) / np.mean(before**2)) < 1.25


def test_restore_is_deterministic_for_a_seed():
    wave = _speechlike(1.0)
    a, _ = _restorer(seed=3).restore(wave, SR)
    b, _ = _restorer(seed=3).restore(torch.from_numpy(wave), SR)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_and_mismatched_parts_are_user_errors():
    restorer = _restorer()
    with pytest.raises(AudioError, match=r"expected mono audio of shape \(time,\), got shape \(2, 100\)"):
        restorer.restore(np.zeros((2, 100), np.float32), SR)
    with pytest.raises(ConfigError, match="overlap_seconds \\(5\\) must be > 0 and < chunk_seconds \\(2\\)"):
        _restorer(chunk_seconds=2, overlap_seconds=5)
    with pytest.raises(ConfigError, match="set models.vocoder.args.feature_dim to match"):
        Miipher2(restorer.feature_cleaner, {"name": "wavefit", "args": {**EXAMPLES["wavefit"], "feature_dim": 8}})


def test_from_export_restores_like_the_original(tmp_path):
    from restorekit.models.export import save_export

    restorer = _restorer()
    cfg = {"models": {"feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
                      "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}}}
    save_export(tmp_path / "export", cfg, {"feature_cleaner": restorer.feature_cleaner, "vocoder": restorer.vocoder})
    wave = _speechlike(1.0)
    np.testing.assert_array_equal(Miipher2.from_export(tmp_path / "export").restore(wave, SR)[0],
                                  restorer.restore(wave, SR)[0])
