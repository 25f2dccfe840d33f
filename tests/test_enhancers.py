"""Enhancers: every registered one builds, and returns finite audio aligned with its input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from restorekit.enhancers import ENHANCERS
from restorekit.enhancers.base import fit_length, process_frames
from restorekit.enhancers.chunking import chunk_bounds, enhance_in_chunks, match_level
from restorekit.errors import AudioError, ConfigError


def speech_like(sr: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Voiced syllables: a gliding pulse train through two formant resonators, 4 Hz envelope, light noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 1.5 * t)
    pulses = (np.diff(np.floor(np.cumsum(f0) / sr), prepend=0) > 0).astype(np.float64)
    voiced = pulses
    for formant, bw in ((700, 130), (1200, 150)):
        b, a = signal.iirpeak(formant, formant / bw, fs=sr)
        voiced = voiced + signal.lfilter(b, a, pulses)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    wave = envelope * voiced / np.max(np.abs(voiced)) + 0.01 * rng.standard_normal(len(t))
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def xcorr_lag(estimate: np.ndarray, reference: np.ndarray) -> int:
    """Lag (samples) of the cross-correlation peak; positive means the estimate is late."""
    c = signal.correlate(estimate, reference, mode="full", method="fft")
    return int(np.argmax(c)) - (len(reference) - 1)


# WebRTC's built-in high-pass filter shifts the correlation peak by a signal-dependent fraction
# of a 16 kHz sample (it is compensated for real speech, checked exactly on real recordings).
LAG_TOLERANCE_16K = {"webrtc_ns": 1}


def allowed_lag(name: str, sr: int) -> int:
    return int(np.ceil(LAG_TOLERANCE_16K.get(name, 0) * sr / 16_000))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init Miipher-2 export (tiny encoder and vocoder), made the way trainers make one."""
    import torch

    from restorekit.models import MODELS
    from restorekit.models.export import save_export
    from test_models import EXAMPLES

    torch.manual_seed(0)
    models = {
        "feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
        "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]},
    }
    modules = {role: MODELS.build(node, where=f"models.{role}") for role, node in models.items()}
    return save_export(tmp_path_factory.mktemp("run") / "export", {"models": models}, modules)


def build(name: str, export: Path):
    args = {"path": str(export), "chunk_seconds": 2.0, "overlap_seconds": 0.1} if name == "restorekit" else {}
    if name == "mimi_resynthesis":  # a tiny random Mimi beside the export (no download)
        from test_augmentations import tiny_mimi_folder

        args = {"model": str(tiny_mimi_folder(export.parent / "mimi")), "n_q": 2}
    return ENHANCERS.build({"name": name, "args": args}, where=f"enhancers.{name}")


@pytest.mark.parametrize("name", ENHANCERS.names())
def test_every_enhancer_returns_aligned_same_length_finite_audio(name: str, tiny_export: Path) -> None:
    enhancer = build(name, tiny_export)
    sr = 16_000
    wave = speech_like(sr)
    out, out_sr = enhancer(wave, sr)
    out_sr_expected = enhancer.sample_rate or sr
    assert out_sr == out_sr_expected
    assert out.dtype == np.float32 and out.shape == (len(wave) * out_sr // sr,)
    assert np.isfinite(out).all()
    assert np.abs(out).max() > 1e-3, f"{name} returned silence for voiced input"
    if name not in ("restorekit", "mimi_resynthesis"):  # a random-init model's output says nothing about delay
        assert abs(xcorr_lag(out, wave)) <= allowed_lag(name, sr)


def test_restorekit_enhancer_restores_like_its_export_and_checks_the_path(tiny_export: Path, tmp_path: Path) -> None:
    from restorekit.errors import CheckpointError
    from restorekit.models.miipher2 import Miipher2

    enhancer = ENHANCERS.build({"name": "restorekit", "args": {"path": str(tiny_export), "chunk_seconds": 0.5, "overlap_seconds": 0.1}}, where="e")
    wave = speech_like(22_050, seconds=0.8)  # longer than a chunk: the restorer chunks itself
    out, sr = enhancer(wave, 22_050)
    expected, _ = Miipher2.from_export(tiny_export, chunk_seconds=0.5, overlap_seconds=0.1).restore(wave, 22_050)
    assert sr == 24_000 and out.shape == (round(len(wave) * 24_000 / 22_050),)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(CheckpointError, match="not a restorekit export \\(no config.yaml\\)"):
        ENHANCERS.build({"name": "restorekit", "args": {"path": str(tmp_path)}}, where="e")


def test_inference_with_an_export_writes_24k_outputs(tiny_export: Path, tmp_path: Path) -> None:
    from restorekit.inference import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "x.wav", speech_like(16_000, 0.6), 16_000)
    out = tmp_path / "out"
    assert main([f"exp.ckpt_dir={tiny_export}", "exp.device=cpu", f"input={inputs}", f"output_dir={out}"]) == 0
    info = sf.info(out / "x.wav")
    assert info.samplerate == 24_000 and info.frames == round(0.6 * 24_000)


@pytest.mark.parametrize("name", ["deepfilternet3", "rnnoise", "webrtc_ns"])
@pytest.mark.parametrize("sr", [8_000, 44_100])
def test_fixed_rate_baselines_handle_other_rates(name: str, sr: int) -> None:
    enhancer = ENHANCERS.build({"name": name}, where="e")
    wave = speech_like(sr, seconds=0.5)
    out, out_sr = enhancer(wave, sr)
    assert out_sr == sr and out.shape == wave.shape
    assert abs(xcorr_lag(out, wave)) <= allowed_lag(name, sr)


def test_identity_returns_a_copy_of_the_input() -> None:
    wave = speech_like(8_000, 0.2)
    out, sr = ENHANCERS.build({"name": "identity"}, where="e")(wave, 8_000)
    np.testing.assert_array_equal(out, wave)
    out[0] = 9.0
    assert wave[0] != 9.0


def test_enhancer_rejects_stereo_empty_and_nan_input() -> None:
    enhancer = ENHANCERS.build({"name": "identity"}, where="e")
    with pytest.raises(AudioError, match=r"expects mono audio of shape \(time,\), got shape \(2, 100\)"):
        enhancer(np.zeros((2, 100), np.float32), 16_000)
    with pytest.raises(AudioError, match="got an empty wave"):
        enhancer(np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioError, match="contains 1 NaN/Inf samples"):
        enhancer(np.array([0.0, np.nan, 0.0], np.float32), 16_000)


def test_baseline_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="webrtc_ns: level must be 0-4"):
        ENHANCERS.build({"name": "webrtc_ns", "args": {"level": 7}}, where="e")
    with pytest.raises(ConfigError, match=r"prop_decrease must lie in \[0, 1\]"):
        ENHANCERS.build({"name": "spectral_gating", "args": {"prop_decrease": 2}}, where="e")
    with pytest.raises(ConfigError, match="has no argument 'atten'"):
        ENHANCERS.build({"name": "deepfilternet3", "args": {"atten": 3}}, where="e")


def test_process_frames_removes_a_known_delay() -> None:
    # A processor that delays by exactly 3 samples: the helper must undo that exactly.
    history = np.zeros(3)

    def delayed(frame: np.ndarray) -> np.ndarray:
        nonlocal history
        joined = np.concatenate([history, frame])
        history = joined[-3:]
        return joined[: len(frame)]

    wave = np.arange(1, 23, dtype=np.float64)
    np.testing.assert_array_equal(process_frames(wave, 5, 3, delayed), wave)
    assert len(fit_length(np.ones(4, np.float32), 6)) == 6


@pytest.mark.real_data
def test_deepfilternet3_cleans_real_noisy_speech_and_stays_aligned(real_data: Path) -> None:
    noisy_path = real_data / "pairs" / "noisy" / "vbdemand_p232_003.wav"
    noisy, sr = sf.read(noisy_path, dtype="float32")
    noisy = noisy[: 3 * sr]
    clean, _ = sf.read(real_data / "pairs" / "clean" / noisy_path.name, dtype="float32")
    clean = clean[: 3 * sr]
    out, out_sr = ENHANCERS.build({"name": "deepfilternet3"}, where="e")(noisy, sr)
    assert out_sr == sr and out.shape == noisy.shape
    assert xcorr_lag(out, noisy) == 0
    residual_before = np.mean((noisy - clean) ** 2)
    residual_after = np.mean((out - clean) ** 2)
    assert residual_after < 0.5 * residual_before  # at least 3 dB closer to the clean take


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["rnnoise", "webrtc_ns", "spectral_gating"])
def test_baselines_stay_aligned_on_real_speech(real_data: Path, name: str) -> None:
    noisy, sr = sf.read(real_data / "pairs" / "noisy" / "vbdemand_p232_006.wav", dtype="float32")
    noisy = noisy[: 2 * sr]
    out, _ = ENHANCERS.build({"name": name}, where="e")(noisy, sr)
    assert out.shape == noisy.shape
    assert xcorr_lag(out, noisy) == 0


def test_chunk_bounds_cover_the_input_with_the_overlap() -> None:
    bounds = chunk_bounds(25, 1, chunk_seconds=10, overlap_seconds=2)
    assert bounds == [(0, 10), (8, 18), (16, 25)]
    assert chunk_bounds(7, 1, 10, 2) == [(0, 7)]
    with pytest.raises(ConfigError, match="overlap_seconds <= chunk_seconds / 2"):
        chunk_bounds(100, 1, chunk_seconds=4, overlap_seconds=3)


def test_chunked_identity_reproduces_the_input_exactly() -> None:
    identity = ENHANCERS.build({"name": "identity"}, where="e")
    wave = speech_like(8_000, seconds=5.3)
    out, sr = enhance_in_chunks(identity, wave, 8_000, chunk_seconds=1.0, overlap_seconds=0.25)
    assert sr == 8_000
    np.testing.assert_allclose(out, wave, atol=1e-6)


def test_chunking_matches_levels_and_follows_the_output_rate() -> None:
    # A "model" that normalises each chunk to a different loudness and doubles the rate:
    # level matching must remove the steps, and the output must last as long as the input.
    calls = iter([1.0, 0.6, 1.5, 0.8, 1.2, 0.7])

    def louder_and_upsampled(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        return np.repeat(wave * next(calls), 2), 2 * sr

    wave = np.full(8_000 * 3, 0.1, dtype=np.float32)
    out, sr = enhance_in_chunks(louder_and_upsampled, wave, 8_000, chunk_seconds=1.0, overlap_seconds=0.2)
    assert sr == 16_000 and len(out) == 2 * len(wave)
    np.testing.assert_allclose(out, 0.1, rtol=1e-5)  # every chunk matched to the first's level
    assert match_level(np.full(10, 0.1), np.full(10, 1.0)) == pytest.approx(10 ** (-6 / 20))
    assert match_level(np.zeros(10), np.full(10, 1.0)) == 1.0
