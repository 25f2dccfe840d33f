"""The shared log-mel front end (restorekit.mel.LogMel) against librosa, its framing and its dtype."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import AudioError, ConfigError
from restorekit.mel import LogMel

SR = 16000


def librosa_log_mel(y: np.ndarray, center: bool, pad: int = 0, fmax: float | None = None) -> np.ndarray:
    """The reference from librosa: Hann STFT, magnitude sqrt(|X|² + 1e-9), Slaney mel filters,
    natural log floored at 1e-5 (librosa.feature.melspectrogram with power 1, plus the epsilon)."""
    import librosa

    if pad:
        y = np.pad(y, pad, mode="reflect")
    spec = librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=center,
                        pad_mode="reflect")
    mag = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    mel = librosa.feature.melspectrogram(S=mag, sr=SR, n_fft=1024, power=1.0, n_mels=80, fmax=fmax)
    return np.log(np.maximum(mel, 1e-5))


@pytest.fixture
def speech(real_data) -> np.ndarray:
    import soundfile as sf

    y, sr = sf.read(real_data / "pairs" / "clean" / "vbdemand_p232_002.wav", dtype="float32")
    assert sr == SR
    return y[: 2 * SR]


@pytest.mark.real_data
@pytest.mark.parametrize("center,pad,fmax", [(True, None, None), (False, 384, 8000.0)])
def test_log_mel_matches_librosa_on_real_speech(speech, center, pad, fmax):
    """Both framings against librosa on a real 16 kHz recording: the same frames, values to 1e-3
    (float32 STFTs of different libraries; mag_eps 1e-9 only moves silent bins)."""
    mel = LogMel(SR, center=center, pad=pad, fmax=fmax)
    ours = mel(torch.from_numpy(speech)[None])[0].numpy()
    ref = librosa_log_mel(speech, center, pad or 0, fmax)
    assert ours.shape == ref.shape == (80, mel.frames(len(speech)))
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("n", [8192, 8000, 1025, 12345])
def test_frames_count_for_both_framings(n):
    centred, hifigan = LogMel(SR), LogMel(SR, center=False, pad=384)
    wave = torch.randn(2, n)
    assert centred(wave).shape == (2, 80, centred.frames(n)) and centred.frames(n) == 1 + n // 256
    assert hifigan(wave).shape == (2, 80, hifigan.frames(n)) and hifigan.frames(n) == n // 256
    if n % 256 == 0:  # HiFi-GAN framing: frame j pairs with samples [256 j, 256 (j + 1))
        assert hifigan.frames(n) * 256 == n


def test_computed_in_float32_under_bf16_autocast():
    mel = LogMel(SR, n_mels=40)
    wave = 0.1 * torch.randn(2, 4096)
    reference = mel(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = mel(wave)
        from_bf16 = mel(wave.bfloat16())
    assert under.dtype == from_bf16.dtype == torch.float32
    torch.testing.assert_close(under, reference)
    # bf16 input keeps only its own precision (8 bits of mantissa), not a bf16 STFT's
    torch.testing.assert_close(from_bf16, mel(wave.bfloat16().float()))


def test_log_floor_and_magnitude_epsilon_apply():
    silent = LogMel(SR, log_floor=1e-3)(torch.zeros(1, 4096))
    assert torch.all(silent == np.float32(np.log(1e-3)))
    # sqrt(re² + im² + eps): even digital silence has magnitude sqrt(eps) in every bin
    tiny = LogMel(SR, mag_eps=1.0, log_floor=1e-12)(torch.zeros(1, 4096))
    mel_sums = torch.from_numpy(__import__("librosa").filters.mel(sr=SR, n_fft=1024, n_mels=80).sum(1))
    torch.testing.assert_close(tiny[0, :, 3], mel_sums.log().float())


def test_user_mistakes_say_what_to_fix():
    with pytest.raises(ConfigError, match="pad=384 must be >= 0 and is for center=false framing"):
        LogMel(SR, pad=384)
    with pytest.raises(ConfigError, match="win_length=2048 is longer than n_fft=1024"):
        LogMel(SR, win_length=2048)
    with pytest.raises(AudioError, match="300 samples are too short for the 384-sample reflect pad"):
        LogMel(SR, center=False, pad=384)(torch.zeros(1, 300))
    with pytest.raises(AudioError, match="expected audio of shape \\(batch, time\\), got \\(4096,\\)"):
        LogMel(SR)(torch.zeros(4096))


def test_mel_l1_loss_uses_the_shared_front_end():
    """mel_l1 keeps its arguments and equals mean |LogMel(estimate) - LogMel(reference)| (centred framing)."""
    from restorekit.losses import LOSSES

    args = {"sample_rate": SR, "n_fft": 512, "hop_length": 128, "n_mels": 40, "fmax": 7000.0}
    loss = LOSSES.build({"name": "mel_l1", "args": args}, "losses.mel_l1")
    # a silent second half: its bins sit on the 1e-5 floor, which mel_l1 keeps
    est = torch.cat([0.1 * torch.randn(2, 2000), torch.zeros(2, 2000)], 1)
    ref = 0.1 * torch.randn(2, 4000)
    mel = LogMel(SR, n_fft=512, hop_length=128, n_mels=40, fmax=7000.0)
    torch.testing.assert_close(loss(est, ref), (mel(est) - mel(ref)).abs().mean())


def test_power_two_is_librosas_power_mel_and_bad_power_is_an_error():
    """power 2 (the mel_distance metric's) filters |X|^2 exactly as librosa.feature.melspectrogram does."""
    import librosa
    import numpy as np
    import pytest
    import torch

    from restorekit.errors import ConfigError
    from restorekit.mel import LogMel

    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    ref = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=1024, hop_length=256, n_mels=80, pad_mode="reflect")
    ours = LogMel(16000, power=2.0, mag_eps=0.0)(torch.from_numpy(wave)[None])[0].numpy()
    np.testing.assert_allclose(ours, np.log(np.maximum(ref, 1e-5)), atol=1e-4)
    with pytest.raises(ConfigError, match="log mel: power must be 1 .* or 2"):
        LogMel(16000, power=3.0)
