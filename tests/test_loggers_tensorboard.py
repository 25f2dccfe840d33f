"""The tensorboard logger: what it writes reads back with TensorBoard's own event reader."""
from __future__ import annotations

import numpy as np
import pytest

from restorekit.loggers import build_loggers
from restorekit.trainers import TRAINERS

pytest.importorskip("tensorboard")


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"audio": 0, "images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_scalars_audio_images_and_config_read_back(tmp_path):
    logger = build_loggers({"name": "tensorboard", "args": {"flush_secs": 1}}, tmp_path)
    logger.log_config({"exp": {"name": "t"}})
    logger.log_scalars({"loss/mel_l1": 0.5}, 1)
    logger.log_scalars({"loss/mel_l1": 0.25}, 2)
    logger.log_audio("audio/restored", np.sin(np.arange(1600) / 5).astype(np.float32), 16000, 2)
    logger.log_image("spec/restored", np.zeros((8, 12, 3), dtype=np.uint8), 2)
    logger.close()
    acc = _events(tmp_path / "tensorboard")
    assert [(e.step, e.value) for e in acc.Scalars("loss/mel_l1")] == [(1, 0.5), (2, 0.25)]
    (audio,) = acc.Audio("audio/restored")
    assert audio.step == 2 and audio.sample_rate == 16000
    (image,) = acc.Images("spec/restored")
    assert (image.width, image.height) == (12, 8)
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_a_training_run_logs_its_losses_to_tensorboard(one_thread, tmp_path):
    from test_trainers import stage1_cfg

    cfg = stage1_cfg(tmp_path, max_steps=2, log_every=1, export=False)
    cfg.exp.logger = "tensorboard"
    TRAINERS.get("miipher2_feature_cleaner").from_config(cfg).fit()
    acc = _events(tmp_path / "miipher2_feature_cleaner" / "tensorboard")
    steps = [e.step for e in acc.Scalars("loss/miipher_feature_loss")]
    assert steps == [1, 2]
    assert "valid/loss/miipher_feature_loss" in acc.Tags()["scalars"]
