"""Miipher-1 on the demo corpus from its quickstart configs: stage 1 (the text- and speaker-conditioned
cleaner) learns, stages 2-3 (Miipher-2's vocoder stages, WaveFit and the HiFi-GAN SSL vocoder) take it
as it is, and the stage-3 export restores files through inference.py with a transcript CSV."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import restorekit
from restorekit.config import load_config
from restorekit.errors import DataError
from restorekit.inference import main as infer
from restorekit.trainers import TRAINERS
from tests_helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
QUICK = REPO / "configs" / "miipher1" / "quickstart"
SHORT = ["exp.device=cpu", "exp.logger=console", "trainer.args.max_steps=1", "trainer.args.max_valid_items=1",
         "trainer.args.num_audio_samples=0", "data.batch_size=2", "metrics=[]"]  # vocoder stages: one step each


def _train(config, out, *overrides):
    cfg = load_config([f"exp.config_path={config}", f"exp.output_dir={out}", *SHORT, *overrides])
    return TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)


def _stage(config, out, *overrides):
    return _train(config, out, *overrides).fit()


def _inputs(tmp_path):
    """Two files: a.wav listed in the CSV by relative path, b.wav not listed at all."""
    folder = tmp_path / "in"
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000
    for name in ("a", "b"):
        sf.write(folder / f"{name}.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    csv = tmp_path / "texts.csv"
    csv.write_text('name,text\na.wav,"Bring two pencils, and a sheet of paper."\n', encoding="utf-8")
    return folder, csv


def _restores_with_transcripts(export, tmp_path, label):
    folder, csv = _inputs(tmp_path / label)
    out = tmp_path / label / "out"
    rc = infer([f"exp.ckpt_dir={export}", "exp.device=cpu", f"input={folder}", f"output_dir={out}",
                f"transcripts={csv}"])
    wave, sr = sf.read(out / "a.wav")
    assert rc == 1 and len(wave) == sr and np.abs(wave).max() == pytest.approx(0.9, abs=1e-3)
    assert not (out / "b.wav").exists()
    failed = [r for r in json.loads((out / "inference_summary.json").read_text())["files"] if r["status"] == "failed"]
    assert [r["input"] for r in failed] == [str(folder / "b.wav")]
    assert f"no transcript for b in {csv}" in failed[0]["reason"]


def test_quickstart_stage1_learns_and_its_chain_restores_with_transcripts(tmp_path):
    s1 = _train(QUICK / "stage1.yaml", tmp_path / "s1", "trainer.args.max_steps=8", "trainer.args.ema_decay=null",
                   "trainer.args.max_valid_items=2")
    before = s1.validate()["valid/loss/all_outputs"]
    export1 = s1.fit()
    after = s1.validate()["valid/loss/all_outputs"]
    assert after < 0.8 * before  # summed over the 4 outputs, on unheard voices and sentences

    fast = ["models.vocoder.args.iterations=1", "data.train.args.segment_seconds=0.25"]  # one WaveFit pass
    export2 = _stage(QUICK / "stage2.yaml", tmp_path / "s2", *fast)
    init = [f"trainer.args.init_from.feature_cleaner={export1}", f"trainer.args.init_from.vocoder={export2}",
            f"trainer.args.init_from.discriminators={export2}"]
    export3 = _stage(QUICK / "stage3.yaml", tmp_path / "s3", *init, fast[0], "trainer.args.vocoder_segment_seconds=0.25")
    _restores_with_transcripts(export3, tmp_path, "wavefit")
    restorer = restorekit.load(str(export3))
    with pytest.raises(DataError, match="text-conditioned"):
        restorer(np.zeros(8000, dtype=np.float32), 16000)
    out, sr = restorer.with_text("Bring two pencils.")(0.1 * np.ones(8000, dtype=np.float32), 16000)
    assert sr == 24000 and out.shape == (12000,)

    # the HiFi-GAN SSL vocoder by YAML alone: the fragment inherited after each vocoder stage
    for stage in ("stage2", "stage3"):
        (tmp_path / f"{stage}_hifigan.yaml").write_text(
            f"inherit: [{QUICK / (stage + '.yaml')}, {QUICK / 'vocoder_hifigan.yaml'}]\n")
    h2 = _stage(tmp_path / "stage2_hifigan.yaml", tmp_path / "h2")
    h3 = _stage(tmp_path / "stage3_hifigan.yaml", tmp_path / "h3", f"trainer.args.init_from.feature_cleaner={export1}",
                f"trainer.args.init_from.vocoder={h2}", f"trainer.args.init_from.discriminators={h2}")
    _restores_with_transcripts(h3, tmp_path, "hifigan")
