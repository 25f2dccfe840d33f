"""Experiment configs: YAML + ``inherit:`` + command-line overrides, read with OmegaConf.

Merge order (later wins): parents listed in ``inherit`` (each with its own parents first, in
list order) -> the file itself -> command-line overrides. ``inherit`` paths are relative to
the file that names them.

Overrides are ``key.path=value``. The key must already exist (a typo is an error with a
suggestion) unless it is prefixed with ``+``, which adds it. ``exp.config_path=...`` selects
the file and is not itself merged as an override.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from restorekit.errors import ConfigError, one_line

CONFIG_PATH_KEY = "exp.config_path"


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> DictConfig:
    """Read one YAML file and everything it inherits, merged; ``inherit`` is removed."""
    path = Path(path).expanduser().resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise ConfigError(f"inherit cycle: {cycle}; remove one of these inherit entries")
    if not path.is_file():
        named_by = f" (inherited by {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{named_by}; check the path")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError, OmegaConf grammar errors, decoding errors
        raise ConfigError(f"{path}: cannot be read as YAML: {one_line(exc)}") from exc
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: the top level of a config must be a mapping, got a list")
    parents = _inherit_list(cfg, path)
    merged = OmegaConf.create()
    for parent in parents:
        merged = OmegaConf.merge(merged, load_yaml(path.parent / parent, (*_chain, path)))
    return OmegaConf.merge(merged, cfg)


def _inherit_list(cfg: DictConfig, path: Path) -> list[str]:
    if "inherit" not in cfg:
        return []
    raw = cfg.pop("inherit")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, ListConfig)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{path}: 'inherit' must be a path or a list of paths, got {raw!r}")
    return list(items)


def split_config_path(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Pull ``exp.config_path=...`` out of the command line; return it and the rest."""
    path, rest = None, []
    for item in argv:
        key = item.split("=", 1)[0].lstrip("+")
        if key == CONFIG_PATH_KEY and "=" in item:
            path = item.split("=", 1)[1]
        else:
            rest.append(item)
    return path, rest


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key path in a config (mappings only; list items are leaves)."""
    keys = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            full = f"{prefix}.{k}" if prefix else str(k)
            keys.append(full)
            node = cfg._get_node(k)
            if isinstance(node, DictConfig):
                keys.extend(flat_keys(node, full))
    return keys


def _parse_value(raw: str) -> Any:
    # OmegaConf's dotlist parser gives the same typing as YAML (ints, floats like 1e-4,
    # bools, null, [lists], {maps}); parse under a throwaway key so dots in ours don't matter.
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
    except OmegaConfBaseException:
        return raw


def apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """Apply ``key=value`` / ``+key=value`` overrides in order; unknown keys are errors."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"override '{item}' is not of the form key=value (e.g. trainer.args.max_steps=100)"
            )
        key, raw = item.split("=", 1)
        add = key.startswith("+")
        key = key.lstrip("+")
        if not key:
            raise ConfigError(f"override '{item}' has an empty key")
        if not add and not has_key(cfg, key):
            hint = suggest_key(key, flat_keys(cfg))
            raise ConfigError(
                f"override '{item}': key '{key}' does not exist in the config.{hint} "
                f"Prefix it with '+' to add a new key (+{key}={raw})"
            )
        try:
            OmegaConf.update(cfg, key, _parse_value(raw), merge=False, force_add=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override '{item}' cannot be applied: {one_line(exc)}") from exc
    return cfg


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` exists (a ``???`` value exists; it is just unset)."""
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig) and part in node.keys():
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return False
    return True


def suggest_key(key: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:  # compare the last component only, e.g. max_step vs max_steps
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
        leaf_close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[leaf_close[0]]] if leaf_close else []
    return f" Did you mean '{close[0]}'?" if close else ""


def load_config(
    argv: Sequence[str] = (), path: str | Path | None = None, require_complete: bool = True
) -> DictConfig:
    """The experiment config from a command line like ``exp.config_path=x.yaml a.b=1``.

    ``path`` is used when the command line names no ``exp.config_path``. With
    ``require_complete`` every ``???`` value must have been filled in.
    """
    cli_path, overrides = split_config_path(argv)
    chosen = cli_path or path
    if chosen is None:
        raise ConfigError(
            "no config given: pass exp.config_path=path/to/config.yaml "
            "(e.g. exp.config_path=configs/quickstart/stage1.yaml)"
        )
    cfg = load_yaml(chosen)
    OmegaConf.update(cfg, CONFIG_PATH_KEY, str(chosen), force_add=True)
    apply_overrides(cfg, overrides)
    if require_complete:
        check_complete(cfg)
    return cfg


def check_complete(cfg: DictConfig) -> None:
    """Every required (``???``) value is set, and every interpolation resolves."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"required config values are not set: {', '.join(missing)}; "
            "set them in the YAML or on the command line (key=value)"
        )
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config cannot be resolved: {one_line(exc)}") from exc


def save_config(cfg: DictConfig, output_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config atomically to ``output_dir/name``; return the path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    return atomic_write_text(out / name, text)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text to a temporary file beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_plain(cfg: Any) -> Any:
    """A resolved plain-Python copy (dicts and lists) of a config or config node."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg

