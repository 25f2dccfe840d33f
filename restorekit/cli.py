"""Command line: ``list``, ``train``, ``infer``, ``evaluate``.

User errors (``restorekit.errors.RestorekitError``) print one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from restorekit.errors import ConfigError, RestorekitError, one_line
from restorekit.registry import Registry, suggest

# kind -> (module, registry attribute); the order is the order `list` prints them in.
KINDS: dict[str, tuple[str, str]] = {
    "models": ("restorekit.models", "MODELS"),
    "datasets": ("restorekit.datasets", "DATASETS"),
    "augmentations": ("restorekit.augmentations", "AUGMENTATIONS"),
    "losses": ("restorekit.losses", "LOSSES"),
    "metrics": ("restorekit.metrics", "METRICS"),
    "trainers": ("restorekit.trainers", "TRAINERS"),
    "enhancers": ("restorekit.enhancers", "ENHANCERS"),
    "optimizers": ("restorekit.optim", "OPTIMIZERS"),
    "schedulers": ("restorekit.optim", "SCHEDULERS"),
    "loggers": ("restorekit.loggers", "LOGGERS"),
}

USAGE = """usage: python -m restorekit <command> [args]

commands:
  list [kind] [name]   registered components, their arguments and defaults
                       kinds: {kinds}
  train  exp.config_path=CONFIG [key=value ...]     (also: python train.py ...)
  infer  exp.ckpt_dir=EXPORT input=PATH output_dir=DIR [key=value ...]
  evaluate exp.config_path=CONFIG [key=value ...]
"""


def registry(kind: str) -> Registry:
    """The registry of a kind, with all its components imported (and so registered)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind '{kind}'.{suggest(kind, list(KINDS))} Kinds: {', '.join(KINDS)}")
    module, attr = KINDS[kind]
    return getattr(importlib.import_module(module), attr)


def cmd_list(args: Sequence[str]) -> int:
    if len(args) > 2:
        raise ConfigError("list takes at most a kind and a name, e.g. `list models wavefit`")
    kinds = [args[0]] if args else list(KINDS)
    for kind in kinds:
        print(registry(kind).describe(args[1] if len(args) > 1 else None))
    return 0


def cmd_train(args: Sequence[str]) -> int:
    from restorekit.trainers import TRAINERS
    from restorekit.trainers.resume import config_for_train

    # a resume (trainer.ckpt_dir=...) takes the checkpoint's config plus these overrides only
    cfg = config_for_train(args)
    if "trainer" not in cfg:
        raise ConfigError(f"{cfg.exp.get('config_path')}: no 'trainer' section; add trainer: {{name: ..., args: {{...}}}}")
    trainer_cls = TRAINERS.get(cfg.trainer.get("name"), "trainer")
    trainer = trainer_cls.from_config(cfg)
    trainer.fit()
    return 0


def _delegate(module: str, what: str) -> Callable[[Sequence[str]], int]:
    def run(args: Sequence[str]) -> int:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise ConfigError(f"'{what}' is not available in this version of restorekit yet") from exc
        return int(mod.main(args) or 0)

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": cmd_list,
    "train": cmd_train,
    "infer": _delegate("restorekit.inference", "infer"),
    "evaluate": _delegate("restorekit.evaluation", "evaluate"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(kinds=", ".join(KINDS)))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise ConfigError(f"unknown command '{command}'.{suggest(command, list(COMMANDS))} Commands: {', '.join(COMMANDS)}")
        return COMMANDS[command](rest)
    except RestorekitError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
