"""Experiment configs: YAML + ``inherit:`` + command-line overrides, read with OmegaConf.

Merge order (later wins): parents listed in ``inherit`` (each with its own parents first, in
list order) -> the file itself -> command-line overrides. ``inherit`` paths are relative to
the file that names them.

Overrides are ``key.path=value``. The key must already exist (a typo is an error with a
suggestion) unless it is prefixed with ``+``, which adds it. ``exp.config_path=...`` selects
the file and is not itself merged as an override.

Swapping a component: a component node is a mapping with a ``name`` and ``args``. When a child
config (or an override ``node.name=other``) gives such a node another ``name``, the node starts
from the child's version alone: the old component's ``args`` are not inherited, since they
belong to another constructor (on the command line, the swapped node's ``args`` can then be set
without ``+``). ``trainer`` is the exception: every trainer reads the common ``trainer.args``
(max_steps, optimizers, ...), so a stage that names another trainer keeps them.
``_replace_: true`` in any mapping replaces the inherited mapping wholesale, and ``key={...}`` on
the command line always does.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

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
        merged = merge_configs(merged, load_yaml(path.parent / parent, (*_chain, path)))
    return merge_configs(merged, cfg)


REPLACE_KEY = "_replace_"


def merge_configs(base: DictConfig, child: DictConfig) -> DictConfig:
    """``child`` deep-merged over ``base``, except that swapped components and mappings marked
    ``_replace_: true`` replace their ``base`` counterpart whole (see the module docstring)."""
    base = base.copy()
    _drop_replaced(base, child)
    merged = OmegaConf.merge(base, child)
    _strip_replace_marks(merged)
    return merged


SHARED_ARGS = ("trainer",)  # component nodes whose args every component of the kind reads


def _drop_replaced(base: DictConfig, child: DictConfig, prefix: str = "") -> None:
    for key in child.keys():
        if key not in base or not isinstance(child._get_node(key), DictConfig):
            continue
        new, old = child._get_node(key), base._get_node(key)
        if not isinstance(old, DictConfig) or old._is_none() or new._is_none():
            continue
        path = f"{prefix}{key}"
        if new.get(REPLACE_KEY, False) is True or (path not in SHARED_ARGS and _renamed(new, old)):
            del base[key]
        else:
            _drop_replaced(old, new, f"{path}.")


def _renamed(new: DictConfig, old: DictConfig) -> bool:
    """Both are component nodes (a literal ``name``; ``args`` in either) with different names."""
    if "args" not in new and "args" not in old:
        return False  # e.g. exp: {name: run_name, ...} is not a component
    names = [n._get_node("name") if "name" in n else None for n in (new, old)]
    if any(v is None or v._is_missing() or v._is_interpolation() for v in names):
        return False
    return names[0]._value() != names[1]._value()


def _strip_replace_marks(cfg: DictConfig) -> None:
    if REPLACE_KEY in cfg:
        del cfg[REPLACE_KEY]
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none():
            _strip_replace_marks(node)


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
    """Apply ``key=value`` / ``+key=value`` overrides in order; unknown keys are errors.

    ``node.name=other`` on a component node swaps the component: its ``args`` are emptied, and
    later overrides may set ``node.args.*`` without ``+``.
    """
    swapped: list[str] = []  # component nodes whose name an override changed
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
        if not add and not has_key(cfg, key) and not any(key.startswith(f"{n}.args.") for n in swapped):
            hint = suggest_key(key, flat_keys(cfg))
            raise ConfigError(
                f"override '{item}': key '{key}' does not exist in the config.{hint} "
                f"Prefix it with '+' to add a new key (+{key}={raw})"
            )
        value = _parse_value(raw)
        if _swaps_component(cfg, key, value):
            node = key.rsplit(".", 1)[0]
            OmegaConf.update(cfg, f"{node}.args", {}, merge=False, force_add=True)
            swapped.append(node)
        try:
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override '{item}' cannot be applied: {one_line(exc)}") from exc
    return cfg


def _swaps_component(cfg: DictConfig, key: str, value: Any) -> bool:
    """Whether overriding ``key`` gives an existing component node (``{name, args}``) a new name."""
    if not key.endswith(".name") or not has_key(cfg, key) or key.rsplit(".", 1)[0] in SHARED_ARGS:
        return False
    node = OmegaConf.select(cfg, key.rsplit(".", 1)[0])
    return isinstance(node, DictConfig) and "args" in node and OmegaConf.select(cfg, key) != value


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
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        if not missing:
            OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(_unresolved(exc)) from exc
    if missing:
        raise ConfigError(
            f"required config values are not set: {', '.join(missing)}; "
            "set them in the YAML or on the command line (key=value)"
        )


def _unresolved(exc: OmegaConfBaseException) -> str:
    """What cannot be resolved, where, and how to fix it (an interpolation to a key that is gone)."""
    where = getattr(exc, "full_key", None)
    if isinstance(exc, InterpolationKeyError) and where:
        return (f"config cannot be resolved: {where} refers to a key that does not exist "
                f"({str(exc).splitlines()[0]}), e.g. because the node it pointed into "
                f"was swapped for another component; set {where} explicitly")
    return f"config cannot be resolved: {one_line(exc)}"


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

