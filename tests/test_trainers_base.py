"""BaseTrainer machinery on a tiny real GAN (conv generator + conv discriminator, real losses).

The stage trainers are tested in test_trainers.py; here the loop, accumulation, GAN step,
EMA, checkpoints and exact resume are checked on modules small enough to run in a second.
"""
from __future__ import annotations

import pickle
import signal
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn

from restorekit.errors import CheckpointError, ConfigError
from restorekit.trainers import checkpoint
from restorekit.trainers.base import BaseTrainer, role_seed
from restorekit.trainers.gan import GanLosses, adversarial_step
from restorekit.trainers.resume import config_for_train

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyDisc(nn.Module):
    """Two conv layers; returns ([logits], [[feature maps]]) like the real discriminators."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(1, 4, 9, stride=4, padding=4)
        self.b = nn.Conv1d(4, 1, 5, padding=2)

    def forward(self, wave: torch.Tensor):
        h = torch.nn.functional.leaky_relu(self.a(wave.unsqueeze(1)), 0.1)
        out = self.b(h)
        return [out], [[h, out]]


class ListSet(torch.utils.data.Dataset):
    """Noisy sines with names, as dataset items of the contract."""

    def __init__(self, n: int = 8, samples: int = 512) -> None:
        g = torch.Generator().manual_seed(0)
        t = torch.arange(samples) / 8000
        self.items = []
        for i in range(n):
            clean = 0.5 * torch.sin(2 * np.pi * (200 + 50 * i) * t)
            self.items.append({"clean": clean, "degraded": clean + 0.1 * torch.randn(samples, generator=g),
                               "sr": 8000, "name": f"item{i}", "degradations": []})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class TinyGanTrainer(BaseTrainer):
    """A real BaseTrainer subclass whose models and data are built here, not from registries."""

    required_roles = ("generator", "discriminator")
    trainable_roles = ("generator", "discriminator")
    ema_role = "generator"
    export_roles = ("generator",)

    def optimizer_roles(self):
        return {"generator": ["generator"], "discriminator": ["discriminator"]}

    def build_models(self):
        torch.manual_seed(role_seed(self.seed, "generator"))
        gen = nn.Conv1d(1, 1, 9, padding=4)
        torch.manual_seed(role_seed(self.seed, "discriminator"))
        models = {"generator": gen, "discriminator": TinyDisc()}
        self.seed_everything(self.seed)
        return models

    def build_dataset(self, node, where, validation=False):
        return ListSet()

    def train_step(self, batch):
        # the random gain makes the step consume the global RNG, which resume must restore
        gain = 1.0 + 0.1 * torch.rand(())
        fake = self.model("generator")(batch["degraded"].unsqueeze(1)).squeeze(1) * gain
        return adversarial_step(self, GanLosses.split(self.losses_for("")), ["discriminator"], fake, batch["clean"])

    def export(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.models["generator"].state_dict(), folder / "generator.pt")


def tiny_cfg(out: Path, **args) -> OmegaConf:
    stft = {"fft_sizes": [64, 128], "hop_sizes": [16, 32], "win_lengths": [64, 128]}
    trainer_args = {
        "max_steps": 6, "grad_accum": 2, "log_every": 2, "ckpt_every": 100, "keep_last": 2, "ema_decay": 0.9,
        "optimizers": {
            "generator": {"name": "adamw", "args": {"lr": 1e-2}, "grad_clip": 1.0,
                          "scheduler": {"name": "linear_warmup", "args": {"warmup_steps": 2}}},
            "discriminator": {"name": "adam", "args": {"lr": 1e-2}, "grad_clip": 5.0},
        },
    }
    trainer_args.update(args)
    return OmegaConf.create({
        "exp": {"name": "tiny", "seed": 3, "output_dir": str(out), "device": "cpu", "precision": "fp32",
                "logger": "console"},
        "data": {"batch_size": 2, "train": {"name": "unused"}},
        "models": {"generator": {"name": "unused"}, "discriminator": {"name": "unused"}},
        "losses": [{"name": "multi_resolution_stft", "weight": 1.0, "args": stft},
                   {"name": "hinge_gan", "weight": 1.0}, {"name": "feature_matching", "weight": 2.0},
                   {"name": "mel_l1", "weight": 0, "args": {"sample_rate": 8000, "n_fft": 128, "hop_length": 32,
                                                          "n_mels": 16}}],
        "trainer": {"name": "tiny", "ckpt_dir": None, "args": trainer_args},
    })


def params(trainer: BaseTrainer) -> dict[str, torch.Tensor]:
    return {f"{r}.{n}": p.detach().clone() for r, m in trainer.models.items() for n, p in m.named_parameters()}


def assert_same(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def stop_at(step: int, signum: int = signal.SIGTERM):
    def callback(trainer: BaseTrainer) -> None:
        if trainer.step == step:
            signal.raise_signal(signum)  # a real signal, handled by the trainer's handler
    return callback


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_at_half_then_resume_matches_uninterrupted_run(tmp_path, capsys, signum):
    """SIGINT (Ctrl-C) saves and resumes exactly like SIGTERM. Mutation caught: _signal_handlers
    installing the handler for SIGTERM only (Ctrl-C then ends the run with no checkpoint)."""
    full = TinyGanTrainer(tiny_cfg(tmp_path / "full"))
    full.fit()

    cut = TinyGanTrainer(tiny_cfg(tmp_path / "cut"))
    cut.callbacks.append(stop_at(3, signum))
    previous = signal.getsignal(signum)
    try:
        assert cut.fit() is None  # interrupted: no export
    except KeyboardInterrupt:
        pytest.fail(f"{signal.Signals(signum).name} was not handled by the trainer: no checkpoint was saved")
    assert f"received {signal.Signals(signum).name}" in capsys.readouterr().out
    assert cut.step == 3
    assert (tmp_path / "cut" / "ckpt" / "latest").resolve().name == "step_00000003"
    assert signal.getsignal(signum) is previous  # handlers restored

    cfg = tiny_cfg(tmp_path / "cut")
    cfg.trainer.ckpt_dir = str(tmp_path / "cut" / "ckpt")
    resumed = TinyGanTrainer(cfg)
    assert resumed.step == 3
    assert resumed.fit() == tmp_path / "cut" / "export"
    assert resumed.step == 6
    assert_same(params(resumed), params(full))
    assert_same(resumed.ema.state_dict(), full.ema.state_dict())


def test_discriminator_has_no_gradient_after_generator_step(tmp_path):
    tr = TinyGanTrainer(tiny_cfg(tmp_path, grad_accum=1))
    before = params(tr)
    batch = next(tr._batches())
    tr._train_window([batch])
    after = params(tr)
    for name, p in tr.models["discriminator"].named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
        assert p.requires_grad, f"{name} left frozen after the generator step"
    assert not torch.equal(before["discriminator.a.weight"], after["discriminator.a.weight"])
    assert not torch.equal(before["generator.weight"], after["generator.weight"])


def test_generator_loss_alone_gives_discriminator_no_gradient(tmp_path):
    tr = TinyGanTrainer(tiny_cfg(tmp_path, grad_accum=1))
    tr._last_micro = False  # accumulate only: nothing is stepped or zeroed
    batch = tr.to_device(next(tr._batches()))
    fake = tr.model("generator")(batch["degraded"].unsqueeze(1)).squeeze(1)
    losses = GanLosses.split(tr.losses_for(""))
    with tr.frozen("discriminator"):
        logits, _ = tr.raw("discriminator")(fake)
        total, scalars = tr.weighted_losses(losses.adversarial, logits)
    tr.backward(total, "generator")
    assert all(p.grad is None for p in tr.models["discriminator"].parameters())
    assert tr.models["generator"].weight.grad.abs().sum() > 0
    assert set(scalars) == {"loss/hinge_gan"}


def record_update_grads(trainer: BaseTrainer) -> dict[str, list[list[torch.Tensor]]]:
    """Per optimizer group, a copy of the gradients each ``optimizer.step()`` applied (after clipping)."""
    seen: dict[str, list[list[torch.Tensor]]] = defaultdict(list)
    for name, group in trainer.optim.items():
        def keep(optimizer, args, kwargs, _name=name, _params=group.params):
            seen[_name].append([torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in _params])
        group.optimizer.register_step_pre_hook(keep)
    return seen


def grad_norm(grads: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def one_window_grads(out: Path, losses: list, **args) -> tuple[dict, dict[str, float]]:
    """The gradients the first update of a TinyGanTrainer applies, with ``losses`` as its loss list."""
    cfg = tiny_cfg(out, grad_accum=1, **args)
    cfg.losses = losses
    tr = TinyGanTrainer(cfg)
    grads = record_update_grads(tr)
    return grads, tr._train_window([next(tr._batches())])


def test_weight_zero_loss_is_logged_without_gradient(tmp_path):
    """Weight 0: computed and logged, but the gradients equal those of the run without the term
    (and differ from the run where it has weight 1). Mutation caught: weighted_losses adding
    ``(t.weight or 1.0) * value`` (a weight of 0 read as "unset")."""
    losses = list(tiny_cfg(tmp_path).losses)
    assert losses[-1].name == "mel_l1" and losses[-1].weight == 0
    with_zero, scalars = one_window_grads(tmp_path / "zero", losses)
    without, _ = one_window_grads(tmp_path / "without", losses[:-1])
    with_one, _ = one_window_grads(tmp_path / "one", [*losses[:-1], {**losses[-1], "weight": 1.0}])
    assert scalars["loss/mel_l1"] > 0
    for group in ("generator", "discriminator"):
        assert all(torch.equal(a, b) for a, b in zip(with_zero[group][0], without[group][0], strict=True)), group
    assert not all(torch.allclose(a, b) for a, b in zip(with_one["generator"][0], without["generator"][0]))
    for key in ("loss/multi_resolution_stft", "loss/hinge_gan", "loss/hinge_gan_d", "loss/feature_matching",
                "grad/generator_norm", "grad/discriminator_norm", "lr/generator", "lr/discriminator"):
        assert np.isfinite(scalars[key]), key
    assert scalars["lr/generator"] == pytest.approx(1e-2)  # warm-up of 2: step 0 at 1/2, step 1 at 1


def test_grad_clip_bounds_the_gradient_each_optimizer_applies(tmp_path):
    """Each group's update uses its gradient clipped to its own ``grad_clip`` (the logged norm is the
    norm before clipping); without grad_clip the gradient is applied as is. Mutation caught:
    optimizer_step calling clip_grad_norm_ with max_norm=inf whatever grad_clip says."""
    optimizers = tiny_cfg(tmp_path).trainer.args.optimizers
    optimizers.generator.grad_clip, optimizers.discriminator.grad_clip = 1e-3, 1e-4
    clipped, scalars = one_window_grads(tmp_path / "clipped", list(tiny_cfg(tmp_path).losses), optimizers=optimizers)
    for group, clip in (("generator", 1e-3), ("discriminator", 1e-4)):
        assert scalars[f"grad/{group}_norm"] > 10 * clip, scalars
        assert grad_norm(clipped[group][0]) == pytest.approx(clip, rel=1e-4), group
    optimizers.generator.grad_clip = None
    free, scalars = one_window_grads(tmp_path / "free", list(tiny_cfg(tmp_path).losses), optimizers=optimizers)
    assert grad_norm(free["generator"][0]) == pytest.approx(scalars["grad/generator_norm"], rel=1e-5)


class TinyRegressionTrainer(BaseTrainer):
    """A generator alone, trained with the config's losses against the clean target (no GAN, no
    randomness in the step): with a loss that averages over items, accumulating k micro-batches
    must give the gradient of one batch k times larger."""

    required_roles = ("generator",)
    trainable_roles = ("generator",)
    ema_role = "generator"

    def build_models(self):
        torch.manual_seed(role_seed(self.seed, "generator"))
        models = {"generator": nn.Conv1d(1, 1, 9, padding=4)}
        self.seed_everything(self.seed + self.dist.rank)
        return models

    def build_dataset(self, node, where, validation=False):
        return ListSet()

    def train_step(self, batch):
        fake = self.model("generator")(batch["degraded"].unsqueeze(1)).squeeze(1)
        loss, scalars = self.weighted_losses(self.losses_for(""), fake, batch["clean"])
        self.backward(loss, "generator")
        self.optimizer_step("generator")
        return scalars


def regression_cfg(out: Path, batch_size: int, **args) -> OmegaConf:
    """TinyRegressionTrainer's config: the multi-resolution STFT loss (per-item spectral convergence
    and log-magnitude L1, both means over items), Adam, no clipping."""
    cfg = tiny_cfg(out, optimizers={"generator": {"name": "adam", "args": {"lr": 1e-2}}}, **args)
    cfg.data.batch_size = batch_size
    cfg.losses = [cfg.losses[0]]
    del cfg.models["discriminator"]
    return cfg


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """Two micro-batches of 2 give the gradient (and the update) of one batch of the same 4 items.
    Mutations caught: backward without the 1/grad_accum scale (twice the gradient), and
    optimizer_step stepping at every micro-batch instead of the last."""
    accumulated = TinyRegressionTrainer(regression_cfg(tmp_path / "accum", 2, grad_accum=2))
    large = TinyRegressionTrainer(regression_cfg(tmp_path / "large", 4, grad_accum=1))
    grads = [record_update_grads(accumulated), record_update_grads(large)]
    it = accumulated._batches()
    micro = [next(it), next(it)]
    batch = next(large._batches())
    assert [n for b in micro for n in b["names"]] == batch["names"]  # the same items, in the same order
    accumulated._train_window(micro)
    large._train_window([batch])
    assert len(grads[0]["generator"]) == len(grads[1]["generator"]) == 1  # one update per window
    for a, b in zip(grads[0]["generator"][0], grads[1]["generator"][0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    assert_same(params(accumulated), params(large))


def test_ema_copies_the_weights_until_ema_start_then_averages(tmp_path):
    """Before ``ema_start`` the shadow equals the weights; from that step on it is
    decay * previous + (1 - decay) * weights. Mutations caught: EMA.update ignoring start_step
    (averaging from step 1), and starting one step late (``step > start_step``)."""
    tr = TinyGanTrainer(tiny_cfg(tmp_path, max_steps=5, grad_accum=1, ema_start=3, ema_decay=0.9, export=False))
    log = []
    tr.callbacks.append(lambda t: log.append((t.models["generator"].weight.detach().clone(),
                                              t.ema.shadow["weight"].clone())))
    tr.fit()
    assert len(log) == 5
    for weight, shadow in log[:2]:  # steps 1 and 2
        assert torch.equal(shadow, weight)
    previous = log[1][1]
    for weight, shadow in log[2:]:  # steps 3 to 5
        assert not torch.allclose(shadow, weight)
        torch.testing.assert_close(shadow, 0.9 * previous + 0.1 * weight, rtol=1e-6, atol=1e-7)
        previous = shadow


class ValidationRecorder(TinyGanTrainer):
    """Records the generator weights its validation pass ran with."""

    def valid_losses(self, batch):
        self.validated_with = self.model("generator").weight.detach().clone()
        return {}


def test_validation_runs_with_the_ema_weights_and_restores_the_live_ones(tmp_path):
    """Mutation caught: validate() without ``ema.swapped_in()`` (validation scores the live weights)."""
    cfg = tiny_cfg(tmp_path, max_steps=3, grad_accum=1, export=False, max_valid_items=1)
    cfg.data.valid = {"name": "unused"}
    tr = ValidationRecorder(cfg)
    tr.fit()  # validates once, at the end
    live = tr.models["generator"].weight.detach()
    assert not torch.allclose(tr.ema.shadow["weight"], live)
    assert torch.equal(tr.validated_with, tr.ema.shadow["weight"])
    assert torch.equal(tr.models["generator"].weight.detach(), live)  # swapped back


def test_ema_is_saved_restored_and_differs_from_the_weights(tmp_path):
    tr = TinyGanTrainer(tiny_cfg(tmp_path, max_steps=4, ckpt_every=4))
    tr.fit()
    saved = load_file(str(tmp_path / "ckpt" / "latest" / "ema.safetensors"))
    assert_same(saved, tr.ema.state_dict())
    assert not torch.allclose(saved["weight"], tr.models["generator"].weight.detach())
    cfg = tiny_cfg(tmp_path, max_steps=4, ckpt_every=4)
    cfg.trainer.ckpt_dir = str(tmp_path)
    again = TinyGanTrainer(cfg)
    assert_same(again.ema.state_dict(), saved)
    with again.ema.swapped_in() as gen:
        torch.testing.assert_close(gen.weight.detach(), saved["weight"])
    assert not torch.allclose(again.models["generator"].weight.detach(), saved["weight"])  # swapped back
    exported = torch.load(tmp_path / "export" / "generator.pt")
    torch.testing.assert_close(exported["weight"], saved["weight"])  # the export holds the EMA weights


def test_checkpoint_interrupted_mid_write_leaves_latest_on_the_previous_one(tmp_path):
    tr = TinyGanTrainer(tiny_cfg(tmp_path, max_steps=2, ckpt_every=2))
    tr.fit()
    root = tmp_path / "ckpt"
    assert (root / "latest").resolve().name == "step_00000002"
    state = tr.training_state()
    state["unpicklable"] = lambda: None  # torch.save fails after the weights were already written
    with pytest.raises((pickle.PicklingError, AttributeError)):  # torch.save cannot pickle a lambda
        checkpoint.save(root, 3, tr.model_state(), state, tr.cfg, ema=tr.ema.state_dict())
    assert (root / "latest").resolve().name == "step_00000002"
    assert [p.name for p in checkpoint.list_checkpoints(root)] == ["step_00000002"]
    assert not list(root.glob(".tmp-*"))
    # a run killed with SIGKILL mid-write leaves its temporary folder: ignored, then cleaned
    (root / ".tmp-step_00000004-999").mkdir()
    (root / ".tmp-step_00000004-999" / "models.safetensors").write_bytes(b"partial")
    assert checkpoint.resolve(root) == (root / "step_00000002").resolve()
    checkpoint.save(root, 4, tr.model_state(), tr.training_state(), tr.cfg)
    assert not list(root.glob(".tmp-*"))
    assert (root / "latest").resolve().name == "step_00000004"


def test_keep_last_prunes_old_checkpoints(tmp_path):
    TinyGanTrainer(tiny_cfg(tmp_path, max_steps=4, grad_accum=1, ckpt_every=1, keep_last=2)).fit()
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path / "ckpt")]
    assert names == ["step_00000003", "step_00000004"]
    assert (tmp_path / "ckpt" / "latest").resolve().name == "step_00000004"
    state = torch.load(tmp_path / "ckpt" / "latest" / "state.pt", weights_only=False)
    assert state["step"] == 4 and set(state["optimizers"]) == {"generator", "discriminator"}
    assert len(state["rng"]) == 1 and {"python", "numpy", "torch"} <= set(state["rng"][0])


def test_missing_role_is_named_before_training(tmp_path):
    cfg = tiny_cfg(tmp_path)
    del cfg.models["discriminator"]
    with pytest.raises(ConfigError, match=r"trainer 'tiny' needs models.discriminator but the config has none"):
        TinyGanTrainer(cfg)


def test_missing_optimizer_and_unknown_setting_are_config_errors(tmp_path):
    cfg = tiny_cfg(tmp_path)
    del cfg.trainer.args.optimizers["discriminator"]
    with pytest.raises(ConfigError, match=r"trainer.args.optimizers.discriminator is missing.*add"):
        TinyGanTrainer(cfg)
    with pytest.raises(ConfigError, match=r"trainer.args.max_step is not a setting.*Did you mean 'max_steps'"):
        TinyGanTrainer(tiny_cfg(tmp_path, max_step=3))


def test_resume_from_missing_checkpoint_fails_clearly(tmp_path):
    cfg = tiny_cfg(tmp_path)
    cfg.trainer.ckpt_dir = str(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope does not exist; check trainer.ckpt_dir"):
        TinyGanTrainer(cfg)


def test_resume_config_is_the_checkpoint_config_plus_cli_overrides(tmp_path):
    TinyGanTrainer(tiny_cfg(tmp_path, max_steps=2, ckpt_every=2)).fit()
    other = tmp_path / "other.yaml"
    other.write_text("exp: {name: something_else}\n")
    cfg = config_for_train([f"exp.config_path={other}", f"trainer.ckpt_dir={tmp_path / 'ckpt'}",
                            "trainer.args.max_steps=10"])
    assert cfg.exp.name == "tiny"  # from the checkpoint, not the YAML named on the command line
    assert cfg.trainer.args.max_steps == 10
    assert cfg.trainer.args.grad_accum == 2
    assert cfg.trainer.ckpt_dir == str(tmp_path / "ckpt")
    with pytest.raises(ConfigError, match=r"key 'trainer.args.max_stepz' does not exist.*max_steps"):
        config_for_train([f"trainer.ckpt_dir={tmp_path / 'ckpt'}", "trainer.args.max_stepz=1"])
