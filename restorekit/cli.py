"""Command line: ``list``, ``train``, ``restore`` (alias ``infer``), ``evaluate``, ``app``; ``--version``,
and ``<command> --help``.

User errors (``restorekit.errors.RestorekitError``) print one line and exit with status 2;
anything else is a bug and keeps its traceback. Output piped into a reader that stops early
(``restorekit list | head``) ends quietly.
"""
from __future__ import annotations

import importlib
import os
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

USAGE = """usage: restorekit <command> [args]       (or: python -m restorekit ...)
       restorekit <command> --help | restorekit --version

commands:
  list [kind] [name]   registered components, their arguments and defaults
                       kinds: {kinds}
  train    exp.config_path=CONFIG [key=value ...]              (also: python train.py ...)
  restore  exp.ckpt_dir=EXPORT input=PATH output_dir=DIR ...   (alias: infer; also: python inference.py ...)
  evaluate exp.config_path=CONFIG [key=value ...]              (also: python evaluate.py ...)
  app      [EXPORT | HUB_ID | ENHANCER ...] [--port N]          web demo (needs restorekit[app])
"""

HELP = {
    "list": """usage: restorekit list [kind] [name]

Every registered component of every kind, or of one kind, with its arguments and defaults and
the first line of its docstring. With a name: the whole docstring and the file and line that
define it. Kinds: {kinds}.
  restorekit list models
  restorekit list models wavefit""",
    "train": """usage: restorekit train exp.config_path=CONFIG [key=value ...] [+new.key=value ...]

Train the stage the config's trainer names (docs/training.md). Overrides must name existing keys
(a typo is an error with a suggestion); '+' adds a key; node.name=other swaps a component.
  restorekit train exp.config_path=configs/quickstart/stage1.yaml trainer.args.max_steps=100
  restorekit train trainer.ckpt_dir=runs/quickstart/stage1/ckpt      (resume: the checkpoint's config + overrides)
  torchrun --standalone --nproc_per_node=2 train.py exp.config_path=...   (DDP)""",
    "restore": """usage: restorekit restore (exp.ckpt_dir=EXPORT | enhancer=NAME) input=PATH output_dir=DIR [key=value ...]

Restore a file, a folder (recursively) or a list of files (docs/inference.md). The output mirrors
the input tree; finished outputs are skipped, so a killed run resumes.
  input=PATH output_dir=DIR   required
  exp.ckpt_dir=EXPORT         a restorekit export folder, or
  enhancer=NAME               a registered enhancer (restorekit list enhancers); enhancer.args.KEY=VALUE
  exp.device=auto|cpu|cuda    format=wav|flac    overwrite=false    batch_size=8
  chunk.seconds=30 chunk.overlap=1.0               (long files, baselines)
  io_workers=2    screen=[dnsmos,speaker_similarity,wer]    input='shards-{{000..009}}.tar' (WebDataset)
  restorekit restore exp.ckpt_dir=runs/quickstart/stage3/export input=noisy/ output_dir=restored/""",
    "evaluate": """usage: restorekit evaluate exp.config_path=CONFIG [key=value ...]

Score folders of outputs with a metric suite, or compare enhancers on one data set; writes a
per-file CSV, a summary with 95% confidence intervals and an HTML report (docs/evaluation.md).
  restorekit evaluate exp.config_path=configs/eval/score_folder.yaml systems.outputs=restored/ data.references=clean/
  restorekit evaluate exp.config_path=configs/eval/compare_baselines.yaml""",
    "app": """usage: restorekit app [EXPORT | HUB_ID | ENHANCER ...] [--host H] [--port N] [--share] [--device D]

A web page (Gradio; pip install 'restorekit[app]') to upload or record speech, restore it with one
or more restorers and play, compare (spectrograms) and download the input and outputs side by side.
With no restorer named it offers the installed baselines (docs/inference.md, "Web demo").
  --host 127.0.0.1   --port 7860 (or the next free one)   --share (a public gradio.live link; off)
  --device auto|cpu|cuda   for exports
  restorekit app
  restorekit app runs/quickstart/stage3/export deepfilternet3 --port 8080""",
}
HELP["infer"] = HELP["restore"]


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
    "restore": _delegate("restorekit.inference", "restore"),
    "infer": _delegate("restorekit.inference", "infer"),
    "evaluate": _delegate("restorekit.evaluation", "evaluate"),
    "app": _delegate("restorekit.app", "app"),
}
_HELP_FLAGS = ("-h", "--help")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except BrokenPipeError:  # the reader closed the pipe (`list | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at interpreter exit
        return 0


def _run(argv: list[str]) -> int:
    if argv and argv[0] in ("-V", "--version"):
        from restorekit import __version__

        print(f"restorekit {__version__}")
        return 0
    if not argv or argv[0] in (*_HELP_FLAGS, "help"):
        print(USAGE.format(kinds=", ".join(KINDS)))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in HELP and any(a in _HELP_FLAGS for a in rest):
        print(HELP[command].format(kinds=", ".join(KINDS)))
        return 0
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
