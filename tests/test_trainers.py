"""The Miipher-2 stage trainers with the real (tiny, random-init) models and the demo corpus."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from restorekit.errors import CheckpointError, ConfigError
from restorekit.trainers import TRAINERS

TINY_WAVLM = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "num_buckets": 8}
CLEANER = {"name": "parallel_adapter_cleaner",
           "args": {"bottleneck": 32, "encoder": {"name": "wavlm", "args": {"layer": 2, "config": TINY_WAVLM}}}}
# The smallest WaveFit that still has every part (noise path, FiLM, T iterations): these tests
# check the training logic, not audio quality, and must run in seconds on a shared 2-core CPU.
VOCODER = {"name": "wavefit", "args": {"feature_dim": 32, "sample_rate": 16000, "iterations": 1,
                                       "upsample_factors": [5, 4, 2, 2], "cond_channels": 8,
                                       "upsample_channels": [8, 8, 4, 4], "downsample_channels": [4, 4, 4, 8],
                                       "memory_efficient": True}}
MPD = {"name": "mpd", "args": {"periods": [2], "channels": [4, 8]}}
STFT = {"fft_sizes": [128, 256, 512], "hop_sizes": [32, 64, 128], "win_lengths": [128, 256, 512]}
NOISE = {"name": "chain", "args": {"ops": [{"name": "colored_noise", "p": 1.0, "args": {"snr_db": [0, 10]}}]}}


def demo(split: str, seconds: float = 0.5) -> dict:
    return {"name": "demo_speech", "args": {"split": split, "segment_seconds": seconds, "degradations": NOISE}}


def base_cfg(tmp_path, trainer: str, models: dict, losses: list, optimizers: dict, **args) -> OmegaConf:
    trainer_args = {"max_steps": 4, "log_every": 2, "ckpt_every": 100, "max_valid_items": 1, "ema_decay": 0.99,
                    "optimizers": optimizers, **args}
    return OmegaConf.create({
        "exp": {"name": trainer, "seed": 0, "output_dir": str(tmp_path / trainer), "device": "cpu",
                "precision": "auto", "logger": "console"},
        "data": {"sample_rate": 16000, "batch_size": 2, "train": demo("train"), "valid": demo("valid")},
        "models": models, "losses": losses, "metrics": [],
        "trainer": {"name": trainer, "ckpt_dir": None, "args": trainer_args},
    })


def stage1_cfg(tmp_path, **args):
    return base_cfg(tmp_path, "miipher2_feature_cleaner", {"feature_cleaner": CLEANER},
                    [{"name": "miipher_feature_loss", "weight": 1.0}],
                    {"generator": {"name": "adamw", "args": {"lr": 3e-3}, "grad_clip": 1.0}}, **args)


def vocoder_cfg(tmp_path, trainer="miipher2_vocoder_pretrain", **args):
    models = {"feature_cleaner": CLEANER, "vocoder": VOCODER,
              "mpd": MPD}
    losses = [{"name": "multi_resolution_stft", "weight": 1.0, "args": STFT},
              {"name": "hinge_gan", "weight": 0.1}, {"name": "feature_matching", "weight": 0.2}]
    optimizers = {"generator": {"name": "adamw", "args": {"lr": 2e-3}, "grad_clip": 10.0},
                  "discriminator": {"name": "adamw", "args": {"lr": 2e-3}, "grad_clip": 10.0}}
    return base_cfg(tmp_path, trainer, models, losses, optimizers, discriminators=["mpd"], **args)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are too small to gain from more, and on a shared,
    loaded 2-core machine extra threads only contend (a test took 3x longer with them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LossLog:
    """Collects a scalar after every step (a trainer callback)."""

    def __init__(self, key: str) -> None:
        self.key, self.values = key, []

    def __call__(self, trainer) -> None:
        self.values.append(trainer._last_scalars[self.key])


def test_stage1_loss_decreases_on_the_demo_corpus(tmp_path):
    cfg = stage1_cfg(tmp_path, max_steps=24, log_every=24, max_valid_items=4, ema_decay=None, export=False)
    cfg.data.batch_size = 4
    cfg.trainer.args.optimizers.generator.args.lr = 1e-2
    tr = TRAINERS.get("miipher2_feature_cleaner").from_config(cfg)
    log = LossLog("loss/miipher_feature_loss")
    tr.callbacks.append(log)
    before = tr.validate()["valid/loss/miipher_feature_loss"]  # fixed validation items: a fair comparison
    tr.fit()
    after = tr.validate()["valid/loss/miipher_feature_loss"]
    assert after < 0.97 * before, (before, after)
    assert np.mean(log.values[-5:]) < np.mean(log.values[:5]), log.values
    encoder = tr.models["feature_cleaner"].encoder.model
    assert all(not p.requires_grad for p in encoder.feature_extractor.parameters())


def test_stage2_overfits_one_utterance(tmp_path):
    from restorekit.datasets.demo import demo_corpus_dir

    # A quarter-second utterance and the tiny vocoder/discriminator keep this to a few CPU
    # seconds; the higher learning rate lets 40 steps fit one utterance (the STFT loss falls
    # to about a quarter; the test needs half).
    cfg = vocoder_cfg(tmp_path, max_steps=40, log_every=40, ema_decay=None, export=False)
    cfg.trainer.args.optimizers.generator.args.lr = 1e-2
    cfg.data.batch_size = 1
    cfg.data.train = {"name": "degraded_speech", "args": {"roots": [str(demo_corpus_dir("train"))], "num_items": 1,
                                                          "segment_seconds": 0.25, "validation": True}}
    cfg.data.valid = None
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg)
    log = LossLog("loss/multi_resolution_stft")
    tr.callbacks.append(log)
    tr.fit()
    assert np.mean(log.values[-5:]) < 0.5 * np.mean(log.values[:3]), log.values


def test_stages_chain_through_exports(tmp_path):
    load_export = pytest.importorskip("restorekit.models.export").load_export
    s1 = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path, max_steps=2))
    export1 = s1.fit()
    assert (export1 / "config.yaml").is_file()
    s2 = TRAINERS.get("miipher2_vocoder_pretrain").from_config(vocoder_cfg(tmp_path, max_steps=2))
    export2 = s2.fit()
    cfg3 = vocoder_cfg(tmp_path, "miipher2_vocoder_finetune", max_steps=2,
                       init_from={"feature_cleaner": str(export1), "vocoder": str(export2), "mpd": str(export2)})
    s3 = TRAINERS.get("miipher2_vocoder_finetune").from_config(cfg3)
    adapters = {n: p.detach().clone() for n, p in s3.models["feature_cleaner"].named_parameters()}
    with s2.ema.swapped_in():  # stage 3 starts from the stage-2 export, which holds the EMA weights
        for n, p in s2.models["vocoder"].named_parameters():
            torch.testing.assert_close(s3.models["vocoder"].state_dict()[n], p.detach())
    export3 = s3.fit()
    after = dict(s3.models["feature_cleaner"].named_parameters())
    assert all(torch.equal(adapters[n], after[n]) for n in adapters)  # the stage-1 cleaner stays frozen
    restored = load_export(str(export3))
    assert {"feature_cleaner", "vocoder"} <= set(restored)


def test_missing_role_fails_before_training(tmp_path):
    cfg = vocoder_cfg(tmp_path)
    del cfg.models["mpd"]
    with pytest.raises(ConfigError, match=r"trainer 'miipher2_vocoder_pretrain' needs models.mpd but the config has none"):
        TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg)


def test_stage3_with_missing_stage1_export_fails_before_training(tmp_path):
    cfg = vocoder_cfg(tmp_path, "miipher2_vocoder_finetune",
                      init_from={"feature_cleaner": str(tmp_path / "no_stage1" / "export"),
                                 "vocoder": str(tmp_path / "no_stage2" / "export")})
    with pytest.raises(CheckpointError, match=r"init_from.feature_cleaner: no export at .*no_stage1/export .*run the stage"):
        TRAINERS.get("miipher2_vocoder_finetune").from_config(cfg)
    assert not (tmp_path / "miipher2_vocoder_finetune").exists()  # nothing was built or written
    cfg.trainer.args.init_from = {}
    with pytest.raises(ConfigError, match=r"init_from.feature_cleaner is not set: stage 3 starts from the stage-1"):
        TRAINERS.get("miipher2_vocoder_finetune").from_config(cfg)
