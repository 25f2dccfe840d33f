"""Degradations: contract per op (length, rate, finite, seeding), SNR, chain, bad inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import sample_rng
from restorekit.augmentations.noise import active_power
from restorekit.errors import ConfigError, DataError, RegistryError

SR = 16000


def speechlike(sr: int = SR, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic 'voiced' bursts with pauses: a test signal with active and silent parts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(float)
    wave = 0.2 * voiced * envelope + 0.002 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def write_noise_dir(root: Path, n: int = 2, sr: int = 22050, seconds: float = 0.7) -> Path:
    """A folder of short synthetic noise files (looping is needed: shorter than the speech)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        sf.write(root / f"noise_{i}.wav", 0.1 * rng.standard_normal(int(sr * seconds)), sr)
    return root


def write_rir_dir(root: Path, sr: int = 32000, delay: int = 300, channels: int = 2, count: int = 2) -> Path:
    """RIR files: silence (``delay`` samples), a direct path, then a decaying noise tail."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    n = int(0.3 * sr)
    for i in range(count):
        tail = rng.standard_normal((n, channels)) * np.exp(-np.arange(n) / ((0.03 + 0.03 * i) * sr))[:, None] * 0.1
        rir = np.zeros((delay + n, channels))
        rir[delay] = 1.0
        rir[delay + 1 :] = tail[:-1]
        sf.write(root / f"room_{i}.wav", rir, sr)
    return root


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("augdata")
    return {"noise": str(write_noise_dir(root / "noises")), "rir": str(write_rir_dir(root / "rirs")),
            "mimi": str(tiny_mimi_folder(root / "mimi"))}


def tiny_mimi_folder(folder: Path) -> Path:
    """A tiny random Mimi in transformers' MimiModel layout (neural_codec's model; no download)."""
    import torch

    from restorekit.models import MODELS
    from tests.test_mimi_training import TINY_CODEC

    torch.manual_seed(0)
    return MODELS.build({"name": "mimi", "args": TINY_CODEC}, where="models.codec").save_pretrained(folder)


def example_args(name: str, dirs: dict[str, str]) -> dict:
    """An example config for each registered op (the registry sweep builds all of these)."""
    examples = {
        "chain": {"ops": [{"name": "gain", "p": 1.0, "args": {"gain_db": [-3, 3]}}]},
        "audiomentations": {"transform": "TanhDistortion"},
        "pedalboard": {"plugin": "Chorus", "rate_hz": [0.5, 2.0]},
        "noise": {"dirs": [dirs["noise"]], "snr_db": [5, 30]},
        "reverb": {"dirs": [dirs["rir"]]},
        "room_reverb": {"rt60": [0.2, 0.4], "pool_size": 2},
        "neural_codec": {"model": dirs["mimi"], "n_q": [1, 4]},
    }
    return examples.get(name, {})


def lag(reference: np.ndarray, other: np.ndarray) -> int:
    """Cross-correlation lag (samples) of ``other`` relative to ``reference``."""
    from scipy.signal import correlate

    c = correlate(other.astype(np.float64), reference.astype(np.float64), mode="full", method="fft")
    return int(np.argmax(c)) - (len(reference) - 1)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
@pytest.mark.parametrize("sr", [16000, 24000])
def test_every_op_keeps_length_rate_is_finite_and_seeded(name: str, sr: int, data_dirs) -> None:
    aug = AUGMENTATIONS.build({"name": name, "args": example_args(name, data_dirs)}, where=f"test.{name}")
    x = speechlike(sr, 0.5)
    a, pa = aug(x, sr, np.random.default_rng(1))
    b, pb = aug(x, sr, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert pa == pb and isinstance(pa, dict)
    outs = [aug(x, sr, np.random.default_rng(s))[0] for s in range(2, 6)]
    assert any(not np.array_equal(a, o) for o in outs), f"{name}: different seeds gave identical output"
    np.testing.assert_array_equal(x, speechlike(sr, 0.5))  # input untouched


def test_every_registered_op_has_a_one_line_docstring() -> None:
    for entry in AUGMENTATIONS.entries():
        assert entry.summary != "(no docstring)" and len(entry.summary) > 20, entry.name


@pytest.mark.parametrize("snr", [5.0, 17.5, 30.0])
@pytest.mark.parametrize("name", ["noise", "colored_noise"])
def test_noise_reaches_the_requested_snr_on_active_speech(name: str, snr: float, data_dirs) -> None:
    aug = AUGMENTATIONS.build({"name": name, "args": {**example_args(name, data_dirs), "snr_db": [snr, snr]}}, where="t")
    x = speechlike(SR, 1.0)
    for seed in range(3):
        y, params = aug(x, SR, np.random.default_rng(seed))
        achieved = 10 * np.log10(active_power(x, SR) / np.mean((y - x).astype(np.float64) ** 2))
        assert abs(achieved - snr) < 0.5 and params["snr_db"] == snr


def test_colored_noise_has_the_expected_spectral_slope() -> None:
    from restorekit.augmentations.noise import colored

    rng = np.random.default_rng(0)
    for color, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        n = colored(color, 2**16, rng).astype(np.float64)
        psd = np.abs(np.fft.rfft(n)) ** 2
        f = np.arange(len(psd))
        band = (f > 100) & (f < 20000)
        fitted = np.polyfit(np.log10(f[band]), np.log10(psd[band]), 1)[0]
        assert abs(fitted - slope) < 0.15, (color, fitted)


def test_noise_on_silent_speech_is_finite_and_flagged(data_dirs) -> None:
    for name in ("noise", "colored_noise"):
        aug = AUGMENTATIONS.build({"name": name, "args": example_args(name, data_dirs)}, where="t")
        y, params = aug(np.zeros(SR, np.float32), SR, np.random.default_rng(0))
        assert np.isfinite(y).all() and np.any(y) and params["silent_input"] is True


def test_noise_reads_metadata_csv_manifests(tmp_path: Path) -> None:
    root = write_noise_dir(tmp_path / "corpus", n=3)
    (root / "metadata.csv").write_text("path,duration,sample_rate,channels,speaker\nnoise_2.wav,0.7,22050,1,\n")
    aug = AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(root)]}}, where="t")
    assert [p.name for p in aug.pool.files] == ["noise_2.wav"]
    _, params = aug(speechlike(), SR, np.random.default_rng(0))
    assert params["file"].endswith("noise_2.wav")


def test_noise_folder_missing_or_empty_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"augmentation 'noise': noise folder .*nowhere does not exist; fix args.dirs"):
        AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(tmp_path / "nowhere")]}}, where="t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"augmentation 'noise': no noise audio files .* in .*empty"):
        AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(tmp_path / "empty")]}}, where="t")


def test_unreadable_noise_files_are_skipped_counted_and_fatal_when_none_left(tmp_path: Path) -> None:
    root = write_noise_dir(tmp_path / "n", n=1)
    (root / "broken.wav").write_bytes(b"not audio at all")
    aug = AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(root)]}}, where="t")
    with pytest.warns(UserWarning, match=r"skipping unreadable noise file .*broken.wav"):
        for seed in range(8):
            y, params = aug(speechlike(), SR, np.random.default_rng(seed))
            assert params["file"].endswith("noise_0.wav")
    assert [p.name for p in aug.pool.bad] == ["broken.wav"]
    (root / "noise_0.wav").write_bytes(b"also broken")
    only_bad = AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(root)]}}, where="t")
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"none of the noise files could be read \(2 skipped"):
        only_bad(speechlike(), SR, np.random.default_rng(0))


def test_cache_mb_bounds_the_decoded_file_cache(tmp_path: Path) -> None:
    """Three noise files of 44.8 kB each at 16 kHz: with cache_mb = 0.1 (104.9 kB) at most two stay
    decoded and evicted ones are read again; with 0.01 (10.5 kB) none stays; with the default every
    file is read once. Mutations caught: AudioPool._get never evicting (the cache grows past
    cache_mb), and keeping the newest file whatever its size (as it did: cache_mb smaller than one
    file did not bound the cache)."""
    root = write_noise_dir(tmp_path / "n", n=3)
    reads = []

    def pool_of(cache_mb: float):
        aug = AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(root)], "cache_mb": cache_mb}}, where="t")
        reader = aug.pool.reader
        aug.pool.reader = lambda path, sr: reads.append(path.name) or reader(path, sr)
        return aug

    small = pool_of(0.1)
    for seed in range(30):
        small(speechlike(), SR, np.random.default_rng(seed))
        cached = list(small.pool.cache.values())
        assert small.pool.cache_bytes == sum(w.nbytes for w in cached) <= small.pool.max_bytes == 104857
        assert len(cached) <= 2 and all(w.nbytes == 11199 * 4 for w in cached)  # 0.7 s at 16 kHz
    assert set(reads) == {"noise_0.wav", "noise_1.wav", "noise_2.wav"} and len(reads) > 3  # evicted, re-read
    reads.clear()
    tiny = pool_of(0.01)
    for seed in range(5):
        _, params = tiny(speechlike(), SR, np.random.default_rng(seed))
        assert not tiny.pool.cache and tiny.pool.cache_bytes == 0 and reads[-1] == Path(params["file"]).name
    assert len(reads) == 5
    reads.clear()
    large = pool_of(1024)
    for seed in range(30):
        large(speechlike(), SR, np.random.default_rng(seed))
    assert sorted(reads) == ["noise_0.wav", "noise_1.wav", "noise_2.wav"] and len(large.pool.cache) == 3


def test_bitcrush_gives_at_most_two_to_the_bits_levels() -> None:
    x = np.linspace(-1, 1, 20001, dtype=np.float32)
    for bits in (1, 3, 8):
        y, params = AUGMENTATIONS.build({"name": "bitcrush", "args": {"bits": [bits, bits]}}, where="t")(
            x, SR, np.random.default_rng(0)
        )
        assert params["bits"] == bits and len(np.unique(y)) == 2**bits


def test_clipping_limits_the_peak_to_the_drawn_level() -> None:
    x = speechlike()
    for mode in ("hard", "soft"):
        aug = AUGMENTATIONS.build({"name": "clipping", "args": {"level_db": [-6, -6], "modes": [mode]}}, where="t")
        y, params = aug(x, SR, np.random.default_rng(0))
        level = np.abs(x).max() * 10 ** (-6 / 20)
        assert params["mode"] == mode and np.abs(y).max() <= level * (1 + 1e-5)
    assert np.abs(y).max() < level  # tanh only approaches the level


def test_gain_scales_by_the_drawn_decibels() -> None:
    x = speechlike()
    y, params = AUGMENTATIONS.build({"name": "gain", "args": {"gain_db": [-6, -6]}}, where="t")(x, SR, np.random.default_rng(0))
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), rtol=1e-6)


def chain_node(**args) -> dict:
    ops = [
        {"name": "gain", "p": 0.5, "args": {"gain_db": [-6, 0]}},
        {"name": "colored_noise", "p": 0.7, "args": {"snr_db": [10, 20]}},
        {"name": "bitcrush", "p": 0.5, "args": {"bits": [6, 10]}},
        {"name": "clipping", "p": 0.5},
    ]
    return {"name": "chain", "args": {"ops": ops, **args}}


def test_chain_is_deterministic_per_seed_epoch_index_and_reports_what_it_applied() -> None:
    chain = AUGMENTATIONS.build(chain_node(), where="data.degradations")
    x = speechlike()
    a, pa = chain(x, SR, sample_rng(1, 0, 5))
    b, pb = chain(x, SR, sample_rng(1, 0, 5))
    np.testing.assert_array_equal(a, b)
    assert pa == pb and set(pa) == {"applied"}
    assert all(set(d) >= {"name"} for d in pa["applied"])
    others = [chain(x, SR, sample_rng(*k))[0] for k in ((2, 0, 5), (1, 1, 5), (1, 0, 6))]
    assert all(not np.array_equal(a, o) for o in others)
    names = {d["name"] for i in range(40) for d in chain(x, SR, sample_rng(0, 0, i))[1]["applied"]}
    assert names == {"gain", "colored_noise", "bitcrush", "clipping"}


# Ops whose output is a function of the input and the parameters they record, so a chain's
# output can be rebuilt from its params["applied"] alone.
REPLAYABLE = [
    {"name": "gain", "p": 0.6, "args": {"gain_db": [-6, 0]}},
    {"name": "bandlimit", "p": 0.6, "args": {"cutoff_hz": [3000, 6000]}},
    {"name": "clipping", "p": 0.6, "args": {"level_db": [-12, -3]}},
    {"name": "bitcrush", "p": 0.6, "args": {"bits": [4, 8]}},
]


def fixed_op(applied: dict):
    """The op of one ``params["applied"]`` entry, every drawn parameter fixed to its recorded value."""
    args = {
        "gain": lambda a: {"gain_db": a["gain_db"]},
        "bandlimit": lambda a: {"cutoff_hz": a["cutoff_hz"], "modes": [a["mode"]]},
        "clipping": lambda a: {"level_db": a["level_db"], "modes": [a["mode"]]},
        "bitcrush": lambda a: {"bits": a["bits"]},
    }[applied["name"]](applied)
    return AUGMENTATIONS.build({"name": applied["name"], "args": args}, where="replay")


def test_chain_params_match_replaying_the_ops_alone() -> None:
    """Re-applying the recorded ops, in the recorded order, with the recorded parameters, gives the
    chain's output exactly. Mutations caught: the chain recording ops in reverse order
    (``applied.insert(0, ...)``), and running each op on the chain's input instead of the running output."""
    chain = AUGMENTATIONS.build({"name": "chain", "args": {"ops": REPLAYABLE, "shuffle": True}}, where="t")
    x = speechlike()
    orders = set()
    for index in range(12):
        y, params = chain(x, SR, sample_rng(0, 0, index))
        replayed = x
        for applied in params["applied"]:
            replayed, again = fixed_op(applied)(replayed, SR, np.random.default_rng(12345))
            assert {"name": applied["name"], **again} == applied
        np.testing.assert_array_equal(y, replayed)
        orders.add(tuple(a["name"] for a in params["applied"]))
    assert max(len(o) for o in orders) >= 3 and len(orders) >= 6, orders  # orders and subsets vary


