"""FINALLY degradations: crystalizer, flanger, vibrato, bitcrush wet mix, IR peak normalisation,
bandwidth-extension pairs, the audiomentations / pedalboard adapters and the finally.yaml chain."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import sample_rng
from restorekit.augmentations.preview import build_chain
from restorekit.errors import ConfigError
from test_augmentations import speechlike, write_noise_dir, write_rir_dir

SR = 16000
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "degradations" / "finally.yaml"

NEW_OPS = {
    "crystalizer": {},
    "flanger": {},
    "vibrato": {},
    "bitcrush_wet": {"bits": [3, 9], "wet": [0.2, 0.8], "wet_p": 0.5},
    "bandlimit_bwe": {"modes": ["resample"], "cutoffs_hz": [1000, 2000, 4000]},
    "audiomentations": {"transform": "TanhDistortion"},
    "pedalboard": {"plugin": "Chorus", "rate_hz": [0.5, 2.0], "mix": [0.3, 0.7]},
}


def build(name: str, **args) -> object:
    return AUGMENTATIONS.build({"name": name, "args": args}, where=f"t.{name}")


def impulses(n: int, every: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros(n, np.float32)
    where = np.arange(start, n - every, every)
    x[where] = 1.0
    return x, where


def image_delays(wet: np.ndarray, where: np.ndarray, reach: int) -> np.ndarray:
    """Per input impulse, the centroid (samples) of its delayed image within +-reach samples."""
    out = []
    for k in where:
        idx = np.arange(k - reach, k + reach + 1)
        w = wet[idx].astype(np.float64)
        out.append(float((idx * w).sum() / w.sum()) - k)
    return np.array(out)


# --- contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NEW_OPS))
def test_new_ops_are_seeded_keep_length_and_float32(name: str) -> None:
    aug = build(name.split("_")[0], **NEW_OPS[name])  # bitcrush_wet -> bitcrush
    x = speechlike(SR, 0.5)
    a, pa = aug(x, SR, np.random.default_rng(1))
    b, pb = aug(x, SR, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert not np.array_equal(a, aug(x, SR, np.random.default_rng(2))[0])
    np.testing.assert_array_equal(x, speechlike(SR, 0.5))  # input untouched


# --- crystalizer -------------------------------------------------------------------------


def test_crystalizer_adds_intensity_times_the_first_difference() -> None:
    x = speechlike(SR, 0.3)
    for seed in range(3):
        y, params = build("crystalizer")(x, SR, np.random.default_rng(seed))
        i = params["intensity"]
        assert 1.0 <= i <= 4.0
        expected = x.astype(np.float64) + i * np.diff(x.astype(np.float64), prepend=0.0)
        np.testing.assert_allclose(y, expected, atol=1e-6)
    y, _ = build("crystalizer", intensity=2)(np.array([0.1, 0.2, -0.1], np.float32), SR, np.random.default_rng(0))
    np.testing.assert_allclose(y, [0.3, 0.4, -0.7], atol=1e-6)


def test_crystalizer_leaves_peaks_above_one_to_the_chain() -> None:
    x = np.array([0.0, 0.5, -0.5, 0.0], np.float32)
    y, _ = build("crystalizer", intensity=4)(x, SR, np.random.default_rng(0))
    assert y[2] == pytest.approx(-4.5)  # not clipped by the op
    chain = AUGMENTATIONS.build({"name": "chain", "args": {"ops": [{"name": "crystalizer", "args": {"intensity": 4}}]}})
    z, params = chain(x, SR, np.random.default_rng(0))
    assert np.abs(z).max() == pytest.approx(1.0) and params["applied"][-1]["name"] == "peak_normalize"
    np.testing.assert_allclose(z, y / 4.5, atol=1e-6)  # scaled, shape kept


# --- flanger / vibrato -------------------------------------------------------------------


def test_flanger_sweeps_the_wet_delay_over_exactly_delay_to_delay_plus_depth() -> None:
    x, where = impulses(int(2.2 * SR), 320, 200)  # 2.2 s: a full 0.5 Hz sweep
    aug = build("flanger", depth_ms=[4, 4], delay_ms=1.0)
    y, params = aug(x, SR, np.random.default_rng(3))
    assert params["depth_ms"] == 4.0 and params["rate_hz"] == 0.5
    wet = ((1 + 0.71) * y.astype(np.float64) - x) / 0.71  # the dry path is the input, undelayed
    d = image_delays(wet, where, reach=150) / SR * 1000  # ms
    assert d.min() >= 1.0 - 0.03 and d.max() <= 5.0 + 0.03
    assert d.min() < 1.05 and d.max() > 4.95  # the whole range is swept
    for seed in range(4):  # default depth 1-8 ms
        assert 1.0 <= aug.__class__()(x, SR, np.random.default_rng(seed))[1]["depth_ms"] <= 8.0


def test_vibrato_swings_the_delay_by_depth_times_5_ms_centred_on_zero() -> None:
    x, where = impulses(SR, 160, 200)
    y, params = build("vibrato", rate_hz=[5, 5], depth=0.5)(x, SR, np.random.default_rng(0))
    assert params["swing_ms"] == 2.5
    d = image_delays(y, where, reach=60) / SR * 1000  # ms
    assert np.abs(d).max() <= 1.25 + 0.03 and d.max() - d.min() > 2.5 - 0.1
    assert abs(d.mean()) < 0.1  # centred: speech stays aligned with the clean target on average
    crossings = np.count_nonzero(np.diff(np.sign(d)) != 0)
    assert crossings in (9, 10, 11)  # 5 Hz over ~1 s: two zero crossings per period


def test_vibrato_and_flanger_reject_out_of_range_args() -> None:
    with pytest.raises(ConfigError, match=r"augmentation 'vibrato': args.depth = \[0.5, 2\] is outside the allowed range \[0.0, 1.0\]"):
        build("vibrato", depth=[0.5, 2])
    with pytest.raises(ConfigError, match=r"augmentation 'flanger': args.depth_ms must be a \[low, high\] list"):
        build("flanger", depth_ms=[8, 1])
    with pytest.raises(ConfigError, match=r"t.flanger.args.delay_ms must be a float, got \[1, 2\] \(list\)"):
        build("flanger", delay_ms=[1, 2])  # a fixed setting, not a range
    with pytest.raises(ConfigError, match=r"augmentation 'flanger': args.delay_ms must be one number, got \[1, 2\]"):
        AUGMENTATIONS.get("flanger")(delay_ms=[1, 2])  # built directly, without the registry's check
    with pytest.raises(ConfigError, match=r"augmentation 'bitcrush': args.wet_p = \[1.5, 1.5\] is outside the allowed range"):
        build("bitcrush", wet_p=1.5)


# --- bitcrush wet mix --------------------------------------------------------------------


def quantise(x: np.ndarray, bits: int) -> np.ndarray:
    half = 2.0 ** (bits - 1)
    return np.clip(np.round(x * half), -half, half - 1) / half


def test_bitcrush_wet_is_the_exact_mix_of_dry_and_crushed() -> None:
    x = speechlike(SR, 0.3)
    y, params = build("bitcrush", bits=4, wet=0.25)(x, SR, np.random.default_rng(0))
    assert params == {"bits": 4, "wet": 0.25}
    np.testing.assert_allclose(y, 0.75 * x + 0.25 * quantise(x, 4), atol=1e-7)


def test_bitcrush_wet_p_mixes_that_share_of_samples_and_leaves_the_rest_fully_wet() -> None:
    x = speechlike(SR, 0.1)
    aug = build("bitcrush", bits=[1, 9], wet=0.25, wet_p=0.25)
    mixed = 0
    for seed in range(200):
        y, params = aug(x, SR, np.random.default_rng(seed))
        assert 1 <= params["bits"] <= 9
        if "wet" in params:
            mixed += 1
            np.testing.assert_allclose(y, 0.75 * x + 0.25 * quantise(x, params["bits"]), atol=1e-7)
        else:
            np.testing.assert_array_equal(y, quantise(x, params["bits"]).astype(np.float32))
    assert 30 < mixed < 70  # about a quarter of 200


def test_bitcrush_defaults_behave_exactly_as_before_wet_existed() -> None:
    x = speechlike(SR, 0.1)
    rng, reference = np.random.default_rng(5), np.random.default_rng(5)
    y, params = build("bitcrush", bits=[4, 10])(x, SR, rng)
    bits = int(reference.integers(4, 11))  # the only draw the old op made
    assert params == {"bits": bits}
    np.testing.assert_array_equal(y, quantise(x, bits).astype(np.float32))
    assert rng.random() == reference.random()  # no extra random number consumed


# --- IR peak normalisation ---------------------------------------------------------------


def write_peaky_rirs(root: Path, sr: int = SR) -> Path:
    """RIRs whose largest sample is a negative reflection after a weaker direct path and some pre-noise."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        rir = 0.01 * rng.standard_normal(4000)
        rir[100] = 0.5
        rir[300 + 50 * i] = -0.9
        rir[301 + 50 * i :] += 0.2 * rng.standard_normal(4000 - 301 - 50 * i) * np.exp(-np.arange(4000 - 301 - 50 * i) / 800)
        sf.write(root / f"ir_{i}.wav", rir, sr, subtype="FLOAT")
    return root


