"""The config of a ``train`` command: a fresh run's, or a resumed run's.

Resuming (``trainer.ckpt_dir=...`` on the command line) takes the config saved in the
checkpoint, then applies the explicit command-line overrides only; the YAML file is not
re-read, so edits to it cannot silently change a run half-way.
"""
from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from restorekit.config import apply_overrides, check_complete, load_config, split_config_path
from restorekit.trainers import checkpoint

CKPT_KEY = "trainer.ckpt_dir"


def ckpt_override(argv: Sequence[str]) -> str | None:
    """The value of ``trainer.ckpt_dir=...`` on the command line (None when absent or null)."""
    value = None
    for item in argv:
        key, _, raw = item.partition("=")
        if key.lstrip("+") == CKPT_KEY:
            value = raw
    return None if value in (None, "", "null", "None") else value


def config_for_train(argv: Sequence[str]) -> DictConfig:
    """The run's config: the checkpoint's plus overrides when resuming, else the YAML's."""
    ckpt = ckpt_override(argv)
    if ckpt is None:
        return load_config(argv)
    folder = checkpoint.resolve(ckpt)
    cfg = OmegaConf.load(folder / "config.yaml")
    OmegaConf.update(cfg, CKPT_KEY, None, force_add=True)  # older configs may lack the key
    _, overrides = split_config_path(argv)  # exp.config_path is ignored: the checkpoint's config wins
    apply_overrides(cfg, [o.lstrip("+") if o.lstrip("+").startswith(CKPT_KEY + "=") else o for o in overrides])
    check_complete(cfg)
    return cfg
