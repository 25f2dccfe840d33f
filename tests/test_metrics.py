"""Metrics: each equals its reference package, clean-vs-clean bounds, failures are recorded."""
from __future__ import annotations

import numpy as np
import pytest

from restorekit.audio import load, resample
from restorekit.errors import CheckpointError, ConfigError
from restorekit.metrics import METRICS, MetricFailure

SR = 16000
CLIP = "vbdemand_p232_002"
TRANSCRIPT = "Ask her to bring these things with her from the store."


def voiced(sr: int = SR, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a 140 Hz harmonic series, syllable-rate modulated, plus breath noise."""
    t = np.arange(int(sr * seconds)) / sr
    harmonics = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.25 * harmonics * envelope + noise).astype(np.float32)


def noisy(wave: np.ndarray, snr_db: float = 5.0, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 1, wave.size)
    noise *= np.sqrt(np.mean(wave**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return np.clip(wave + noise, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def pair(request):
    """(clean, noisy) of one real VoiceBank-DEMAND clip at 16 kHz."""
    from conftest import REAL_DATA

    if not REAL_DATA.is_dir():
        pytest.skip(f"real recordings not found at {REAL_DATA}")
    clean = load(REAL_DATA / "pairs" / "clean" / f"{CLIP}.wav")[0]
    return clean, load(REAL_DATA / "pairs" / "noisy" / f"{CLIP}.wav")[0]


@pytest.fixture(scope="module")
def built():
    """Each metric built once for the module (model loading is the slow part)."""
    cache: dict[str, object] = {}

    def get(name: str, **args):
        key = f"{name}{sorted(args.items())}"
        if key not in cache:
            cache[key] = METRICS.build({"name": name, "args": args}, where=f"metrics.{name}")
        return cache[key]

    return get


def _wvmos_args(folder) -> dict:
    """A tiny WV-MOS in its released layout, loaded by the real loading code (see tests/test_mos.py)."""
    from test_losses import _utmos_args

    args = _utmos_args(folder)
    return {"checkpoint": args["checkpoint"], "encoder": args["encoder"]}


@pytest.mark.parametrize("name", METRICS.names())
def test_every_registered_metric_builds_and_scores_small_input(name, built, tmp_path, monkeypatch):
    cls = METRICS.get(name)
    first_line = (cls.__doc__ or "").strip().splitlines()[0]
    assert "Hz" in first_line or "input rate" in first_line  # `list` shows the rate it works at
    if name == "utmos":
        with pytest.raises(CheckpointError, match="utmos: weights for .* are not available offline"):
            built(name)
        return
    if name == "utmosv2":  # released weights cannot be downloaded here (tests/test_mos.py loads tiny ones)
        monkeypatch.setenv("HOME", str(tmp_path))  # no cached weights where the package keeps them
        with pytest.raises(CheckpointError, match="utmosv2: released weights not found"):
            built(name)
        return
    args = _wvmos_args(tmp_path) if name == "wvmos" else {}
    clean = voiced()
    kwargs = {"transcript": "hello world"} if name == "wer" else {}
    values = built(name, **args)(noisy(clean), SR, clean if cls.needs_reference else None, **kwargs)
    assert list(values) == list(cls.keys)
    assert all(np.isfinite(v) for v in values.values())


@pytest.mark.real_data
@pytest.mark.parametrize("name,mode,rate", [("pesq_wb", "wb", 16000), ("pesq_nb", "nb", 8000)])
def test_pesq_equals_the_pesq_package(pair, built, name, mode, rate):
    import pesq

    clean, deg = (resample(x, SR, rate) for x in pair)
    assert built(name)(deg, rate, clean)[name] == pesq.pesq(rate, clean, deg, mode)


@pytest.mark.real_data
@pytest.mark.parametrize("name,extended", [("stoi", False), ("estoi", True)])
def test_stoi_equals_pystoi(pair, built, name, extended):
    from pystoi import stoi

    clean, deg = (resample(x, SR, 10000) for x in pair)
    assert built(name)(deg, 10000, clean)[name] == pytest.approx(stoi(clean, deg, 10000, extended=extended), abs=1e-12)


@pytest.mark.real_data
def test_dnsmos_equals_speechmos(pair, built):
    from speechmos import dnsmos

    ours = built("dnsmos")(pair[1], SR)
    ref = dnsmos.run(pair[1], SR)
    for key, theirs in [("sig", "sig_mos"), ("bak", "bak_mos"), ("ovrl", "ovrl_mos"), ("p808", "p808_mos")]:
        assert ours[f"dnsmos_{key}"] == pytest.approx(float(ref[theirs]), abs=1e-5)


@pytest.mark.real_data
def test_plcmos_equals_speechmos_with_the_same_seed(pair, built):
    from speechmos import plcmos

    np.random.seed(0)
    ref = plcmos.run(pair[1], SR)["plcmos"]
    ours = built("plcmos", seed=0)
    assert ours(pair[1], SR)["plcmos"] == pytest.approx(ref, abs=1e-5)
    assert ours(pair[1], SR) == ours(pair[1], SR)  # seeded per call: repeatable


@pytest.mark.real_data
def test_speaker_similarity_equals_resemblyzer_cosine(pair, built):
    metric = built("speaker_similarity")
    from resemblyzer import VoiceEncoder, preprocess_wav

    enc = VoiceEncoder(device="cpu", verbose=False)
    a, b = (enc.embed_utterance(preprocess_wav(x)) for x in (pair[1], pair[0]))
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert metric(pair[1], SR, pair[0])["speaker_similarity"] == pytest.approx(expected, abs=1e-6)
    assert metric(pair[0], SR, pair[0])["speaker_similarity"] == pytest.approx(1.0, abs=1e-6)


def test_si_sdr_matches_its_definition_on_a_known_mixture(built):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=SR).astype(np.float64)
    ref -= ref.mean()
    noise = rng.normal(size=SR)
    noise -= noise.mean()
    noise -= (noise @ ref) / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.sqrt((ref @ ref) / (noise @ noise) / 10)  # exactly 10 dB below
    est = (0.5 * (ref + noise)).astype(np.float32)  # scaling must not matter
    assert built("si_sdr")(est, SR, ref.astype(np.float32))["si_sdr"] == pytest.approx(10.0, abs=1e-3)


def white(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """White noise at 0.1 RMS: every STFT bin and mel band far above the metrics' log floors."""
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def low_band_doubled(wave: np.ndarray, cutoff_hz: float = 4000.0) -> np.ndarray:
    """``wave`` with every FFT component below ``cutoff_hz`` at twice its amplitude."""
    spectrum = np.fft.rfft(wave.astype(np.float64))
    spectrum[np.fft.rfftfreq(len(wave), 1 / SR) < cutoff_hz] *= 2
    return np.fft.irfft(spectrum, len(wave)).astype(np.float32)


def test_lsd_of_an_estimate_at_twice_the_amplitude_is_20_log10_2_db(built):
    """Power x4 in every bin of every frame: 10 log10(4) = 6.0206 dB whatever the averaging.

    Catches: 20 log10 of power (12.04 dB), a log spectrum of magnitudes scaled as power, a
    missing square root.
    """
    ref = white()
    assert built("lsd")(2 * ref, SR, ref)["lsd"] == pytest.approx(20 * np.log10(2), rel=1e-6)


def test_lsd_is_the_rms_over_bins_then_the_mean_over_frames(built):
    """The band below 4 kHz doubled (512 of 1025 bins at +6.02 dB, the rest at 0) in every frame:
    RMS over bins gives 6.02 * sqrt(512 / 1025) = 4.26 dB per frame, and so on average.

    Catches: the mean of |difference| over bins (3.01), averaging over frames first and then
    over bins (3.01 too: each bin is 6.02 or 0 in every frame).
    """
    ref = white()
    expected = 20 * np.log10(2) * np.sqrt(512 / 1025)
    assert built("lsd")(low_band_doubled(ref), SR, ref)["lsd"] == pytest.approx(expected, abs=0.03)


def test_mel_distance_of_an_estimate_at_twice_the_amplitude_is_log10_4(built):
    """Mel power x4 in every band and frame: |log10(4 p) - log10(p)| = 0.60206; doubled over the
    first half only: half of that, as the mean of |difference| over bands and frames.

    Catches: a natural log (1.386), mel magnitudes instead of power (0.301), squared
    differences (0.362), a log floor that reaches the signal.
    """
    ref, metric = white(), built("mel_distance")
    assert metric(2 * ref, SR, ref)["mel_distance"] == pytest.approx(np.log10(4), rel=1e-5)
    first_half = np.where(np.arange(len(ref)) < len(ref) // 2, 2.0, 1.0).astype(np.float32)
    assert metric(first_half * ref, SR, ref)["mel_distance"] == pytest.approx(np.log10(4) / 2, abs=0.005)


@pytest.mark.real_data
def test_clean_versus_clean_bounds_and_degraded_below_clean(pair, built):
    clean, deg = pair
    best = {n: built(n)(clean, SR, clean) for n in ("pesq_wb", "stoi", "si_sdr", "lsd", "mel_distance")}
    worse = {n: built(n)(deg, SR, clean) for n in best}
    assert best["pesq_wb"]["pesq_wb"] == pytest.approx(4.64, abs=0.01)
    assert best["stoi"]["stoi"] == pytest.approx(1.0, abs=1e-9)
    assert best["si_sdr"]["si_sdr"] > 100
    assert best["lsd"]["lsd"] == 0.0 and best["mel_distance"]["mel_distance"] == 0.0
    for n in ("pesq_wb", "stoi", "si_sdr"):
        assert worse[n][n] < best[n][n]
    for n in ("lsd", "mel_distance"):
        assert worse[n][n] > 0.1


def test_pesq_on_a_silent_output_is_a_recorded_failure(built):
    clean = voiced()
    with pytest.raises(MetricFailure, match="the estimate is silent; PESQ is undefined for silence"):
        built("pesq_wb")(np.zeros_like(clean), SR, clean)


def test_pesq_on_a_silent_reference_reports_the_pesq_error(built):
    clean = voiced()
    with pytest.raises(MetricFailure, match="pesq could not score this pair: No utterances detected"):
        built("pesq_wb")(clean, SR, np.zeros_like(clean))


def test_intrusive_metrics_refuse_missing_or_misaligned_references(built):
    clean = voiced()
    with pytest.raises(MetricFailure, match="needs a reference signal and got none"):
        built("stoi")(clean, SR)
    with pytest.raises(MetricFailure, match="differ in length by more than 50 ms"):
        built("si_sdr")(clean, SR, clean[: SR // 2])


@pytest.mark.parametrize(("extra_ms", "scored"), [(40, True), (50, True), (60, False)])
def test_pairs_within_50_ms_are_trimmed_to_the_common_part_and_longer_gaps_fail(built, extra_ms, scored):
    """An estimate ``extra_ms`` longer than its reference (the reference plus quiet noise at the end).

    Up to 50 ms the pair is scored on the common part, exactly as the trimmed pair; beyond, it
    is a failure saying so. Catches: no trimming (the lengths clash), a strict bound at 50 ms,
    another tolerance.
    """
    ref = voiced()
    tail = 0.01 * white(extra_ms / 1000)
    est = np.concatenate([noisy(ref, 10), tail])
    metric = built("si_sdr")
    if scored:
        assert metric(est, SR, ref) == metric(est[: len(ref)], SR, ref)
    else:
        why = (r"estimate \(1\.560 s\) and reference \(1\.500 s\) differ in length by more than 50 ms; "
               r"intrusive metrics need aligned pairs")
        with pytest.raises(MetricFailure, match=why):
            metric(est, SR, ref)


def test_a_nan_value_from_a_metric_is_a_failure_not_a_score(built, monkeypatch):
    """A metric whose computation gives NaN (or Inf) raises a MetricFailure naming the key.

    Catches: ``check_values`` letting non-finite values through (a NaN would enter the means).
    """
    from restorekit.metrics.intrusive import SiSdr

    clean = voiced()
    for bad in (float("nan"), float("inf")):
        monkeypatch.setattr(SiSdr, "score", lambda self, est, ref, sr, bad=bad: {"si_sdr": bad})
        with pytest.raises(MetricFailure, match="^SiSdr gave a non-finite value for si_sdr$"):
            built("si_sdr")(clean, SR, clean)


def test_plcmos_records_a_clipped_estimate_instead_of_scoring_it(built):
    """Samples beyond full scale are a failure that says so.

    Catches: dropping the range check (speechmos then raises a bare ValueError, recorded as an
    "unexpected" crash with no hint of clipping).
    """
    why = r"PLCMOS expects samples in \[-1, 1\]; this estimate peaks at 1\.500 \(clipped output\)"
    with pytest.raises(MetricFailure, match=why):
        built("plcmos")(1.5 * voiced() / np.abs(voiced()).max(), SR)


def test_speaker_similarity_without_speech_is_a_recorded_failure(built):
    """Quiet room noise has no speech after resemblyzer's VAD; digital silence has no voice at all.

    Both raise a MetricFailure saying which signal, and silence does so before resemblyzer
    divides by its zero level (no RuntimeWarning). Catches: embedding what the VAD left of
    noise (a similarity of noise), and handing silence to resemblyzer.
    """
    import warnings

    metric, ref = built("speaker_similarity"), voiced(seconds=2.0)
    with pytest.raises(MetricFailure, match="^the estimate has no speech left after voice-activity trimming"):
        metric(0.001 * white(2.0) / 0.1, SR, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MetricFailure, match="^the reference is silent; there is no voice to embed$"):
            metric(ref, SR, np.zeros_like(ref))


def test_dnsmos_records_a_clipped_estimate_instead_of_scoring_it(built):
    with pytest.raises(MetricFailure, match=r"DNSMOS expects samples in \[-1, 1\]; this estimate peaks at 2.000"):
        built("dnsmos")(2 * voiced() / np.abs(voiced()).max(), SR)


def test_metric_resamples_to_its_own_rate(built):
    clean = voiced()
    at_48k = [resample(x, SR, 48000) for x in (noisy(clean), clean)]
    assert built("pesq_wb")(*at_48k[:1], 48000, at_48k[1])["pesq_wb"] == pytest.approx(
        built("pesq_wb")(noisy(clean), SR, clean)["pesq_wb"], abs=0.05
    )


def test_wer_without_a_transcript_is_a_recorded_failure(built):
    with pytest.raises(MetricFailure, match="no reference transcript for this file"):
        built("wer")(voiced(), SR)


@pytest.mark.real_data
def test_wer_pocketsphinx_transcribes_a_real_clip(pair, built):
    wer = built("wer")
    assert wer(pair[0], SR, transcript=TRANSCRIPT)["wer"] <= 0.2
    assert wer(np.zeros(SR, np.float32) + 1e-4, SR, transcript=TRANSCRIPT)["wer"] >= 0.8


def test_wer_whisper_without_weights_says_how_to_get_them():
    with pytest.raises(CheckpointError, match="wer: Whisper weights 'openai/whisper-tiny.en' are not available"):
        METRICS.build({"name": "wer", "args": {"backend": "whisper"}}, where="metrics.0")


def test_wer_unknown_backend_lists_the_choices():
    with pytest.raises(ConfigError, match="wer: unknown backend 'vosk'; choose one of pocketsphinx, whisper"):
        METRICS.build({"name": "wer", "args": {"backend": "vosk"}}, where="metrics.0")


@pytest.mark.parametrize("name", ["dnsmos", "plcmos"])
def test_full_scale_is_judged_on_the_audio_given_not_on_the_resampled_copy(built, name):
    """A 48 kHz file within full scale whose 16 kHz resampling overshoots must be scored (issue 12:
    DNSMOS refused an unprocessed file at peak 0.99997 as "clipped"). Catches the range check
    moved back after resampling."""
    rng = np.random.default_rng(3)
    wave = np.sign(rng.standard_normal(48000 * 3)).astype(np.float32) * 0.99997  # broadband, at full scale
    assert np.abs(resample(wave, 48000, 16000)).max() > 1.0  # the overshoot the check must not see
    values = built(name)(wave, 48000)
    assert all(1.0 <= v <= 5.0 for v in values.values()), values


def test_utmos_says_its_hub_code_needs_torchaudio_not_that_weights_are_missing(tmp_path):
    """A cached or local SpeechMOS clone whose code imports torchaudio (absent here): the message
    names the missing package, not the weights."""
    from restorekit.metrics.nonintrusive import load_utmos

    (tmp_path / "hubconf.py").write_text("import torchaudio_not_here_either as torchaudio\n\n"
                                         "def utmos22_strong():\n    return None\n")
    with pytest.raises(ConfigError, match="utmos: .* imports torchaudio_not_here_either, which is not installed"):
        load_utmos(str(tmp_path), "utmos22_strong", "local")