def test_reverb_peak_normalisation_uses_the_ir_from_its_peak_with_peak_one(tmp_path: Path) -> None:
    aug = build("reverb", dirs=[str(write_peaky_rirs(tmp_path / "irs"))], normalize_ir="peak")
    x = np.zeros(SR, np.float32)
    x[4000] = 0.5
    for seed in range(4):
        y, params = aug(x, SR, np.random.default_rng(seed))
        ir, _ = sf.read(params["file"], dtype="float32")
        peak = int(np.argmax(np.abs(ir)))
        used = ir[peak:] / ir[peak]
        assert np.abs(y[:4000]).max() < 1e-6  # nothing before the impulse (FFT round-off only): IR starts at its peak
        assert y[4000] == pytest.approx(0.5) and np.abs(y).max() == pytest.approx(0.5)  # peak 1 at index 0
        np.testing.assert_allclose(y[4000 : 4000 + len(used)], 0.5 * used, atol=1e-6)


def test_reverb_default_normalisation_is_unchanged_rms_matched(tmp_path: Path) -> None:
    aug = build("reverb", dirs=[str(write_peaky_rirs(tmp_path / "irs"))])
    x = speechlike(SR, 0.5)
    y, _ = aug(x, SR, np.random.default_rng(0))
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(x.astype(np.float64) ** 2)), rel=1e-4)
    with pytest.raises(ConfigError, match=r"augmentation 'reverb': args.normalize_ir must be one of rms, peak, got 'max'"):
        build("reverb", dirs=[str(tmp_path / "irs")], normalize_ir="max")


