"""The Miipher-2 restorer: output length and rate, chunked vs whole-file restoration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import AudioError, ConfigError
from restorekit.models import MODELS
from restorekit.models.miipher2 import Miipher2, _merge
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


def _scale_pieces(monkeypatch, factors: dict[int, float]) -> None:
    """Patch ``Miipher2._render_pieces`` so the piece starting at output sample k comes out x ``factors[k]``.

    A random model's chunks already agree in level; scaling them is how a seam gets stressed.
    """
    render = Miipher2._render_pieces

    def scaled(self, pieces, sr):
        return [y * np.float32(factors.get(start, 1.0)) for y, (_, start, _) in zip(render(self, pieces, sr), pieces)]

    monkeypatch.setattr(Miipher2, "_render_pieces", scaled)


def _rms_ratio(a: np.ndarray, b: np.ndarray, start_s: float, end_s: float) -> float:
    win = slice(int(start_s * 24000), int(end_s * 24000))
    return float(np.sqrt(np.mean(a[win] ** 2) / np.mean(b[win] ** 2)))


def test_chunked_restore_matches_each_chunk_to_the_level_before_it_within_x2(monkeypatch):
    """Chunks that come out at x0.6 and x0.1 are level-matched to their predecessor, within x2.

    5 s in 2 s chunks overlapping 0.5 s: chunks start at 0, 1.5, 3 and 4.5 s. The second comes
    out at 0.6 of the whole-file level and is matched back to it; the third at 0.1, which would
    need x10, so it is raised by the clamp's x2 only and stays at 0.2. Catches: a ``_merge`` that
    hard-cuts chunks with no level match (0.6 and 0.1 stay), one without the clamp (0.1 is
    raised all the way to 1), and a clamp at another factor.
    """
    restorer = _restorer(chunk_seconds=2.0, overlap_seconds=0.5, output_peak=None, silence_dbfs=None)
    wave = _speechlike(5.0)
    whole, _ = restorer.restore(wave, SR)
    _scale_pieces(monkeypatch, {36_000: 0.6, 72_000: 0.1, 108_000: 0.1})
    chunked, _ = restorer.restore(wave, SR)
    assert _rms_ratio(chunked, whole, 0.1, 1.4) == pytest.approx(1.0, abs=1e-6)  # chunk 1 sets the level
    assert _rms_ratio(chunked, whole, 2.1, 2.9) == pytest.approx(1.0, abs=0.01)  # x0.6 matched back
    assert _rms_ratio(chunked, whole, 3.6, 4.4) == pytest.approx(0.2, abs=0.02)  # x0.1 raised by x2 only
    mid = slice(int(2.1 * 24000), int(2.9 * 24000))
    rel = np.sqrt(np.mean((chunked[mid] - whole[mid]) ** 2) / np.mean(whole[mid] ** 2))
    assert rel < 0.01  # level-matched, the chunk is the whole-file output, not just its level


def _two_pieces(first: np.ndarray, second: np.ndarray, start: int) -> tuple[np.ndarray, int]:
    out = np.zeros(start + len(second), np.float32)
    written = _merge(out, first, 0, 0)
    return out, _merge(out, second, start, written)


@pytest.mark.parametrize(("in_overlap", "after", "expected_after"), [
    (0.25, 0.4, 0.8),  # x2, measured over the overlap only (the level after it is the new piece's own)
    (0.05, 0.05, 0.1),  # would need x10: clamped to x2
    (5.0, 5.0, 2.5),  # would need x0.1: clamped to x0.5
])
def test_merge_matches_the_new_piece_to_the_previous_level_over_the_overlap_within_x2(
    in_overlap, after, expected_after
):
    """A sine at 0.5, then the same sine (phase-continuous) at another level from 600 on (overlap 400).

    Catches: no level match; a gain measured over the whole new piece instead of the overlap
    (case 1 then misses 0.8); no clamp, a one-sided clamp, or a clamp at another factor.
    """
    sine = np.sin(2 * np.pi * np.arange(1600) / 100).astype(np.float32)
    second = sine[600:] * np.where(np.arange(1000) < 400, in_overlap, after).astype(np.float32)
    out, end = _two_pieces(0.5 * sine[:1000], second, 600)
    assert end == 1600
    np.testing.assert_allclose(out[:600], 0.5 * sine[:600], atol=1e-6)
    np.testing.assert_allclose(out[1000:], expected_after * sine[1000:], rtol=1e-5, atol=1e-6)
    if in_overlap == 0.25:  # matched exactly: the overlap is the previous piece, no dip, no bump
        np.testing.assert_allclose(out[600:1000], 0.5 * sine[600:1000], atol=1e-6)


def test_merge_cross_fades_with_a_raised_cosine():
    """+1 then -1 at equal level (gain 1): over the 200-sample overlap 1 - 2 * fade = cos(pi (i + 0.5) / 200).

    Catches: a hard cut, a linear fade, a fade the wrong way round, an overlap off by a sample.
    """
    out, end = _two_pieces(np.ones(600, np.float32), -np.ones(600, np.float32), 400)
    assert end == 1000
    np.testing.assert_array_equal(out[:400], 1.0)
    np.testing.assert_allclose(out[400:600], np.cos(np.pi * (np.arange(200) + 0.5) / 200), atol=1e-6)
    np.testing.assert_array_equal(out[600:], -1.0)


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
