"""The gradient balancer (trainers/balancer.py) alone, and switched on in the shared GAN step."""
from __future__ import annotations

import pytest
import torch

from restorekit.errors import ConfigError
from restorekit.trainers.balancer import Balancer
from restorekit.trainers.gan import GanArgs, GanLosses, adversarial_step
from tests.test_trainers_base import TinyGanTrainer, assert_same, params, tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def item_norm(g: torch.Tensor) -> float:
    return float(g.norm(dim=1).mean())


def test_two_losses_100x_apart_get_the_configured_norm_shares():
    """Gradients 100x apart in scale, on disjoint halves of the output so each part can be read back:
    each part's norm is weight / sum(weights) x total_norm, whatever its raw scale.
    Mutation caught: scaling by weight / norm without the sum of the weights (parts 1 and 3, not 0.5 and 1.5)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.zeros(4, 200), torch.zeros(4, 200)
    a[:, :100] = torch.randn(4, 100, generator=g)
    b[:, 100:] = 100 * torch.randn(4, 100, generator=g)
    bal = Balancer({"adv": 1.0, "feat": 3.0}, total_norm=2.0)
    out, scalars = bal.combine({"adv": a, "feat": b})
    assert item_norm(out[:, :100]) == pytest.approx(0.5, rel=1e-5)
    assert item_norm(out[:, 100:]) == pytest.approx(1.5, rel=1e-5)
    assert scalars["balancer/feat_norm"] == pytest.approx(100 * scalars["balancer/adv_norm"], rel=0.3)


def test_norms_are_a_bias_corrected_ema_and_unnamed_losses_keep_their_weight():
    """Second step: the tracked norm is (d * n1 + n2) / (d + 1); a loss the balancer does not name
    is added times its list weight. Mutation caught: an EMA without bias correction (first norm x 0.01)."""
    bal = Balancer({"adv": 1.0}, total_norm=1.0, ema_decay=0.5)
    a = torch.ones(2, 4)  # item norm 2
    bal.combine({"adv": a})
    out, scalars = bal.combine({"adv": 3 * a, "mel": torch.full((2, 4), 0.25)}, plain={"mel": 4.0})
    tracked = (0.5 * 2 + 6) / 1.5
    assert scalars == {"balancer/adv_norm": pytest.approx(tracked)}
    torch.testing.assert_close(out, 3 * a / tracked + 1.0)
    state = bal.state_dict()
    twin = Balancer({"adv": 1.0}, ema_decay=0.5)
    twin.load_state_dict(state)
    assert twin.state_dict() == state


class BalancedTrainer(TinyGanTrainer):
    """TinyGanTrainer with the adversarial settings (balancer among them); records the output gradient."""

    Args = GanArgs

    def train_step(self, batch):
        fake = self.model("generator")(batch["degraded"].unsqueeze(1)).squeeze(1)
        fake.register_hook(lambda g: self.output_grads.append(g.detach().clone()))
        return adversarial_step(self, GanLosses.split(self.losses_for("")), ["discriminator"], fake, batch["clean"],
                                sub_batches=int(self.args.sub_batches))


def balanced_cfg(tmp_path, balancer, **args):
    cfg = tiny_cfg(tmp_path, grad_accum=1, ema_decay=None, balancer=balancer, **args)
    cfg.losses[1].weight = 50.0  # hinge_gan's list weight: the balancer's share replaces it
    return cfg


def trainer(cfg) -> BalancedTrainer:
    tr = BalancedTrainer(cfg)
    tr.output_grads = []
    return tr


def test_balanced_gan_step_gives_the_output_gradient_total_norm(tmp_path):
    """Only hinge_gan balanced, the other losses log-only: the gradient reaching the generator output
    has item norm total_norm (the list weight 50 is not used); sub_batches gives the same gradient."""
    cfg = balanced_cfg(tmp_path, {"total_norm": 3.0, "weights": {"hinge_gan": 1.0}}, max_steps=1)
    for t in (0, 2):  # multi_resolution_stft, feature_matching: log only
        cfg.losses[t].weight = 0
    whole = trainer(cfg)
    whole.fit()
    assert item_norm(whole.output_grads[0]) == pytest.approx(3.0, rel=1e-4)
    assert whole._last_scalars["balancer/hinge_gan_norm"] > 0

    cfg.trainer.args.sub_batches = 2
    cfg.exp.output_dir = str(tmp_path / "parts")
    parts = trainer(cfg)
    parts.fit()
    torch.testing.assert_close(parts.output_grads[0], whole.output_grads[0], atol=1e-6, rtol=1e-4)


def test_balancer_off_leaves_the_gan_step_unchanged(tmp_path):
    """balancer: {} (the default) trains exactly as a stage without the setting."""
    plain = TinyGanTrainer(tiny_cfg(tmp_path / "plain", max_steps=2, grad_accum=1, ema_decay=None))
    plain.fit()
    off = trainer(tiny_cfg(tmp_path / "off", max_steps=2, grad_accum=1, ema_decay=None, balancer={}))
    off.train_step = lambda batch: TinyGanTrainer.train_step(off, batch)  # the same random gain as plain
    assert off.balancer is None
    off.fit()
    assert_same(params(off), params(plain))


def test_balancer_state_is_checkpointed_and_resumed(tmp_path):
    cfg = balanced_cfg(tmp_path, {"weights": {"hinge_gan": 1.0, "feature_matching": 1.0}}, max_steps=2)
    first = trainer(cfg)
    first.fit()
    cfg.trainer.ckpt_dir = str(tmp_path / "ckpt")
    resumed = trainer(cfg)
    assert resumed.balancer.state_dict() == first.balancer.state_dict()
    assert set(resumed.balancer.state_dict()["sums"]) == {"hinge_gan", "feature_matching"}


@pytest.mark.parametrize("node, match", [
    ({"weights": {"hinge": 1.0}}, r"trainer.args.balancer.weights.hinge: the generator has no loss 'hinge'; "
                                  r"its losses: multi_resolution_stft, hinge_gan, feature_matching, mel_l1"),
    ({"total_norm": 1.0}, r"trainer.args.balancer.weights is empty: name the generator losses"),
    ({"weights": {"hinge_gan": 1}, "decay": 0.9}, r"trainer.args.balancer.decay is not a balancer setting"),
    ({"weights": {"hinge_gan": -1}}, r"trainer.args.balancer.weights.hinge_gan must be a number > 0"),
])
def test_bad_balancer_settings_are_config_errors(tmp_path, node, match):
    with pytest.raises(ConfigError, match=match):
        trainer(balanced_cfg(tmp_path, node))
