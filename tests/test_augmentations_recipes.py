"""Degradation recipes (configs/degradations), the preview command, and the real recordings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.chain import sample_rng
from restorekit.augmentations.noise import active_power
from restorekit.augmentations.preview import build_chain, main
from restorekit.augmentations.reverb import direct_path
from restorekit.errors import ConfigError
from test_augmentations import lag, speechlike, write_noise_dir, write_rir_dir

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "configs" / "degradations"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("recipes")
    noise, rirs = write_noise_dir(root / "noise"), write_rir_dir(root / "rirs")
    return [f"data.noise_dirs=[{noise}]", f"data.rir_dirs=[{rirs}]", f"+data.mic_ir_dirs=[{rirs}]"]


@pytest.mark.parametrize("recipe", ["miipher2", "finally"])
def test_recipes_build_and_degrade_deterministically(recipe: str, folders: list[str]) -> None:
    chain, where = build_chain(str(RECIPES / f"{recipe}.yaml"), folders)
    assert where == "data.degradations"
    x = speechlike(24000, 1.0)
    applied = set()
    for i in range(6):
        y, params = chain(x, 24000, sample_rng(0, 0, i))
        again, _ = chain(x, 24000, sample_rng(0, 0, i))
        np.testing.assert_array_equal(y, again)
        assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() <= 1.0
        applied |= {d["name"] for d in params["applied"]}
    assert {"noise", "codec"} <= applied


@pytest.mark.parametrize("recipe", ["miipher2", "finally"])
def test_recipes_survive_pickling_for_dataloader_workers(recipe: str, folders: list[str]) -> None:
    import pickle

    chain, _ = build_chain(str(RECIPES / f"{recipe}.yaml"), folders)
    x = speechlike(16000, 0.5)
    before, _ = chain(x, 16000, sample_rng(0, 0, 1))
    after, _ = pickle.loads(pickle.dumps(chain))(x, 16000, sample_rng(0, 0, 1))
    np.testing.assert_array_equal(before, after)


def test_miipher2_recipe_follows_the_paper(folders: list[str]) -> None:
    chain, _ = build_chain(str(RECIPES / "miipher2.yaml"), folders)
    by_name = {op.name: op.aug for op in chain.ops}
    assert by_name["noise"].snr_db == (5.0, 30.0)
    assert set(by_name["codec"].codecs) == {"mp3", "vorbis", "opus", "alaw", "gsm"}
    assert "reverb" in by_name


def test_recipe_without_its_folders_says_which_key_to_set() -> None:
    with pytest.raises(ConfigError, match=r"miipher2.yaml: data.noise_dirs is required \(\?\?\?\) but not set; pass it as an override"):
        build_chain(str(RECIPES / "miipher2.yaml"), [])


def test_preview_writes_each_op_and_the_chain_as_wav_and_png(folders: list[str], tmp_path: Path, capsys) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, speechlike(16000, 1.0), 16000)
    out = tmp_path / "preview"
    assert main([str(RECIPES / "miipher2.yaml"), str(wav), str(out), *folders[:2]]) == 0
    stems = ["00_clean", "01_noise", "02_reverb", "03_codec", "chain"]
    for stem in stems:
        data, sr = sf.read(out / f"{stem}.wav")
        assert sr == 16000 and len(data) == 16000
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    params = json.loads((out / "params.json").read_text())
    assert params["03_codec"]["codec"] in ("mp3", "vorbis", "opus", "alaw", "gsm") and "applied" in params["chain"]
    assert "wrote 5 WAV/PNG pairs" in capsys.readouterr().out
    assert main([str(RECIPES / "miipher2.yaml"), str(wav), str(tmp_path / "x")]) == 2
    assert "data.noise_dirs is required" in capsys.readouterr().err


# --- the real recordings in ../shared/data/real -------------------------------------------


@pytest.mark.real_data
def test_real_noises_reach_the_requested_snr(real_data: Path) -> None:
    aug = AUGMENTATIONS.build({"name": "noise", "args": {"dirs": [str(real_data / "noises")], "snr_db": [5, 30]}}, where="t")
    speech, sr = sf.read(real_data / "pairs" / "clean" / "vbdemand_p232_002.wav", dtype="float32")
    files = set()
    for seed in range(8):
        y, params = aug(speech, sr, np.random.default_rng(seed))
        achieved = 10 * np.log10(active_power(speech, sr) / np.mean((y - speech).astype(np.float64) ** 2))
        assert abs(achieved - params["snr_db"]) < 0.5 and y.shape == speech.shape
        files.add(Path(params["file"]).name)
    assert len(files) >= 2  # 16 and 48 kHz recordings, resampled to the speech's rate


@pytest.mark.real_data
@pytest.mark.parametrize("sr", [16000, 24000])
def test_real_rirs_any_rate_and_channels_do_not_delay_speech(real_data: Path, sr: int) -> None:
    rirs = sorted((real_data / "rirs").glob("*.wav"))
    assert {sf.info(p).channels for p in rirs} == {1, 2} and len({sf.info(p).samplerate for p in rirs}) > 1
    aug = AUGMENTATIONS.build({"name": "reverb", "args": {"dirs": [str(real_data / "rirs")]}}, where="t")
    x = np.zeros(sr, np.float32)
    x[sr // 4] = 0.5
    seen = set()
    for seed in range(60):  # enough draws to meet all five files
        y, params = aug(x, sr, np.random.default_rng(seed))
        assert direct_path(y, sr) == sr // 4 and np.abs(y[: sr // 4 - int(0.003 * sr)]).max() < 1e-4
        seen.add(Path(params["file"]).name)
    assert seen == {p.name for p in rirs}


@pytest.mark.real_data
def test_real_speech_through_every_codec_stays_aligned(real_data: Path) -> None:
    speech, sr = sf.read(real_data / "pairs" / "clean" / "vbdemand_p287_001.wav", dtype="float32")
    for codec in ("mp3", "vorbis", "opus", "gsm", "alaw", "mulaw"):
        aug = AUGMENTATIONS.build({"name": "codec", "args": {"codecs": [codec], "mp3_kbps": [16, 24]}}, where="t")
        y, _ = aug(speech, sr, np.random.default_rng(0))
        assert y.shape == speech.shape and lag(speech, y) == 0, codec