class NonFinite:
    """A stand-in op that returns ``value`` in every sample (an op with a bug)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, wave, sr, rng):
        return np.full_like(wave, self.value), {}


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_an_op_that_outputs_nan_or_inf_raises_naming_it(value: float) -> None:
    """Mutation caught: run_op without its finiteness check (NaN/Inf would flow into training)."""
    node = {"name": "chain", "args": {"ops": [{"name": "gain"}, {"name": "bitcrush"}], "path": "data.deg"}}
    chain = AUGMENTATIONS.build(node, where="data.deg")
    chain.ops[1].aug = NonFinite(value)
    with pytest.raises(RuntimeError, match=r"data.deg.args.ops\[1\] \(bitcrush\) produced NaN/Inf samples at 16000 Hz"):
        chain(speechlike(), SR, sample_rng(0, 0, 0))


def test_chain_max_ops_p_clean_and_shuffle() -> None:
    x = speechlike()
    capped = AUGMENTATIONS.build(chain_node(max_ops=1), where="t")
    counts = [len(capped(x, SR, sample_rng(0, 0, i))[1]["applied"]) for i in range(30)]
    assert max(counts) == 1 and min(counts) == 0
    clean = AUGMENTATIONS.build(chain_node(p_clean=1.0), where="t")
    y, params = clean(x, SR, sample_rng(0, 0, 0))
    np.testing.assert_array_equal(y, x)
    assert params == {"applied": []}
    always = [{"name": n, "p": 1.0} for n in ("gain", "bitcrush", "clipping")]
    shuffled = AUGMENTATIONS.build({"name": "chain", "args": {"ops": always, "shuffle": True}}, where="t")
    orders = {tuple(d["name"] for d in shuffled(x, SR, sample_rng(0, 0, i))[1]["applied"]) for i in range(30)}
    assert len(orders) > 2 and all(sorted(o) == ["bitcrush", "clipping", "gain"] for o in orders)


def test_chain_keeps_the_output_within_the_peak_limit() -> None:
    chain = AUGMENTATIONS.build({"name": "chain", "args": {"ops": [{"name": "gain", "args": {"gain_db": 20}}]}}, where="t")
    y, params = chain(speechlike(), SR, sample_rng(0, 0, 0))
    assert np.abs(y).max() == pytest.approx(1.0) and params["applied"][-1]["name"] == "peak_normalize"


def test_unknown_op_name_or_argument_names_the_config_path() -> None:
    with pytest.raises(RegistryError, match=r"unknown augmentations 'bitcrash' at data.deg.args.ops\[0\].name. Did you mean 'bitcrush'"):
        AUGMENTATIONS.build({"name": "chain", "args": {"ops": [{"name": "bitcrash"}], "path": "data.deg"}}, where="data.deg")
    with pytest.raises(ConfigError, match=r"data.deg.args.ops\[0\].args.bit: augmentations 'bitcrush' has no argument 'bit'. Did you mean 'bits'"):
        AUGMENTATIONS.build({"name": "chain", "args": {"ops": [{"name": "bitcrush", "args": {"bit": 3}}], "path": "data.deg"}}, where="data.deg")
    with pytest.raises(ConfigError, match=r"data.deg.args.ops\[0\].p must be a probability between 0 and 1, got 1.5"):
        AUGMENTATIONS.build({"name": "chain", "args": {"ops": [{"name": "gain", "p": 1.5}], "path": "data.deg"}}, where="data.deg")
    with pytest.raises(ConfigError, match=r"augmentation 'gain': args.gain_db must be a \[low, high\] list"):
        AUGMENTATIONS.build({"name": "gain", "args": {"gain_db": [3, -3]}}, where="t")


def test_a_failing_op_in_a_chain_is_reported_not_swallowed(data_dirs, tmp_path: Path) -> None:
    root = write_noise_dir(tmp_path / "n", n=1)
    chain = AUGMENTATIONS.build(
        {"name": "chain", "args": {"ops": [{"name": "noise", "args": {"dirs": [str(root)]}}], "path": "data.deg"}},
        where="data.deg",
    )
    (root / "noise_0.wav").write_bytes(b"corrupted after the chain was built")
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"data.deg.args.ops\[0\] \(noise\): augmentation 'noise': none of the noise files"):
        chain(speechlike(), SR, sample_rng(0, 0, 0))


def test_sample_rng_rejects_negative_numbers() -> None:
    with pytest.raises(ConfigError, match="sample_rng: epoch must be a non-negative integer, got -1"):
        sample_rng(0, -1, 0)


# --- reverb -------------------------------------------------------------------------------


def impulse(n: int, at: int) -> np.ndarray:
    x = np.zeros(n, np.float32)
    x[at] = 0.5
    return x


def test_reverb_output_is_not_delayed_and_keeps_the_level(data_dirs) -> None:
    """The synthetic RIR starts with 300 samples of silence at 32 kHz; none of it may show."""
    aug = AUGMENTATIONS.build({"name": "reverb", "args": example_args("reverb", data_dirs)}, where="t")
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)  # white: one clear xcorr peak
    y, params = aug(x, SR, np.random.default_rng(0))
    assert lag(x, y) == 0 and params["file"].endswith(".wav")
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    y_imp, _ = aug(impulse(SR, 4000), SR, np.random.default_rng(0))
    assert int(np.argmax(np.abs(y_imp))) == 4000 and np.abs(y_imp[:3960]).max() < 1e-6  # FFT round-off only


def write_rir(path: Path, peaks: dict[int, float], sr: int = 32000) -> Path:
    """A sparse RIR at ``sr``: ``{sample: amplitude}`` plus a faint decaying tail."""
    rir = np.zeros(int(0.1 * sr))
    tail = 1e-3 * np.random.default_rng(5).standard_normal(len(rir)) * np.exp(-np.arange(len(rir)) / (0.02 * sr))
    rir[min(peaks):] += tail[: len(rir) - min(peaks)]
    for at, amplitude in peaks.items():
        rir[at] = amplitude
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, rir, sr)
    return path


def test_reverb_aligns_on_the_first_peak_within_6_db_not_the_largest(tmp_path: Path) -> None:
    """A reflection 5 ms after the direct path is louder than it (1.0 vs 0.6), and a blip 10.5 dB below
    the largest comes 1.25 ms before it: the output puts the direct path, not the reflection nor the
    blip, on the input's sample. Mutations caught: direct_path = the largest sample, and a 12 dB
    threshold instead of 6 dB (it picks the blip)."""
    write_rir(tmp_path / "rirs" / "floor.wav", {260: 0.3, 300: 0.6, 460: 1.0})  # at 32 kHz
    aug = AUGMENTATIONS.build({"name": "reverb", "args": {"dirs": [str(tmp_path / "rirs")]}}, where="t")
    y, _ = aug(impulse(SR, 4000), SR, np.random.default_rng(0))
    direct, reflection, blip = y[4000], y[4000 + 80], y[4000 - 20]  # the same peaks at 16 kHz
    assert direct > 0 and reflection / direct == pytest.approx(1.0 / 0.6, rel=0.05)
    assert blip / direct == pytest.approx(0.3 / 0.6, rel=0.05)
    assert np.abs(y[:3960]).max() < 1e-3 * direct  # nothing earlier than the 2 ms kept before the direct path


def test_room_reverb_draws_from_a_cached_pool_of_simulated_rooms() -> None:
    aug = AUGMENTATIONS.build({"name": "room_reverb", "args": {"rt60": [0.2, 0.4], "pool_size": 3}}, where="t")
    x = impulse(SR, 4000)
    seen = {aug(x, SR, np.random.default_rng(s))[1]["pool_index"] for s in range(12)}
    assert seen == {0, 1, 2} and len(aug.pools[SR]) == 3
    pool_before = aug.pools[SR][0][0]
    aug(x, SR, np.random.default_rng(99))
    assert aug.pools[SR][0][0] is pool_before  # not re-simulated
    from restorekit.augmentations.reverb import direct_path

    for s in range(3):
        y, params = aug(x, SR, np.random.default_rng(s))
        assert direct_path(y, SR) == 4000 and 0.05 < params["rt60"] < 1.0


def test_algorithmic_reverb_adds_a_tail_without_delay() -> None:
    aug = AUGMENTATIONS.build({"name": "algorithmic_reverb", "args": {"wet_level": [0.5, 0.5]}}, where="t")
    y, _ = aug(impulse(SR, 4000), SR, np.random.default_rng(0))
    assert not np.any(y[:4000]) and y[4000] != 0 and np.abs(y[4500:]).max() > 1e-3


def test_reverb_folder_errors_name_the_op_and_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"augmentation 'reverb': RIR folder .*missing does not exist"):
        AUGMENTATIONS.build({"name": "reverb", "args": {"dirs": [str(tmp_path / "missing")]}}, where="t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"augmentation 'reverb': no RIR audio files .* in .*empty; point args.dirs"):
        AUGMENTATIONS.build({"name": "reverb", "args": {"dirs": [str(tmp_path / "empty")]}}, where="t")
    with pytest.raises(ConfigError, match=r"augmentation 'room_reverb': args.room_size must be three \[low, high\] ranges"):
        AUGMENTATIONS.build({"name": "room_reverb", "args": {"room_size": [3, 10]}}, where="t")


# --- codecs -------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [16000, 24000])
@pytest.mark.parametrize("codec", ["mp3", "vorbis", "opus", "gsm", "alaw", "mulaw"])
def test_codec_output_is_aligned_same_length_and_close_to_the_input(codec: str, sr: int) -> None:
    aug = AUGMENTATIONS.build({"name": "codec", "args": {"codecs": [codec], "mp3_kbps": [16, 96]}}, where="t")
    x = speechlike(sr, 1.0)
    for seed in (0, 3):  # low and high MP3 bitrates: LAME's resampler switches on below ~64 kbps
        y, params = aug(x, sr, np.random.default_rng(seed))
        assert params["codec"] == codec and y.shape == x.shape and np.isfinite(y).all()
        assert lag(x, y) == 0
        assert not np.array_equal(x, y)
    telephone = codec in ("gsm", "alaw", "mulaw")  # no content above 4 kHz survives
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    high = spectrum[int(4200 / sr * len(x)) :].sum() / spectrum.sum()
    assert (high < 1e-3) if telephone else True


# Minimum SNR (dB) against the input, sample by sample, of each wide-band codec at a mid setting
# (64 kbps MP3, Vorbis quality 0.5, 24 kbps Opus). Measured on speechlike(): MP3 25.7 / 25.8 dB
# (16 / 24 kHz), Vorbis 26.0 / 26.0, Opus 24.8 / 21.0; the same outputs one sample late reach at
# most 20.0 dB, and at 0.9x the level at most 19.2. (A-law / mu-law keep only 300-3400 Hz, 1.2 dB
# SNR against this full-band signal, and GSM only 0-4 kHz; the band test above covers them.)
MIN_SNR_DB = {"mp3": 23.0, "vorbis": 23.0, "opus": 19.0}
MID_SETTINGS = {"mp3_kbps": [64, 64], "vorbis_quality": [0.5, 0.5], "opus_kbps": [24, 24]}


@pytest.mark.parametrize("sr", [16000, 24000])
@pytest.mark.parametrize("codec", sorted(MIN_SNR_DB))
def test_wideband_codecs_stay_above_a_minimum_snr(codec: str, sr: int) -> None:
    """Alignment to the sample and the level, not just the cross-correlation peak. Mutations caught:
    Codec.apply shifting the output one sample too far (lag + 1), and scaling it by 0.9."""
    aug = AUGMENTATIONS.build({"name": "codec", "args": {"codecs": [codec], **MID_SETTINGS}}, where="t")
    x = speechlike(sr, 1.0)
    y, _ = aug(x, sr, np.random.default_rng(0))
    error = np.sum((y - x).astype(np.float64) ** 2)
    assert 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / error) > MIN_SNR_DB[codec]


def test_codec_rejects_unknown_codecs_and_bad_bitrates() -> None:
    with pytest.raises(ConfigError, match=r"augmentation 'codec': args.codecs .* 'aac' is not one of them; allowed: mp3, vorbis"):
        AUGMENTATIONS.build({"name": "codec", "args": {"codecs": ["mp3", "aac"]}}, where="t")
    with pytest.raises(ConfigError, match=r"augmentation 'codec': args.mp3_kbps = \[4, 64\] is outside the allowed range"):
        AUGMENTATIONS.build({"name": "codec", "args": {"mp3_kbps": [4, 64]}}, where="t")


# --- filters and packet loss --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lowpass", "resample"])
def test_bandlimit_removes_content_above_the_cutoff(mode: str) -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    aug = AUGMENTATIONS.build({"name": "bandlimit", "args": {"cutoff_hz": [3000, 3000], "modes": [mode]}}, where="t")
    y, params = aug(x, SR, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    assert spectrum[f > 3600].sum() / spectrum.sum() < 1e-3 and params["mode"] == mode
    assert spectrum[f < 2000].sum() / (np.abs(np.fft.rfft(x)) ** 2)[f < 2000].sum() == pytest.approx(1.0, abs=0.05)
    assert lag(x, y) == 0
    same, p = aug(x, 4000, np.random.default_rng(0))
    np.testing.assert_array_equal(same, x)
    assert p["skipped"] == "cutoff above Nyquist"


def test_eq_changes_the_spectrum_but_not_the_timing() -> None:
    aug = AUGMENTATIONS.build({"name": "eq", "args": {"bands": [3, 3], "gain_db": [10, 12]}}, where="t")
    x = speechlike()
    y, params = aug(x, SR, np.random.default_rng(0))
    assert len(params["peaks"]) == 3 and all(50 <= p["hz"] <= 0.45 * SR for p in params["peaks"])
    assert np.sqrt(np.mean(y**2)) > np.sqrt(np.mean(x**2)) and abs(lag(x, y)) <= 2


@pytest.mark.parametrize("mode", ["zero", "fade"])
def test_packet_loss_silences_whole_frames_at_the_rate(mode: str) -> None:
    x = np.ones(SR * 4, np.float32) * 0.5
    aug = AUGMENTATIONS.build({"name": "packet_loss", "args": {"rate": [0.3, 0.3], "frame_ms": [40, 40], "modes": [mode]}}, where="t")
    y, params = aug(x, SR, np.random.default_rng(0))
    frames = y[: len(y) // 640 * 640].reshape(-1, 640)
    silent = np.all(frames == 0, axis=1)
    assert silent.sum() == params["lost_frames"] and 0.2 < silent.mean() < 0.4
    kept = frames[~silent]
    if mode == "zero":
        assert np.all(kept == 0.5)
    else:  # faded edges next to the gaps, full level elsewhere
        assert kept.min() < 0.5 and np.isclose(kept, 0.5).mean() > 0.8
