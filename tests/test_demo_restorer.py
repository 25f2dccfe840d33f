"""The quickstart restorer `make demo` trains (configs/quickstart/restorer.yaml) learns to restore.

Real components throughout: the demo corpus, the recipe's degradation chain, the a2a HiFi++
generator, the hifipp trainer, its export loaded as an enhancer, the si_sdr metric. Trained for a
fraction of the demo's budget, it must already lower its validation loss and beat its input's
SI-SDR on the validation split, whose voices and sentences it never heard.
"""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from restorekit.config import load_config
from restorekit.datasets.demo import VALID_VOICES, demo_speech, utterances
from restorekit.enhancers import ENHANCERS
from restorekit.metrics import METRICS
from restorekit.trainers import TRAINERS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CONFIG = "configs/quickstart/restorer.yaml"
STEPS = 80  # a sixth of the demo's 600; ~50 s on a busy core, already ~8 dB above the input
VALID_ITEMS = 8


def test_demo_splits_share_no_voice_and_no_sentence():
    train = [(spk, text) for split, spk, _, text in utterances() if split == "train"]
    valid = [(spk, text) for split, spk, _, text in utterances() if split == "valid"]
    assert len(train) == 32 and len(valid) == 24
    assert not {s for s, _ in train} & {s for s, _ in valid}
    assert not {t for _, t in train} & {t for _, t in valid}
    assert {s for s, _ in valid} == set(VALID_VOICES)


def test_quickstart_restorer_learns_to_beat_its_input(tmp_path):
    cfg = load_config([f"exp.config_path={CONFIG}", f"exp.output_dir={tmp_path / 'run'}", "exp.device=cpu",
                       f"trainer.args.max_steps={STEPS}", f"trainer.args.ckpt_every={STEPS}",
                       "trainer.args.valid_every=0", f"trainer.args.max_valid_items={VALID_ITEMS}"])
    trainer = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    for key in ("valid/loss/mel_l1", "valid/loss/multi_resolution_stft"):
        assert after[key] < 0.5 * before[key], f"{key}: {before[key]:.3f} -> {after[key]:.3f}"

    # The export, as inference.py and evaluate.py load it, on the degraded validation items.
    restorer = ENHANCERS.build({"name": "restorekit", "args": {"path": str(tmp_path / "run" / "export")}})
    valid = demo_speech(16000, "valid", segment_seconds=None, degradations=OmegaConf.to_container(cfg.data.valid.args.degradations, resolve=True))
    si_sdr = METRICS.build({"name": "si_sdr"})
    gains = []
    for i in range(VALID_ITEMS):
        item = valid[i]
        clean, degraded = item["clean"].numpy(), item["degraded"].numpy()
        restored, sr = restorer(degraded, 16000)
        assert sr == 16000 and restored.shape == clean.shape
        gains.append(si_sdr.score(restored, clean, sr)["si_sdr"] - si_sdr.score(degraded, clean, sr)["si_sdr"])
    assert np.mean(gains) > 0 and np.median(gains) > 0, f"SI-SDR gain over the input per item: {np.round(gains, 2)}"
