"""Optimizers and schedulers: built by name from config nodes, with the documented shapes."""
from __future__ import annotations

import math

import pytest
import torch

from restorekit.errors import ConfigError
from restorekit.optim import OPTIMIZERS, SCHEDULERS


def _lrs(node: dict, steps: int, lr: float = 1.0) -> list[float]:
    opt = OPTIMIZERS.build({"name": "adam", "args": {"lr": lr}}, "t", params=[torch.nn.Parameter(torch.zeros(1))])
    sched = SCHEDULERS.build(node, "t.scheduler", optimizer=opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_registries_hold_the_documented_components():
    assert OPTIMIZERS.names() == ["adam", "adamw"]
    assert SCHEDULERS.names() == ["constant", "cosine_warmup", "exponential", "linear_warmup"]
    for entry in OPTIMIZERS.entries() + SCHEDULERS.entries():
        assert entry.summary != "(no docstring)"


def test_adamw_applies_decoupled_weight_decay_and_adam_does_not():
    p1, p2 = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    w = OPTIMIZERS.build({"name": "adamw", "args": {"lr": 0.1, "weight_decay": 0.5}}, "o", params=[p1])
    a = OPTIMIZERS.build({"name": "adam", "args": {"lr": 0.1}}, "o", params=[p2])
    assert isinstance(w, torch.optim.AdamW) and isinstance(a, torch.optim.Adam)
    for p, o in ((p1, w), (p2, a)):
        p.grad = torch.zeros(1)
        o.step()
    assert p1.item() == pytest.approx(1 - 0.1 * 0.5)
    assert p2.item() == pytest.approx(1.0)


def test_schedules_have_their_documented_shapes():
    assert _lrs({"name": "constant"}, 3) == [1.0, 1.0, 1.0]
    assert _lrs({"name": "linear_warmup", "args": {"warmup_steps": 4}}, 6) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    lin = _lrs({"name": "linear_warmup", "args": {"warmup_steps": 2, "total_steps": 6, "final_ratio": 0.2}}, 8)
    assert lin == pytest.approx([0.5, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2])
    cos = _lrs({"name": "cosine_warmup", "args": {"warmup_steps": 2, "total_steps": 10}}, 12)
    assert cos[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert cos[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert cos[10:] == pytest.approx([0.0, 0.0])
    assert _lrs({"name": "exponential", "args": {"gamma": 0.5, "every": 2}}, 5) == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    # FINALLY stage 3: a linear warm-up, then the decay counts from its end
    warm = {"name": "exponential", "args": {"gamma": 0.5, "every": 2, "warmup_steps": 2}}
    assert _lrs(warm, 6) == pytest.approx([0.5, 1, 1, 1, 0.5, 0.5])


def test_scheduler_state_round_trips():
    opt = OPTIMIZERS.build({"name": "adamw"}, "o", params=[torch.nn.Parameter(torch.zeros(1))])
    s = SCHEDULERS.build({"name": "exponential", "args": {"gamma": 0.9}}, "s", optimizer=opt)
    for _ in range(3):
        opt.step()
        s.step()
    opt2 = OPTIMIZERS.build({"name": "adamw"}, "o", params=[torch.nn.Parameter(torch.zeros(1))])
    s2 = SCHEDULERS.build({"name": "exponential", "args": {"gamma": 0.9}}, "s", optimizer=opt2)
    s2.load_state_dict(s.state_dict())
    assert s2.last_epoch == 3 and s2.get_last_lr() == pytest.approx(s.get_last_lr())


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match=r"cosine_warmup: total_steps \(5\) must exceed warmup_steps \(10\)"):
        _lrs({"name": "cosine_warmup", "args": {"warmup_steps": 10, "total_steps": 5}}, 1)
    with pytest.raises(ConfigError, match=r"optimizer betas must be two numbers in \[0, 1\)"):
        OPTIMIZERS.build({"name": "adam", "args": {"betas": [0.9]}}, "o", params=[torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ConfigError, match=r"optimizer got no trainable parameters"):
        OPTIMIZERS.build({"name": "adam"}, "o", params=[])
    with pytest.raises(ConfigError, match=r"t.scheduler.args.warmup: schedulers 'linear_warmup' has no argument"):
        _lrs({"name": "linear_warmup", "args": {"warmup": 3}}, 1)
