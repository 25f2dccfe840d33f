"""The Miipher-2 stage trainers with the real (tiny, random-init) models and the demo corpus."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from restorekit.errors import CheckpointError, ConfigError
from restorekit.models.export import load_export
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


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_stage1_loss_leaves_the_padding_of_a_shorter_item_out(tmp_path):
    """A batch whose second item is half as long: the feature loss is the masked one (the padded
    frames count nowhere), not the loss over the padded tensors."""
    from restorekit.losses import LOSSES

    tr = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path))
    torch.manual_seed(0)
    clean = 0.1 * torch.randn(2, 16000)
    clean[1, 8000:] = 0
    degraded = clean + 0.05 * torch.randn(2, 16000) * (clean != 0)
    batch = {"clean": clean, "degraded": degraded, "sr": 16000, "lengths": torch.tensor([16000, 8000])}
    estimate, target, frames = tr._features(batch)
    cleaner = tr.raw("feature_cleaner")
    assert frames.tolist() == [cleaner.num_frames(16000, 16000), cleaner.num_frames(8000, 16000)]
    loss = LOSSES.build({"name": "miipher_feature_loss"}, where="t")
    got = tr.valid_losses(batch)["loss/miipher_feature_loss"]
    assert got == pytest.approx(float(loss(estimate, target, lengths=frames)), rel=1e-5)
    assert abs(got - float(loss(estimate, target))) > 1e-3
    unpadded = dict(batch, lengths=torch.tensor([16000, 16000]))
    assert tr._features(unpadded)[2] is None  # nothing to mask


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


@pytest.fixture(scope="module")
def first_stages(tmp_path_factory):
    """Stage 1 and stage 2 trained two steps each (fp32): the trainers, whose exports stage 3 starts from."""
    root = tmp_path_factory.mktemp("stages")
    s1 = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(root, max_steps=2))
    s1.fit()
    s2 = TRAINERS.get("miipher2_vocoder_pretrain").from_config(vocoder_cfg(root, max_steps=2))
    s2.fit()
    return s1, s2


def stage3_cfg(tmp_path, first_stages, **args):
    exports = [str(s.output_dir / "export") for s in first_stages]
    init = {"feature_cleaner": exports[0], "vocoder": exports[1], "mpd": exports[1]}
    return vocoder_cfg(tmp_path, "miipher2_vocoder_finetune", init_from=init, **args)


def test_stages_chain_through_exports(tmp_path, first_stages):
    """Stage 3 starts from the stage-2 export (EMA weights), keeps the stage-1 cleaner frozen and
    exports that cleaner unchanged. Mutation caught: BaseTrainer.build_models ignoring
    init_from.feature_cleaner (stage 3 then trains a fresh cleaner built from models.feature_cleaner)."""
    s1, s2 = first_stages
    export1 = s1.output_dir / "export"
    assert (export1 / "config.yaml").is_file()
    s3 = TRAINERS.get("miipher2_vocoder_finetune").from_config(stage3_cfg(tmp_path, first_stages, max_steps=2))
    with s2.ema.swapped_in():  # stage 3 starts from the stage-2 export, which holds the EMA weights
        for n, p in s2.models["vocoder"].named_parameters():
            torch.testing.assert_close(s3.models["vocoder"].state_dict()[n], p.detach())
    export3 = s3.fit()
    cleaner1 = load_export(str(export1))["feature_cleaner"].state_dict()
    restored = load_export(str(export3))
    assert {"feature_cleaner", "vocoder"} <= set(restored)
    cleaner3 = restored["feature_cleaner"].state_dict()
    assert cleaner3.keys() == cleaner1.keys()
    for name, tensor in cleaner1.items():
        assert torch.equal(cleaner3[name], tensor), f"{name}: the stage-3 export's cleaner is not stage 1's"


def lower_precision_outputs(trainer, roles) -> dict[str, set[torch.dtype]]:
    """Per role, the dtypes its Linear/Conv layers output in the next steps (forward hooks)."""
    seen: dict[str, set[torch.dtype]] = {r: set() for r in roles}
    for role in roles:
        for m in trainer.models[role].modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                m.register_forward_hook(lambda mod, i, out, role=role: seen[role].add(out.dtype))
    return seen


def bf16_step(trainer, roles) -> None:
    """One bf16 training step: finite losses, every optimizer updates, ``roles`` ran in bf16."""
    assert trainer.precision == "bf16"
    dtypes = lower_precision_outputs(trainer, roles)
    before = {k: v.clone() for k, v in trainer.model_state().items()}
    scalars = trainer._train_window([next(trainer._batches())])
    losses = {k: v for k, v in scalars.items() if k.startswith("loss/")}
    assert losses and all(np.isfinite(v) for v in losses.values()), scalars
    assert scalars["grad/nonfinite_skips"] == 0
    changed = {k.split(".")[0] for k, v in trainer.model_state().items() if not torch.equal(before[k], v)}
    assert changed == set(trainer.trainable_roles), changed
    for role, seen in dtypes.items():
        assert torch.bfloat16 in seen, f"{role} ran in {seen} under exp.precision=bf16"


def test_bf16_autocast_on_cpu_runs_a_step_of_every_stage(tmp_path, first_stages):
    """exp.precision=bf16 on a CPU: each Miipher-2 stage takes a finite step that updates every
    trainable role, with the cleaner / vocoder and discriminators in bf16. Mutation caught:
    BaseTrainer.autocast returning a null context for bf16 (everything silently in fp32)."""
    stages = {"stage1": (stage1_cfg(tmp_path), ["feature_cleaner"]),
              "stage2": (vocoder_cfg(tmp_path), ["vocoder", "mpd"]),
              "stage3": (stage3_cfg(tmp_path, first_stages), ["vocoder", "mpd"])}  # roles that must run in bf16
    for cfg, roles in stages.values():
        cfg.exp.precision = "bf16"
        bf16_step(TRAINERS.get(cfg.trainer.name).from_config(cfg), roles)


class StopAt:
    """A trainer callback that raises a real SIGTERM after step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, trainer) -> None:
        if trainer.step == self.step:
            signal.raise_signal(signal.SIGTERM)


def test_stage2_resumes_exactly_where_it_stopped(tmp_path):
    """A stage-2 run stopped by SIGTERM after step 2 and resumed ends at step 4 with the weights
    and EMA of the uninterrupted run, bit for bit: data position, random crops, GAN optimizers and
    RNG all restored. Mutation caught: load_checkpoint not restoring the RNG states (the resumed
    run then draws other random crops)."""
    def cfg(out):
        c = vocoder_cfg(out, max_steps=4, ema_decay=0.9, export=False, vocoder_segment_seconds=0.1)
        c.data.valid = None
        return c

    full = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg(tmp_path / "full"))
    full.fit()
    cut = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg(tmp_path / "cut"))
    cut.callbacks.append(StopAt(2))
    assert cut.fit() is None and cut.step == 2
    again = cfg(tmp_path / "cut")
    again.trainer.ckpt_dir = str(tmp_path / "cut" / "miipher2_vocoder_pretrain" / "ckpt")
    resumed = TRAINERS.get("miipher2_vocoder_pretrain").from_config(again)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 4
    for state in ("model_state", "ema"):
        a = full.model_state() if state == "model_state" else full.ema.state_dict()
        b = resumed.model_state() if state == "model_state" else resumed.ema.state_dict()
        assert a.keys() == b.keys() and a
        for k in a:
            assert torch.equal(a[k], b[k]), f"{state} {k} differs after resume"


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
