"""Batched restoration: a file restored in a batch with others (mixed lengths, chunks of long files
batched together) comes out as it does alone, in input order, with its own level policy; WaveFit's
masked batch and channels-last inference equal its plain forward pass; the ``restorekit`` enhancer's
``enhance_batch`` equals one call per recording.

Tolerance: 1e-4 absolute on outputs that peak at 0.9 (measured: ~1e-6, float rounding of
differently shaped convolutions)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.enhancers.export import RestorekitExport
from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.models.export import save_export
from restorekit.models.miipher2 import Miipher2
from restorekit.models.wave_restorer import WaveRestorer
from restorekit.models.wavefit import WaveFit
from test_models import EXAMPLES, TINY_WAV

TOL = 1e-4
SR = 16000


def _wave(seconds: float, sr: int = SR, seed: int = 0, gain: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (gain * np.sin(2 * np.pi * (150 + 40 * seed) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.1 * gain * noise).astype(np.float32)


def _miipher2(encoder: dict | None = None, **args) -> Miipher2:
    torch.manual_seed(0)
    cleaner = {**EXAMPLES["parallel_adapter_cleaner"], **({"encoder": encoder} if encoder else {})}
    node = {"name": "miipher2", "args": {
        "feature_cleaner": {"name": "parallel_adapter_cleaner", "args": cleaner},
        "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}, **args}}
    return MODELS.build(node, where="models.restorer")


def _assert_same(batched, singles) -> None:
    assert len(batched) == len(singles)
    for (out, rate), (ref, ref_rate) in zip(batched, singles):
        assert rate == ref_rate and out.dtype == np.float32 and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=TOL, rtol=0)


# 0.2 s, 0.4 s and 0.3 s fit in a 0.5 s chunk; 1.1 s is three chunks; a batch of 3 mixes them.
MIXED = [0.2, 1.1, 0.4, 0.3]
CHUNK = {"chunk_seconds": 0.5, "overlap_seconds": 0.1}


def test_miipher2_batch_equals_each_file_alone_for_mixed_lengths_and_chunks(one_thread, monkeypatch):
    restorer = _miipher2(**CHUNK)
    waves = [_wave(s, seed=i) for i, s in enumerate(MIXED)]
    singles = [restorer.restore(w, SR) for w in waves]
    calls = []
    infer_batch = restorer.vocoder.infer_batch
    monkeypatch.setattr(restorer.vocoder, "infer_batch",
                        lambda feats, noises: calls.append([f.shape[0] for f in feats]) or infer_batch(feats, noises))
    batched = restorer.restore_batch(waves, SR, batch_size=3)
    _assert_same(batched, singles)
    # really batched, with padding: 6 pieces in batches of at most 3, some of unequal length
    assert sum(map(len, calls)) == 6 and max(map(len, calls)) == 3
    assert any(len(set(c)) > 1 for c in calls)
    # input order kept: each output is its own file's (the files differ)
    assert np.abs(batched[0][0] - singles[3][0][: len(batched[0][0])]).max() > 10 * TOL


def test_miipher2_batch_at_another_rate_with_a_layer_norm_waveform_encoder(one_thread):
    """HuBERT-Large-style encoder (layer-norm feature extractor: masked exactly) at 22.05 kHz."""
    hubert = {"name": "hubert", "args": {"layer": 2, "config": {
        **TINY_WAV, "feat_extract_norm": "layer", "do_stable_layer_norm": True}}}
    restorer = _miipher2(encoder=hubert)
    waves = [_wave(s, sr=22050, seed=i) for i, s in enumerate([0.3, 0.51, 0.4])]
    _assert_same(restorer.restore_batch(waves, 22050), [restorer.restore(w, 22050) for w in waves])


def test_level_policy_applies_per_file_in_a_batch(one_thread):
    restorer = _miipher2()
    loud, quiet, silent = _wave(0.4, gain=0.5), _wave(0.3, seed=1, gain=0.005), np.zeros(4000, np.float32)
    batched = restorer.restore_batch([loud, quiet, silent], SR)
    assert np.abs(batched[0][0]).max() == pytest.approx(0.9, abs=1e-6)
    assert np.abs(batched[1][0]).max() == pytest.approx(0.9, abs=1e-6)  # -46 dB in, same peak out
    assert not batched[2][0].any()  # digital silence in, silence out
    _assert_same(batched, [restorer.restore(w, SR) for w in (loud, quiet, silent)])


def test_wavefit_masked_batch_and_fast_layout_equal_the_plain_forward(one_thread):
    torch.manual_seed(0)
    vocoder = WaveFit(**{**EXAMPLES["wavefit"], "initial_noise": "shaped", "feature_interpolation": "linear"}).eval()
    frames = [7, 13, 10]
    feats = [torch.randn(n, 32) for n in frames]
    noises = [torch.randn(n * vocoder.hop) for n in frames]
    plain = [vocoder.forward(f[None], n[None])[-1][0] for f, n in zip(feats, noises)]
    fast = [vocoder.infer(f[None], n[None])[0] for f, n in zip(feats, noises)]
    for got in (fast, vocoder.infer_batch(feats, noises)):
        for a, b, n in zip(got, plain, frames):
            assert a.shape == (n * vocoder.hop,)
            torch.testing.assert_close(a, b, atol=TOL * float(b.detach().abs().max()), rtol=0)


def test_wave_restorer_batches_equal_length_pieces_and_equals_each_file_alone(one_thread, monkeypatch):
    torch.manual_seed(0)
    restorer = WaveRestorer({"name": "a2a_hifipp", "args": EXAMPLES["a2a_hifipp"]}, chunk_seconds=0.25,
                            overlap_seconds=0.05)
    waves = [_wave(0.65, seed=0), _wave(0.2, seed=1), _wave(0.65, seed=2)]
    singles = [restorer.restore(w, SR) for w in waves]
    lengths = []
    render = restorer._render_batch
    monkeypatch.setattr(restorer, "_render_batch",
                        lambda pieces, sr: lengths.append([len(p) for p, _, _ in pieces]) or render(pieces, sr))
    _assert_same(restorer.restore_batch(waves, SR, batch_size=4), singles)
    assert all(len(set(batch)) == 1 for batch in lengths)  # no padding: one length per batch
    assert max(map(len, lengths)) == 4  # 6 chunks of 0.25 s from the two long files, 4 at a time


def test_enhancer_enhance_batch_equals_one_call_per_recording(tmp_path, one_thread):
    torch.manual_seed(0)
    models = {"feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
              "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}}
    cfg = {"exp": {"name": "tiny"}, "models": models, "trainer": {"name": "miipher2_vocoder_finetune", "args": {}}}
    mods = {role: MODELS.build(node, where=f"models.{role}") for role, node in models.items()}
    enhancer = RestorekitExport(str(save_export(tmp_path / "export", cfg, mods)), batch_size=2, **CHUNK)
    items = [(_wave(0.4), SR), (_wave(0.8, sr=22050, seed=1), 22050), (_wave(0.25, seed=2), SR)]
    batched = enhancer.enhance_batch(items)
    singles = [enhancer(w, sr) for w, sr in items]
    _assert_same(batched, singles)
    assert [len(out) for out, _ in batched] == [9600, round(len(items[1][0]) * 24000 / 22050), 6000]


def test_precision_and_batch_size_are_checked():
    with pytest.raises(ConfigError, match=r"miipher2: precision 'fp16' is unknown; use one of \('bf16', 'fp32'\)"):
        _miipher2(precision="fp16")
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        _miipher2().restore_batch([_wave(0.2)], SR, batch_size=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_batch_matches_fp32_alone():
    """On CUDA, bf16 autocast (the default there) stays close to fp32, batched or not."""
    restorer = _miipher2(**CHUNK).to("cuda")
    waves = [_wave(s, seed=i) for i, s in enumerate(MIXED)]
    bf16 = restorer.restore_batch(waves, SR, batch_size=3)
    restorer.precision = "fp32"
    fp32 = [restorer.restore(w, SR) for w in waves]
    for (a, _), (b, _) in zip(bf16, fp32):
        assert a.shape == b.shape and np.isfinite(a).all()
        # bf16 keeps 8 bits of mantissa: compare levels, not samples
        assert np.sqrt(np.mean((a - b) ** 2)) < 0.1 * np.sqrt(np.mean(b ** 2)) + 1e-3
