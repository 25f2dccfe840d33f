"""The waveform-generator stages (HiFi-GAN, HiFi++, FINALLY 1-3) with tiny real models on one utterance."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from restorekit.datasets.demo import demo_corpus_dir
from restorekit.errors import CheckpointError, ConfigError
from restorekit.models.export import load_export
from restorekit.trainers import TRAINERS
from restorekit.trainers.gan import GanLosses, _generator_losses, _generator_sub_batched
from tests.test_losses import TINY_WAVLM

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_UNETS = {"spectralunet_widths": [4, 4, 8, 8, 8], "spectralunet_depth": 1, "spectralunet_out": 16,
               "waveunet_widths": [4, 4, 8, 8], "waveunet_depth": 1, "spectralmasknet_widths": [4, 4, 8, 8],
               "spectralmasknet_depth": 1}
HIFIGAN = {"name": "hifigan", "args": {"channels": 32, "resblock_kernel_sizes": [3], "resblock_dilations": [[1, 3]]}}
A2A = {"name": "a2a_hifipp", "args": {"channels": 16, **SMALL_UNETS}}
UPSAMPLER = {"upsampler_widths": [4, 4, 4, 4, 8], "upsampler_depth": 1, "upsampler_channels": 16}


def finally_node(upsample: bool = False, wavlm: dict | None = None) -> dict:
    extra = UPSAMPLER if upsample else {}
    return {"name": "finally", "args": {"wavlm": wavlm, "upsample": upsample, "channels": 32, **SMALL_UNETS, **extra}}


MPD = {"name": "mpd", "args": {"periods": [2, 3], "channels": [4, 8]}}
MSD = {"name": "msd", "args": {"scales": 2, "channels": [4, 4, 8, 8, 8, 8, 8], "groups": [1, 1, 2, 2, 2, 2, 1]}}
MSSTFT = {"name": "ms_stft", "args": {"fft_sizes": [512, 256], "channels": 4, "depth": 2, "normalized": True,
                                      "center": False, "negative_slope": 0.2, "post_in_maps": False}}
LMOS = {"name": "lmos", "weight": 1.0, "args": {"pretrained": None, "config": TINY_WAVLM}}
ADAM = {"name": "adamw", "args": {"lr": 3e-3, "betas": [0.8, 0.99]}, "grad_clip": 10.0}


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    """One utterance: a demo-corpus recording (clean) and a fixed noisy copy, 16 kHz, as paired folders."""
    root = tmp_path_factory.mktemp("one_pair")
    wav = sorted(demo_corpus_dir("train").rglob("*.wav"))[0]
    clean, sr = sf.read(wav, dtype="float32")
    clean = clean[: int(1.024 * sr)]
    noisy = clean + 0.02 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    for sub, audio in (("clean", clean), ("noisy", noisy)):
        (root / sub).mkdir()
        sf.write(root / sub / "utt.wav", audio, sr)
    return root


def cfg_for(tmp_path, pair_dirs, trainer: str, models: dict, losses, sample_rate=16000, context=False,
            optimizers=None, **args) -> OmegaConf:
    data_args = {"degraded_dir": str(pair_dirs / "noisy"), "clean_dir": str(pair_dirs / "clean"),
                 "segment_seconds": 0.512, "context_seconds": 1.024 if context else None}
    trainer_args = {"max_steps": 2, "log_every": 1, "ckpt_every": 100, "max_valid_items": 1, "ema_decay": None,
                    "num_audio_samples": 0, "optimizers": optimizers or {"generator": ADAM}, **args}
    return OmegaConf.create({
        "exp": {"name": trainer, "seed": 0, "output_dir": str(tmp_path / trainer), "device": "cpu",
                "precision": "fp32", "logger": "console"},
        "data": {"sample_rate": sample_rate, "batch_size": 1,
                 "train": {"name": "paired_folders", "args": data_args},
                 "valid": {"name": "paired_folders", "args": {**data_args, "segment_seconds": None,
                                                              "context_seconds": None}}},
        "models": models, "losses": losses, "metrics": [],
        "trainer": {"name": trainer, "ckpt_dir": None, "args": trainer_args},
    })


class LossLog:
    def __init__(self, key: str) -> None:
        self.key, self.values = key, []

    def __call__(self, trainer) -> None:
        self.values.append(trainer._last_scalars[self.key])


def gan_optimizers():
    return {"generator": ADAM, "discriminator": ADAM}


def _overfit(cfg, key: str) -> list[float]:
    tr = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg)
    log = LossLog(key)
    tr.callbacks.append(log)
    tr.fit()
    return log.values


OVERFIT = {
    "hifigan": lambda t, p: cfg_for(
        t, p, "hifigan", {"generator": HIFIGAN, "mpd": MPD, "msd": MSD},
        [{"name": "mel_l1", "weight": 45.0, "args": {"sample_rate": 16000, "n_mels": 80}},
         {"name": "lsgan", "weight": 1.0, "args": {"reduction": "sum"}},
         {"name": "feature_matching", "weight": 2.0, "args": {"reduction": "sum"}}],
        optimizers=gan_optimizers(), discriminators=["mpd", "msd"]),
    "hifipp": lambda t, p: cfg_for(
        t, p, "hifipp", {"generator": A2A, "msd": {**MSD, "args": {**MSD["args"], "same_scale": True}}},
        [{"name": "mel_l1", "weight": 45.0, "args": {"sample_rate": 16000, "n_mels": 80}},
         {"name": "lsgan", "weight": 1.0}, {"name": "feature_matching", "weight": 2.0}],
        optimizers=gan_optimizers(), discriminators=["msd"]),
    "finally_stage1": lambda t, p: cfg_for(t, p, "finally_stage1", {"generator": finally_node()}, [LMOS],
                                           context=True),
    "finally_stage2": lambda t, p: cfg_for(
        t, p, "finally_stage2", {"generator": finally_node(), "discriminators": MSSTFT},
        [LMOS, {"name": "lsgan", "weight": 0.02}, {"name": "feature_matching", "weight": 0.2}],
        context=True, optimizers=gan_optimizers()),
    "finally_stage3_pretrain": lambda t, p: cfg_for(
        t, p, "finally_stage3_pretrain", {"generator": finally_node(upsample=True)},
        [{**LMOS, "args": {**LMOS["args"], "sample_rate": 48000}}], sample_rate=48000, context=True),
    "finally_stage3": lambda t, p: cfg_for(
        t, p, "finally_stage3", {"generator": finally_node(upsample=True), "discriminators": MSSTFT},
        [{**LMOS, "args": {**LMOS["args"], "sample_rate": 48000}}, {"name": "lsgan", "weight": 0.02},
         {"name": "feature_matching", "weight": 0.2}],
        sample_rate=48000, context=True, optimizers=gan_optimizers(), discriminator_steps=2),
}
MAIN_LOSS = {"hifigan": "loss/mel_l1", "hifipp": "loss/mel_l1"}
LR = {"finally_stage3": 3e-3}  # the whole 48 kHz generator against two D updates a step: 1e-2 oscillates


@pytest.mark.slow
@pytest.mark.parametrize("trainer", list(OVERFIT))
def test_each_stage_overfits_one_utterance(tmp_path, pair_dirs, trainer):
    """Its main loss halves within 25 steps on one 1 s utterance (tiny models, CPU, 10-40 s each)."""
    cfg = OVERFIT[trainer](tmp_path, pair_dirs)
    cfg.data.train.args.segment_seconds = 1.024  # the whole utterance (and its whole row as context)
    cfg.trainer.args.max_steps = 25
    cfg.trainer.args.export = False
    cfg.trainer.args.optimizers.generator.args.lr = LR.get(trainer, 1e-2)
    values = _overfit(cfg, MAIN_LOSS.get(trainer, "loss/lmos"))
    first, last = values[0], float(np.mean(values[-3:]))
    assert last <= 0.5 * first, f"{trainer}: main loss {first:.3f} -> {last:.3f}"


def test_hifigan_exports_a_vocoder_that_inference_and_the_api_load(tmp_path, pair_dirs):
    """Mel vocoder exports re-synthesise a file: the path users run after training."""
    import restorekit
    from restorekit.inference import main as infer

    cfg = OVERFIT["hifigan"](tmp_path, pair_dirs)
    export = TRAINERS.get("hifigan").from_config(cfg).fit()
    assert sorted(load_export(export)) == ["generator", "mpd", "msd"]
    restorer = restorekit.load(export)
    wave, file_sr = sf.read(pair_dirs / "noisy" / "utt.wav", dtype="float32")  # the demo corpus' own rate
    expected = round(len(wave) * 16000 / file_sr)
    out, sr = restorer(wave, file_sr)
    assert sr == 16000 and len(out) == expected and np.abs(out).max() == pytest.approx(0.9, abs=1e-4)
    rc = infer([f"exp.ckpt_dir={export}", f"input={pair_dirs / 'noisy'}", f"output_dir={tmp_path / 'out'}"])
    written, rate = sf.read(tmp_path / "out" / "utt.wav")
    assert rc == 0 and rate == 16000 and len(written) == expected


def test_discriminator_steps_update_d_twice_per_generator_step(tmp_path, pair_dirs):
    cfg = OVERFIT["finally_stage3"](tmp_path, pair_dirs)
    cfg.trainer.args.export = False
    tr = TRAINERS.get("finally_stage3").from_config(cfg)
    tr.fit()
    d_state = tr.optim["discriminator"].optimizer.state
    g_state = tr.optim["generator"].optimizer.state
    assert {int(s["step"]) for s in d_state.values()} == {4} and {int(s["step"]) for s in g_state.values()} == {2}


def test_discriminator_steps_with_accumulation_is_a_config_error(tmp_path, pair_dirs):
    cfg = OVERFIT["finally_stage3"](tmp_path, pair_dirs)
    cfg.trainer.args.grad_accum = 2
    with pytest.raises(ConfigError, match="discriminator_steps > 1 needs grad_accum: 1"):
        TRAINERS.get("finally_stage3").from_config(cfg)


def test_sub_batches_give_the_full_batch_generator_gradient(tmp_path, pair_dirs):
    """Stage 3's sub-batching: one generator pass, losses per part on a detached output, one backward.
    The generator gradient equals the whole batch's to float32 rounding: relative L2 error below 1e-4
    (measured 5e-5 with 4 parts: gradients reach 5e3 and are summed over 10^5 samples in another
    order), and every element within 1e-4 of the largest gradient magnitude (per-element relative errors are
    meaningless where large terms cancel, e.g. a bias summing thousands of samples). Mutation caught:
    each part's loss not divided by the number of parts (gradient x2)."""
    cfg = OVERFIT["finally_stage3"](tmp_path, pair_dirs)
    tr = TRAINERS.get("finally_stage3").from_config(cfg)
    gen = tr.raw("generator")
    g = torch.Generator().manual_seed(0)
    degraded, real = 0.1 * torch.randn(4, 8192, generator=g), 0.1 * torch.randn(4, 24576, generator=g)
    losses = GanLosses.split(tr.losses_for("generator"))
    grads = []
    for parts in (1, 2, 4):
        gen.zero_grad(set_to_none=True)
        fake = gen(degraded)
        if parts == 1:
            total, _ = _generator_losses(tr, losses, ["discriminators"], fake, real)
            tr.backward(total, "generator")
        else:
            _generator_sub_batched(tr, losses, ["discriminators"], fake, real, parts)
        grads.append(torch.cat([p.grad.flatten() for p in gen.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    scale = grads[0].abs().max()
    for other in grads[1:]:
        assert ((other - grads[0]).norm() / grads[0].norm()) < 1e-4
        torch.testing.assert_close(other, grads[0], rtol=0, atol=1e-4 * float(scale))
    assert all(p.grad is None for p in tr.raw("discriminators").parameters())


def test_sub_batches_must_divide_the_batch(tmp_path, pair_dirs):
    cfg = OVERFIT["finally_stage3"](tmp_path, pair_dirs, )
    cfg.trainer.args.sub_batches = 3
    cfg.trainer.args.discriminator_steps = 1
    tr = TRAINERS.get("finally_stage3").from_config(cfg)
    with pytest.raises(ConfigError, match=r"sub_batches \(3\) must divide the batch \(1 items\)"):
        tr.fit()


def test_stage3_pretrain_trains_only_the_upsampler_grown_from_stage2(tmp_path, pair_dirs):
    """init_weights loads the stage-2 generator into the larger stage-3 model (the upsampler is new);
    train_only keeps every other weight exactly as exported."""
    s2 = OVERFIT["finally_stage2"](tmp_path, pair_dirs)
    stage2 = TRAINERS.get("finally_stage2").from_config(s2).fit()
    cfg = OVERFIT["finally_stage3_pretrain"](tmp_path, pair_dirs)
    cfg.trainer.args.init_weights = {"generator": str(stage2)}
    tr = TRAINERS.get("finally_stage3_pretrain").from_config(cfg)
    assert "tensors new (not in init_weights' export); exported conv_post dropped (not in this model)" in tr.banner()
    export = tr.fit()
    before = load_export(stage2)["generator"].state_dict()
    after = load_export(export)["generator"].state_dict()
    grown = [k for k in after if k not in before]
    assert grown and all(k.startswith("upsampler.") for k in grown)
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(("core.", "pre_upsampler.")))
    fresh = TRAINERS.get("finally_stage3_pretrain").from_config(cfg).raw("generator").state_dict()
    assert any(not torch.equal(after[k], fresh[k]) for k in grown)  # the upsampler did train


def test_init_weights_that_do_not_fit_are_an_error(tmp_path, pair_dirs):
    stage1 = TRAINERS.get("finally_stage1").from_config(OVERFIT["finally_stage1"](tmp_path, pair_dirs)).fit()
    cfg = OVERFIT["finally_stage3_pretrain"](tmp_path, pair_dirs)
    cfg.models.generator.args.channels = 16
    cfg.trainer.args.init_weights = {"generator": str(stage1)}
    with pytest.raises(CheckpointError, match="do not fit models.generator as configured"):
        TRAINERS.get("finally_stage3_pretrain").from_config(cfg)


def test_train_only_names_a_missing_submodule(tmp_path, pair_dirs):
    cfg = OVERFIT["finally_stage1"](tmp_path, pair_dirs)
    cfg.trainer.args.train_only = {"generator": ["upsamplr"]}
    with pytest.raises(ConfigError, match="train_only.generator: 'upsamplr' is not a submodule"):
        TRAINERS.get("finally_stage1").from_config(cfg)


def test_stage3_pretrain_needs_an_upsampler(tmp_path, pair_dirs):
    cfg = OVERFIT["finally_stage3_pretrain"](tmp_path, pair_dirs)
    cfg.models.generator = finally_node(upsample=False)
    with pytest.raises(ConfigError, match="set models.generator.args.upsample: true"):
        TRAINERS.get("finally_stage3_pretrain").from_config(cfg)


def test_finally_stages_hand_the_generator_its_16k_input_and_context_row(tmp_path, pair_dirs):
    """At 48 kHz (stage 3) the degraded segment, WavLM's context row and the crop offset all reach
    the generator at its 16 kHz input rate: offset / 3, row length / 3, segment = row[offset:]."""
    cfg = OVERFIT["finally_stage3"](tmp_path, pair_dirs)
    tr = TRAINERS.get("finally_stage3").from_config(cfg)
    batch = next(iter(tr.train_loader))
    (wave,), kwargs = tr.generator_inputs(batch)
    assert wave.shape == (1, 8192) and kwargs["context"].shape == (1, batch["context"].shape[1] // 3)
    offset = int(kwargs["context_offset"][0])
    assert offset * 3 == int(batch["context_offset"][0]) and offset % 256 == 0
    assert kwargs["context_lengths"].tolist() == [int(batch["context_lengths"][0]) // 3]  # padding stays out of WavLM
    inner = slice(64, -64)  # resampling a segment and its row differs only near the segment's edges
    torch.testing.assert_close(wave[0, inner], kwargs["context"][0, offset: offset + 8192][inner], atol=2e-3, rtol=0)
