"""The Python API and Hub layout: restorekit.load on an export, a Hub cache and a baseline name
gives what the command line writes; exports round-trip through the Hub layout offline."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import restorekit
from restorekit.errors import CheckpointError, ConfigError
from restorekit.hub import write_model_card
from restorekit.inference import main as cli_restore
from restorekit.models import MODELS
from restorekit.models.export import save_export
from test_models import EXAMPLES


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    models = {"feature_cleaner": {"name": "parallel_adapter_cleaner", "args": EXAMPLES["parallel_adapter_cleaner"]},
              "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}}
    cfg = {"exp": {"name": "tiny_restorer"}, "models": models,
           "trainer": {"name": "miipher2_vocoder_finetune", "args": {"max_steps": 3}},
           "data": {"train_dirs": ["/corpora/demo/train"]}}
    mods = {role: MODELS.build(node, where=f"models.{role}") for role, node in models.items()}
    return save_export(tmp_path_factory.mktemp("api") / "export", cfg, mods)


@pytest.fixture
def speech(tmp_path) -> Path:
    t = np.arange(12000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path / "in" / "talk.wav"
    path.parent.mkdir()
    sf.write(path, wave.astype(np.float32), 16000, subtype="FLOAT")
    return path


def _hub_cache(tmp_path: Path, export: Path, repo: str = "user/tiny") -> Path:
    """The local cache layout huggingface_hub keeps: models--user--repo/{refs/main, snapshots/<sha>/}."""
    root = tmp_path / "hub_cache" / f"models--{repo.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(export, root / "snapshots" / sha)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(sha)
    return tmp_path / "hub_cache"


def test_load_an_export_restores_like_the_command_line(export, speech, tmp_path):
    assert cli_restore([f"exp.ckpt_dir={export}", "exp.device=cpu", f"input={speech}",
                        f"output_dir={tmp_path / 'cli'}"]) == 0
    restorer = restorekit.load(export)
    dst = restorer.restore_file(speech, tmp_path / "api" / "talk.wav")
    cli, api = sf.read(tmp_path / "cli" / "talk.wav")[0], sf.read(dst)[0]
    assert restorer.sample_rate == 24000 and api.shape == cli.shape == (18000,)
    np.testing.assert_array_equal(api, cli)
    wave, sr = restorer(sf.read(speech, dtype="float32")[0], 16000)
    assert sr == 24000 and np.abs(wave).max() == pytest.approx(0.9, abs=1e-5)  # the export's level policy


def test_load_a_hub_id_from_the_local_cache_offline(export, speech, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(_hub_cache(tmp_path, export)))
    restorer = restorekit.load("user/tiny")
    ref = restorekit.load(export)
    wave = sf.read(speech, dtype="float32")[0]
    np.testing.assert_array_equal(restorer(wave, 16000)[0], ref(wave, 16000)[0])
    model = restorekit.from_pretrained("user/tiny")  # the torch module, for notebooks
    np.testing.assert_array_equal(model.restore(wave, 16000)[0], ref(wave, 16000)[0])
    with pytest.raises(CheckpointError, match=r"'user/missing' is not in the local Hugging Face cache and cannot be "
                                              r"downloaded now \(offline mode: HF_HUB_OFFLINE=1\); download it while "
                                              r"online \(huggingface-cli download user/missing\)"):
        restorekit.load("user/missing")


def test_load_a_baseline_by_name_matches_the_command_line_level_policy(tmp_path):
    """A float file beyond full scale: the CLI scales it to peak 0.99, and so must the API."""
    src = tmp_path / "in" / "hot.wav"
    src.parent.mkdir()
    sf.write(src, (1.5 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000, subtype="FLOAT")
    assert cli_restore(["enhancer=identity", f"input={src}", f"output_dir={tmp_path / 'cli'}"]) == 0
    dst = restorekit.load("identity").restore_file(src, tmp_path / "api" / "hot.wav")
    np.testing.assert_array_equal(sf.read(dst)[0], sf.read(tmp_path / "cli" / "hot.wav")[0])
    assert np.abs(sf.read(dst)[0]).max() == pytest.approx(0.99, abs=1e-4)  # 16-bit output
    with pytest.raises(ConfigError, match="is the input file"):
        restorekit.load("identity").restore_file(src, src)


def test_enhance_batch_equals_one_call_per_recording(export):
    restorer = restorekit.load(export)
    rng = np.random.default_rng(0)
    waves = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 11000)]
    for (out, sr), wave in zip(restorer.enhance_batch(waves, 16000), waves):
        # batched through one padded forward pass: equal within float rounding (restorekit.models.miipher2)
        np.testing.assert_allclose(out, restorer(wave, 16000)[0], atol=1e-4, rtol=0)
        assert sr == 24000 and len(out) == round(len(wave) * 1.5)


def test_model_card_names_recipe_data_and_evaluation(export, tmp_path):
    folder = tmp_path / "repo"
    shutil.copytree(export, folder)
    card = write_model_card(folder).read_text()
    assert card.startswith("---\nlibrary_name: restorekit\nlicense: apache-2.0\n")
    assert "# tiny_restorer" in card and "`miipher2_vocoder_finetune` (3 steps)" in card
    assert "/corpora/demo/train" in card and "No evaluation has been recorded" in card
    (folder / "evaluation.md").write_text("| system | pesq_wb |\n|---|---|\n| restored | 3.1 |\n")
    card = write_model_card(folder).read_text()
    assert "| restored | 3.1 |" in card and "No evaluation" not in card