def test_room_reverb_peak_normalisation_starts_the_ir_at_one() -> None:
    aug = build("room_reverb", rt60=[0.2, 0.3], pool_size=1, normalize_ir="peak")
    x = np.zeros(SR // 2, np.float32)
    x[1000] = 0.5
    y, _ = aug(x, SR, np.random.default_rng(0))
    assert np.abs(y[:1000]).max() < 1e-6 and y[1000] == pytest.approx(0.5) and np.abs(y).max() == pytest.approx(0.5)


# --- bandwidth extension -----------------------------------------------------------------


def band_db(wave: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    # Hann window: a rectangular one leaks the passband ~60 dB into the stop band by itself
    spec = np.abs(np.fft.rfft(wave.astype(np.float64) * np.hanning(len(wave)))) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / sr)
    return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-30)


def test_bwe_pairs_resample_to_twice_the_cutoff_and_back() -> None:
    aug = build("bandlimit", **NEW_OPS["bandlimit_bwe"])
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    seen = set()
    for seed in range(12):
        y, params = aug(x, SR, np.random.default_rng(seed))
        f = params["cutoff_hz"]
        seen.add(f)
        assert params["mode"] == "resample"
        assert band_db(y, f, SR / 2) - band_db(y, 0, SR / 2) < -60  # nothing left above f
        for lo, hi in ((50, 0.85 * f), (0.85 * f, 0.9 * f)):  # the band below f is kept, up to 0.9 f
            assert abs(band_db(y, lo, hi) - band_db(x, lo, hi)) < 0.2
    assert seen == {1000.0, 2000.0, 4000.0}
    with pytest.raises(ConfigError, match=r"args.cutoffs_hz must be a non-empty list of cutoffs in Hz"):
        build("bandlimit", cutoffs_hz=[])


# --- audiomentations adapter -------------------------------------------------------------


