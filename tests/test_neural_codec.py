"""neural_codec degradation and mimi_resynthesis enhancer with a tiny Mimi saved to tmp_path (no download)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from restorekit.audio import load, save
from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import sample_rng
from restorekit.config import load_config
from restorekit.enhancers import ENHANCERS
from restorekit.errors import CheckpointError, ConfigError
from restorekit.models import MODELS
from restorekit.models.export import save_export
from tests.test_mimi_training import TINY_CODEC
from tests.test_recipes_configs import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_mimi(tmp_path_factory):
    """A tiny random Mimi (4 codebooks of 16) in transformers' MimiModel layout, and the model itself."""
    torch.manual_seed(0)
    model = MODELS.build({"name": "mimi", "args": TINY_CODEC}, where="models.codec").eval()
    folder = model.save_pretrained(tmp_path_factory.mktemp("tiny_mimi"))
    return folder, model


def degradation(folder, n_q=(1, 4), **args):
    return AUGMENTATIONS.build({"name": "neural_codec", "args": {"model": str(folder), "n_q": list(n_q), **args}},
                               where="data.degradations.args.ops[0]")


def speechlike(sr: int, seconds: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_seeded_same_seed_same_output_and_different_seeds_draw_different_n_q(tiny_mimi):
    aug = degradation(tiny_mimi[0])
    wave = speechlike(24000)
    a, pa = aug(wave, 24000, sample_rng(3, 0, 7))
    b, pb = aug(wave, 24000, sample_rng(3, 0, 7))
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa["kbps"] == pytest.approx(pa["n_q"] * 4 * 12.5 / 1000)  # 16 codes = 4 bits, 12.5 Hz
    draws = {aug(wave, 24000, sample_rng(3, 0, i))[1]["n_q"] for i in range(12)}
    assert draws == {1, 2, 3, 4}
    assert not np.allclose(a, wave, atol=1e-3)  # it does change the audio


@pytest.mark.parametrize("sr", [16000, 22050, 48000])
def test_length_and_rate_are_kept(tiny_mimi, sr):
    wave = speechlike(sr, 0.23)
    out, params = degradation(tiny_mimi[0])(wave, sr, sample_rng(0, 0, 1))
    assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert 1 <= params["n_q"] <= 4


def test_a_48k_input_comes_back_at_48k_over_its_whole_length(tiny_mimi):
    """Catches an output left at the codec's 24 kHz: it would fill half the 48 kHz length and the
    length fix would pad the rest with zeros. The resampled round trip equals the codec's own
    output brought back to 48 kHz."""
    folder, model = tiny_mimi
    wave = speechlike(48000, 8 * model.hop / 24000)
    out, _ = degradation(folder, n_q=(4, 4))(wave, 48000, sample_rng(0, 0, 0))
    half = len(out) // 2
    assert np.sqrt(np.mean(out[half:] ** 2)) > 0.2 * np.sqrt(np.mean(out[:half] ** 2))
    from restorekit.audio import resample

    with torch.no_grad():
        coded = model.decode(model.encode(torch.from_numpy(resample(wave, 48000, 24000))[None], 4))[0].numpy()
    ref = resample(coded[: len(wave) // 2], 24000, 48000)
    np.testing.assert_allclose(out[: len(ref)], ref[: len(out)], atol=1e-4)


def test_output_is_the_models_own_round_trip_at_its_rate(tiny_mimi):
    """At the codec's rate and a whole number of frames the output is decode(encode(x, n_q)) exactly."""
    folder, model = tiny_mimi
    wave = speechlike(24000, 4 * model.hop / 24000)
    out, params = degradation(folder, n_q=(2, 2))(wave, 24000, sample_rng(0, 0, 0))
    with torch.no_grad():
        ref = model.decode(model.encode(torch.from_numpy(wave)[None], 2))[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert params["n_q"] == 2


def test_apply_batch_equals_one_by_one_and_pickles_without_the_model(tiny_mimi):
    """Different lengths and draws in one call give what apply gives per sample (causal codec: the
    padding never reaches earlier frames); a pickled degradation (a DataLoader worker) reloads."""
    aug = degradation(tiny_mimi[0])
    waves = [speechlike(16000, s, seed=i) for i, s in enumerate((0.2, 0.35, 0.27))]
    batched = aug.apply_batch(waves, 16000, [sample_rng(1, 0, i) for i in range(3)])
    for i, w in enumerate(waves):
        single, params = aug(w, 16000, sample_rng(1, 0, i))
        np.testing.assert_allclose(batched[i][0], single, atol=1e-5)
        assert batched[i][1] == params
    clone = pickle.loads(pickle.dumps(aug))
    assert clone.roundtrip._codec is None and aug.roundtrip._codec is not None
    np.testing.assert_array_equal(clone(waves[0], 16000, sample_rng(1, 0, 0))[0], batched[0][0])


def test_restorekit_export_loads_and_weights_are_only_needed_when_used(tiny_mimi, tmp_path):
    """A mimi_codec export (role codec) works as the model; a missing model fails only at first use."""
    _, model = tiny_mimi
    cfg = OmegaConf.create({"models": {"codec": {"name": "mimi", "args": TINY_CODEC}}})
    export = save_export(tmp_path / "export", cfg, {"codec": model})
    wave = speechlike(24000)
    out, _ = degradation(export, n_q=(3, 3))(wave, 24000, sample_rng(0, 0, 0))
    ref, _ = degradation(tiny_mimi[0], n_q=(3, 3))(wave, 24000, sample_rng(0, 0, 0))
    np.testing.assert_allclose(out, ref, atol=1e-6)

    import restorekit
    from restorekit.models.wave_restorer import restorer_from_export

    restorer = restorekit.load(export, n_q=3)  # the API gives the codec round trip, as mimi_resynthesis
    np.testing.assert_allclose(restorer(wave, 24000)[0], ref, atol=1e-6)
    full, _ = degradation(tiny_mimi[0], n_q=(4, 4))(wave, 24000, sample_rng(0, 0, 0))
    np.testing.assert_allclose(restorekit.load(export)(wave, 24000)[0], full, atol=1e-6)  # all its codebooks
    from restorekit.app import Demo  # the web page plays the round trip of an export it is given

    save(tmp_path / "in.wav", wave, 24000)
    page = Demo([str(export)], device="cpu")
    played = page.restore(tmp_path / "in.wav", [str(export)]).outputs[0]
    np.testing.assert_allclose(load(played.path)[0], full, atol=1e-4)  # 16-bit WAV
    with pytest.raises(CheckpointError, match="a mimi_codec export .* round-trips through the mimi_resynthesis"):
        restorer_from_export(export)

    lazy = degradation(tmp_path / "no_such_codec")  # builds: nothing is loaded yet
    with pytest.raises(CheckpointError, match="no_such_codec"):
        lazy(wave, 24000, sample_rng(0, 0, 0))


def test_n_q_errors(tiny_mimi):
    with pytest.raises(ConfigError, match=r"augmentation 'neural_codec': args.n_q must be whole numbers"):
        degradation(tiny_mimi[0], n_q=(1.5, 3))
    with pytest.raises(ConfigError, match=r"args.n_q reaches 8 but .* has 4 codebooks; lower n_q's upper bound"):
        degradation(tiny_mimi[0], n_q=(8, 8))(speechlike(24000), 24000, sample_rng(0, 0, 0))


@pytest.mark.parametrize("recipe", ["miipher2", "finally"])
def test_degradation_recipes_list_neural_codec_off_by_default(recipe, tiny_mimi):
    """The chains build without the codec's weights (p 0), and switching it on uses the given codec."""
    folders = ["data.noise_dirs=[/n]", "data.rir_dirs=[/r]", "data.mic_ir_dirs=[/m]"][: 3 if recipe == "finally" else 2]
    cfg = load_config([f"exp.config_path={ROOT}/configs/degradations/{recipe}.yaml", *folders])
    ops = OmegaConf.to_container(cfg.data.degradations, resolve=True)["args"]["ops"]
    node = next(op for op in ops if op["name"] == "neural_codec")
    assert node["p"] == 0.0 and node["args"] == {"model": "kyutai/mimi", "n_q": [1, 8]}
    on = AUGMENTATIONS.build({**node, "args": {**node["args"], "model": str(tiny_mimi[0]), "n_q": [1, 4]}},
                             where="x", extra_keys=("p",))
    assert on(speechlike(16000), 16000, sample_rng(0, 0, 0))[1]["n_q"] in (1, 2, 3, 4)


def test_mimi_resynthesis_enhancer_round_trips_and_reports_its_bitrate(tiny_mimi):
    folder, model = tiny_mimi
    enh = ENHANCERS.build({"name": "mimi_resynthesis", "args": {"model": str(folder), "n_q": 2}}, where="enhancers.m")
    wave = speechlike(16000)
    out, sr = enh(wave, 16000)
    assert sr == 16000 and out.shape == wave.shape
    ref, _ = degradation(folder, n_q=(2, 2))(wave, 16000, sample_rng(0, 0, 0))
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert enh.info == {"codec": str(folder), "n_q": 2, "bitrate_kbps": 0.1}
    with pytest.raises(ConfigError, match=r"mimi_resynthesis: n_q=5 is out of range"):
        enh_bad = ENHANCERS.build({"name": "mimi_resynthesis", "args": {"model": str(folder), "n_q": 5}}, where="e")
        enh_bad(wave, 16000)


def test_evaluation_report_states_the_codec_bitrate(tiny_mimi, tmp_path):
    """evaluate.py with a mimi_resynthesis enhancer: the summary and the HTML table carry its bitrate."""
    from restorekit.evaluation import main
    from tests.test_evaluate import args, make_set

    d = make_set(tmp_path, n=2)
    enhancer = f"enhancers={{codec: {{name: mimi_resynthesis, args: {{model: '{tiny_mimi[0]}', n_q: 3}}}}}}"
    assert main(args("compare_baselines.yaml", tmp_path / "ev", f"data.inputs={d['noisy']}",
                     f"data.references={d['clean']}", "metrics=[{name: si_sdr}]", "suite.workers=1",
                     "report.examples=0", enhancer)) == 0
    summary = json.loads((tmp_path / "ev" / "report" / "summary.json").read_text())
    assert summary["systems"]["codec"]["info"] == {"codec": str(tiny_mimi[0]), "n_q": 3, "bitrate_kbps": 0.15}
    assert "bitrate_kbps: 0.15" in (tmp_path / "ev" / "report" / "report.html").read_text()
