from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from restorekit import audio
from restorekit.errors import AudioError

# (extension, soundfile format, subtype, tolerance of the round trip)
CODECS = [
    (".wav", "WAV", "PCM_16", 1e-3),
    (".flac", "FLAC", "PCM_16", 1e-3),
    (".ogg", "OGG", "VORBIS", None),
    (".mp3", "MP3", "MPEG_LAYER_III", None),
]


def lossy_close(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two signals over their common length (lossy codecs shift and smear)."""
    n = min(len(a), len(b))
    xc = np.correlate(a[:n], b[:n], mode="full")
    return float(xc.max() / (np.linalg.norm(a[:n]) * np.linalg.norm(b[:n]) + 1e-12))


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("ext,fmt,subtype,tol", CODECS, ids=[c[0] for c in CODECS])
def test_round_trip_with_stereo_downmix(tmp_path, sr, ext, fmt, subtype, tol):
    left, right = tone(sr, 1.0, 440, 0.4), tone(sr, 1.0, 440, 0.2)
    path = tmp_path / f"x{ext}"
    sf.write(path, np.stack([left, right], axis=1), sr, format=fmt, subtype=subtype)
    wave, got_sr = audio.load(path)
    assert got_sr == sr and wave.dtype == np.float32 and wave.ndim == 1
    expected = (left + right) / 2
    if tol is not None:
        assert len(wave) == len(expected)
        np.testing.assert_allclose(wave, expected, atol=tol)
    else:  # lossy: same tone, similar level, close in length
        assert abs(len(wave) - len(expected)) < 0.1 * sr
        assert lossy_close(wave, expected) > 0.9
        assert abs(audio.rms_db(wave) - audio.rms_db(expected)) < 1.5


@pytest.mark.parametrize("src,dst", [(8000, 24000), (44100, 16000), (48000, 24000), (16000, 16000)])
def test_load_resamples_to_requested_rate(tmp_path, src, dst):
    path = tmp_path / "x.wav"
    sf.write(path, tone(src, 2.0, 300), src)
    wave, got_sr = audio.load(path, sr=dst)
    assert got_sr == dst and abs(len(wave) - 2 * dst) <= 1
    # the 300 Hz tone survives: spectral peak within one bin
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * dst / len(wave) - 300) < 1.0


def test_load_segment_by_offset_and_duration(tmp_path):
    sr = 16000
    ramp = np.linspace(-0.5, 0.5, 3 * sr, dtype=np.float32)
    sf.write(tmp_path / "r.wav", ramp, sr, subtype="FLOAT")
    seg, _ = audio.load(tmp_path / "r.wav", offset=1.0, duration=0.5)
    np.testing.assert_array_equal(seg, ramp[sr : sr + sr // 2])


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found; check the path"):
        audio.load(tmp_path / "nope.wav")


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"bad\.wav: cannot be decoded as audio \(.*\); expected a WAV, FLAC"):
        audio.load(bad)


def test_zero_length_file(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: contains no samples; remove it or re-export it"):
        audio.load(tmp_path / "empty.wav")


def test_nan_and_inf_samples(tmp_path):
    x = tone(16000, 0.1)
    x[100] = np.nan
    x[200] = np.inf
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains 2 NaN/Inf samples \(first at sample 100\)"):
        audio.load(tmp_path / "nan.wav")


@pytest.mark.parametrize("sr", [0, -16000, 999, 500_000, 16000.5, "16k"])
def test_unsupported_requested_rate(tmp_path, sr):
    sf.write(tmp_path / "x.wav", tone(16000, 0.1), 16000)
    with pytest.raises(AudioError, match=r"(unsupported requested sample rate|must be a whole number of Hz)"):
        audio.load(tmp_path / "x.wav", sr=sr)


def test_file_at_unsupported_rate(tmp_path):
    sf.write(tmp_path / "slow.wav", np.zeros(100, dtype=np.float32), 500)
    with pytest.raises(AudioError, match=r"unsupported sample rate of .*slow\.wav 500 Hz"):
        audio.load(tmp_path / "slow.wav")


def test_save_is_atomic_refuses_overwrite_and_round_trips(tmp_path):
    x = tone(24000, 0.5)
    out = audio.save(tmp_path / "sub" / "y.flac", x, 24000)
    back, sr = audio.load(out)
    assert sr == 24000 and np.max(np.abs(back - x)) < 1e-3
    before = out.read_bytes()
    with pytest.raises(AudioError, match=r"y\.flac: already exists; not overwriting it"):
        audio.save(out, np.zeros_like(x), 24000)
    assert out.read_bytes() == before
    audio.save(out, np.zeros_like(x), 24000, overwrite=True)
    assert audio.peak(audio.load(out)[0]) == 0.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["y.flac"]
    with pytest.raises(AudioError, match=r"cannot write '\.mp3' files; use \.wav or \.flac"):
        audio.save(tmp_path / "z.mp3", x, 24000)
    with pytest.raises(AudioError, match=r"NaN/Inf"):
        audio.save(tmp_path / "n.wav", np.full(10, np.nan, dtype=np.float32), 24000)


def _failing_writer(error: BaseException):
    """A stand-in for soundfile.write that leaves half a file at the path it is given, then raises."""

    def write(file, data, samplerate, **kwargs):
        Path(file).write_bytes(b"RIFF\x00\x00half a wave file")
        raise error

    return write


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupted"])
def test_a_write_that_fails_keeps_the_previous_file_and_leaves_no_partial_one(tmp_path, monkeypatch, error):
    """A failing (or interrupted) rewrite of y.wav leaves the old y.wav byte for byte and no temporary.

    A file-system error is an AudioError naming the file and the cause; an interrupt passes
    through. Catches: writing to the final name directly (the old file is left half-written), a
    temporary left behind, and an OSError escaping as a bare traceback.
    """
    out = audio.save(tmp_path / "y.wav", tone(16000, 0.25), 16000)
    before = out.read_bytes()
    monkeypatch.setattr(audio.sf, "write", _failing_writer(error))
    if isinstance(error, OSError):
        with pytest.raises(AudioError, match=r"y\.wav: could not be written \(\[Errno 28\] No space left on device\); "
                                             "check the free space and write permission there"):
            audio.save(out, np.zeros(100, np.float32), 16000, overwrite=True)
    else:
        with pytest.raises(KeyboardInterrupt):
            audio.save(out, np.zeros(100, np.float32), 16000, overwrite=True)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["y.wav"]


def test_levels():
    x = tone(16000, 1.0, amp=0.5)
    assert audio.peak(x) == pytest.approx(0.5, abs=1e-4)
    assert audio.rms_db(x) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
    assert audio.peak(audio.peak_normalize(x, -6.0)) == pytest.approx(10 ** (-6 / 20), abs=1e-4)
    assert audio.rms_db(np.zeros(10)) == -120.0
    y = audio.loudness_normalize(tone(16000, 2.0, 1000, 0.1), 16000, -20.0)
    assert audio.loudness(y, 16000) == pytest.approx(-20.0, abs=0.05)
    with pytest.raises(AudioError, match="at least 0.4 s"):
        audio.loudness(x[:1000], 16000)