def test_audiomentations_adapter_is_seeded_by_rng_and_leaves_global_rngs_alone() -> None:
    aug = build("audiomentations", transform="TanhDistortion", min_distortion=0.1, max_distortion=0.6)
    x = speechlike(SR, 0.3)
    random.seed(123)
    np.random.seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy())
    a, pa = aug(x, SR, np.random.default_rng(7))
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    random.seed(999)  # a different global state does not change the output
    np.random.seed(999)
    b, pb = aug(x, SR, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa["transform"] == "TanhDistortion" and 0.1 <= pa["distortion_amount"] <= 0.6
    assert "should_apply" not in pa


def test_audiomentations_adapter_seeds_numpy_global_rng_too() -> None:
    aug = build("audiomentations", transform="AddGaussianNoise")  # amplitude from random, noise from np.random
    x = speechlike(SR, 0.2)
    outs = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        np.random.seed(global_seed)
        outs.append(aug(x, SR, np.random.default_rng(3)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1] and 0.001 <= outs[0][1]["amplitude"] <= 0.015


def test_audiomentations_adapter_always_applies_and_survives_pickling() -> None:
    aug = build("audiomentations", transform="PolarityInversion")
    x = speechlike(SR, 0.2)
    for seed in range(5):  # its own default p is 0.5; the adapter forces 1.0
        np.testing.assert_array_equal(aug(x, SR, np.random.default_rng(seed))[0], -x)
    aug = build("audiomentations", transform="TanhDistortion")
    copy = pickle.loads(pickle.dumps(aug))
    np.testing.assert_array_equal(aug(x, SR, np.random.default_rng(1))[0], copy(x, SR, np.random.default_rng(1))[0])


def test_audiomentations_adapter_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"args.transform: unknown audiomentations transform 'TanhDistorton'. Did you mean 'TanhDistortion'\? Available: AddBackgroundNoise, .*docs: https://iver56"):
        build("audiomentations", transform="TanhDistorton")
    with pytest.raises(ConfigError, match=r"Did you mean 'BitCrush'\?"):
        build("audiomentations", transform="bitcrush")
    with pytest.raises(ConfigError, match=r"\(TanhDistortion\): args.min_distorsion is not an argument of TanhDistortion. Did you mean 'min_distortion'\? Accepted: min_distortion=0.01, max_distortion=0.7"):
        build("audiomentations", transform="TanhDistortion", min_distorsion=0.2)
    with pytest.raises(ConfigError, match=r"args.p is not passed on: the chain op's own p"):
        build("audiomentations", transform="TanhDistortion", p=0.3)
    with pytest.raises(ConfigError, match=r"args.sounds_path is required by AddBackgroundNoise but missing"):
        build("audiomentations", transform="AddBackgroundNoise")
    with pytest.raises(ConfigError, match=r"\(TanhDistortion\): the transform rejected args"):
        build("audiomentations", transform="TanhDistortion", min_distortion=2.0)


def test_adapters_refuse_transforms_that_change_the_length() -> None:
    aug = build("audiomentations", transform="AdjustDuration", duration_samples=4000)
    x = speechlike(SR, 0.3)
    with pytest.raises(ConfigError, match=r"augmentation 'audiomentations': AdjustDuration turned 4800 samples into 4000; degradations must keep the length"):
        aug(x, SR, np.random.default_rng(0))


# --- pedalboard adapter ------------------------------------------------------------------


def test_pedalboard_adapter_draws_ranges_from_rng_and_applies_exactly_that_plugin() -> None:
    import pedalboard

    aug = build("pedalboard", plugin="Chorus", rate_hz=[0.5, 2.0], centre_delay_ms=3.0)
    x = speechlike(SR, 0.3)
    state = (random.getstate(), np.random.get_state()[1].copy())
    a, pa = aug(x, SR, np.random.default_rng(4))
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    b, pb = aug(x, SR, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa["plugin"] == "Chorus" and pa["centre_delay_ms"] == 3.0 and 0.5 <= pa["rate_hz"] <= 2.0
    direct = pedalboard.Chorus(rate_hz=pa["rate_hz"], centre_delay_ms=3.0)(x, SR)
    np.testing.assert_array_equal(a, direct)
    copy = pickle.loads(pickle.dumps(aug))  # DataLoader workers started with 'spawn' pickle the chain
    np.testing.assert_array_equal(copy(x, SR, np.random.default_rng(4))[0], a)


def test_pedalboard_adapter_converts_enum_names() -> None:
    import pedalboard

    x = speechlike(SR, 0.3)
    y, params = build("pedalboard", plugin="LadderFilter", mode="HPF12", cutoff_hz=800.0)(x, SR, np.random.default_rng(0))
    assert params == {"plugin": "LadderFilter", "mode": "HPF12", "cutoff_hz": 800.0}
    np.testing.assert_array_equal(y, pedalboard.LadderFilter(mode=pedalboard.LadderFilter.Mode.HPF12, cutoff_hz=800.0)(x, SR))


def test_pedalboard_adapter_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"args.plugin: unknown pedalboard plugin 'Chrous'. Did you mean 'Chorus'\? Available: Bitcrush, .*docs: https://spotify"):
        build("pedalboard", plugin="Chrous")
    with pytest.raises(ConfigError, match=r"\(Chorus\): args.rate is not an argument of pedalboard.Chorus. Did you mean 'rate_hz'\? Accepted: rate_hz, depth, centre_delay_ms, feedback, mix"):
        build("pedalboard", plugin="Chorus", rate=1.0)
    with pytest.raises(ConfigError, match=r"\(Chorus\): pedalboard.Chorus rejected \{'rate_hz': 500.0\}: Rate must be between 0 Hz and 100 Hz"):
        build("pedalboard", plugin="Chorus", rate_hz=[0.5, 500])
    with pytest.raises(ConfigError, match=r"unknown pedalboard plugin 'Pedalboard'"):
        build("pedalboard", plugin="Pedalboard")  # containers are not effects


# --- the finally.yaml recipe -------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_folders(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("finally")
    noise, rirs = write_noise_dir(root / "noise"), write_rir_dir(root / "rirs")
    mic = write_rir_dir(root / "mic", sr=16000, delay=20, channels=1)
    return [f"data.noise_dirs=[{noise}]", f"data.rir_dirs=[{rirs}]", f"data.mic_ir_dirs=[{mic}]"]


def test_finally_recipe_follows_the_framework(synthetic_folders: list[str]) -> None:
    chain, _ = build_chain(str(RECIPE), synthetic_folders)
    ops = [(op.name, op.p) for op in chain.ops]
    assert ops == [("noise", 1.0), ("reverb", 1.0), ("reverb", 0.8), ("bitcrush", 0.25), ("crystalizer", 0.4),
                   ("vibrato", 0.15), ("flanger", 0.15), ("codec", 0.45),
                   ("neural_codec", 0.0)]  # restorekit's option (issue 15), off by default
    aug = [op.aug for op in chain.ops]
    assert aug[0].snr_db == (10.0, 20.0) and aug[1].normalize_ir == aug[2].normalize_ir == "peak"
    assert aug[3].bits == (1.0, 9.0) and aug[3].wet == (0.5, 0.5) and aug[4].intensity == (1.0, 4.0)
    assert aug[5].rate_hz == (5.0, 8.0) and aug[5].depth == (0.5, 0.5) and aug[6].depth_ms == (1.0, 8.0)
    assert aug[7].mp3_kbps == (8.0, 16.0) and set(aug[7].codecs) == {"mp3", "vorbis", "opus"}


def test_finally_chain_runs_every_op_on_synthetic_folders(synthetic_folders: list[str]) -> None:
    chain, _ = build_chain(str(RECIPE), synthetic_folders)
    x = speechlike(SR, 0.5)
    applied = set()
    for i in range(30):
        y, params = chain(x, SR, sample_rng(0, 0, i))
        np.testing.assert_array_equal(y, chain(x, SR, sample_rng(0, 0, i))[0])
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0
        applied |= {d["name"] for d in params["applied"]}
    assert applied >= {"noise", "reverb", "bitcrush", "crystalizer", "vibrato", "flanger", "codec"}


@pytest.mark.real_data
def test_finally_chain_on_a_real_recording_with_real_noises_and_rirs(real_data: Path) -> None:
    dirs = [f"data.noise_dirs=[{real_data / 'noises'}]", f"data.rir_dirs=[{real_data / 'rirs'}]",
            f"data.mic_ir_dirs=[{real_data / 'rirs'}]"]
    chain, _ = build_chain(str(RECIPE), dirs)
    speech, sr = sf.read(real_data / "pairs" / "clean" / "vbdemand_p232_002.wav", dtype="float32")
    for i in range(3):
        y, params = chain(speech, sr, sample_rng(1, 0, i))
        np.testing.assert_array_equal(y, chain(speech, sr, sample_rng(1, 0, i))[0])
        assert y.shape == speech.shape and np.isfinite(y).all() and np.abs(y).max() <= 1.0
        assert not np.allclose(y, speech, atol=1e-3)
        names = [d["name"] for d in params["applied"]]
        assert names[:2] == ["noise", "reverb"]  # both at p 1.0
        assert Path(params["applied"][0]["file"]).parent == real_data / "noises"
