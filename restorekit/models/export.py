"""Exports: a folder that rebuilds trained models offline.

``<dir>/config.yaml`` holds the resolved config whose ``models`` section rebuilds each role;
``<dir>/<role>.safetensors`` holds that role's weights. A frozen encoder loaded from
``pretrained`` (hub id or folder) is not copied: only the weights a cleaner trains inside it
(adapters, trainable norm copies; decided by structure, whether or not they are frozen now) are
stored, and the encoder is reloaded from the same id at load time. Random-init encoders are stored whole, so the
export rebuilds exactly with no network. The folder is written to a temporary sibling and
renamed into place, so a reader never sees half an export.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from restorekit.errors import CheckpointError, one_line
from restorekit.models import MODELS
from restorekit.models.ssl import SSLEncoder

MANIFEST = "export.json"


def reloadable_keys(module: nn.Module) -> set[str]:
    """State-dict keys of frozen weights that come back from a ``pretrained`` encoder at build.

    Decided by structure, never by ``requires_grad``: stage 3 freezes the stage-1 cleaner, and a
    freeze-state rule then took its adapters for hub weights and dropped them from the export.
    Adapters and the trainable norm copies are the cleaner's own weights wherever they sit.
    """
    keys: set[str] = set()
    for prefix, sub in module.named_modules():
        if isinstance(sub, SSLEncoder) and sub.pretrained:
            start = f"{prefix}." if prefix else ""
            own = _trained_prefixes(sub)
            keys |= {start + k for k in sub.state_dict() if not k.startswith(own)}
    return keys


def _trained_prefixes(encoder: nn.Module) -> tuple[str, ...]:
    """Prefixes (``name.``) of the modules a cleaner trains inside a frozen encoder."""
    from restorekit.models.adapters import Adapter, SwitchedNorm

    found = []
    for name, sub in encoder.named_modules():
        if isinstance(sub, Adapter):
            found.append(f"{name}.")
        elif isinstance(sub, SwitchedNorm):
            found.append(f"{name}.trainable.")
    return tuple(found)


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """CheckpointError naming the first floating tensor of ``tensors`` holding NaN or Inf."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{what}: weight '{name}' holds NaN/Inf, so nothing was written (what was there before is kept); "
                "training diverged: resume from the last checkpoint with a lower learning rate or fp32/bf16"
            )


def _weights(module: nn.Module) -> dict[str, Any]:
    skip = reloadable_keys(module)
    # clone: safetensors refuses tensors that share storage (e.g. tied or viewed weights)
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items() if k not in skip}


def save_export(directory: str | Path, config: Mapping | DictConfig, modules: Mapping[str, nn.Module]) -> Path:
    """Write ``config`` (resolved) and each role's weights to ``directory`` atomically; return it."""
    directory = Path(directory)
    cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(config), resolve=True))
    missing = [role for role in modules if role not in cfg.get("models", {})]
    if missing:
        raise CheckpointError(
            f"cannot export roles {missing} to {directory}: the config's models section has no node for them "
            f"(it has {sorted(cfg.get('models', {}))}); pass the config the modules were built from"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        _write(tmp, cfg, modules)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _write(folder: Path, cfg: DictConfig, modules: Mapping[str, nn.Module]) -> None:
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    manifest = {}
    for role, module in modules.items():
        weights = _weights(module)
        check_finite_tensors(weights, f"export of models.{role} to {folder.parent}")
        save_file(weights, str(folder / f"{role}.safetensors"))
        manifest[role] = {"partial": bool(reloadable_keys(module)), "class": type(module).__name__}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Rename ``tmp`` to ``directory``; a previous export is moved aside first and back if that fails."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:  # interrupted or refused: the previous export stays the export
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_config(directory: str | Path) -> DictConfig:
    """The export's resolved config; a CheckpointError when the folder is not an export."""
    path = Path(directory) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(
            f"{directory}: not a restorekit export (no config.yaml); point to the export/ folder a trainer wrote"
        )
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # yaml's parser errors have no common user-facing base class
        raise CheckpointError(
            f"{path}: unreadable export config ({type(exc).__name__}: {one_line(exc)[:200]}); "
            "it was edited or truncated: restore it from the training run's output_dir/config.yaml or re-export"
        ) from exc
    if not isinstance(cfg, DictConfig) or not isinstance(cfg.get("models"), DictConfig):
        raise CheckpointError(
            f"{path}: an export config needs a 'models' section (one node per exported role); "
            "restore it from the training run's output_dir/config.yaml or re-export"
        )
    return cfg


def _manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable export manifest ({one_line(exc)}); re-export") from exc


def load_export(directory: str | Path, roles: list[str] | None = None) -> dict[str, nn.Module]:
    """Rebuild every exported role (or only ``roles``) from config and weights, in eval mode."""
    directory = Path(directory)
    cfg = load_config(directory)
    manifest = _manifest(directory)
    available = sorted(p.stem for p in directory.glob("*.safetensors"))
    wanted = roles or available
    modules = {}
    for role in wanted:
        if role not in available:
            raise CheckpointError(f"{directory}: export has no weights for role '{role}'; it has {available}")
        modules[role] = _load_role(directory, cfg, role, manifest.get(role, {}))
    return modules


def _load_role(directory: Path, cfg: DictConfig, role: str, meta: dict) -> nn.Module:
    module = MODELS.build(cfg.models[role], where=f"models.{role}")
    try:
        state = load_file(str(directory / f"{role}.safetensors"))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError on a damaged file
        raise CheckpointError(
            f"{directory / (role + '.safetensors')}: unreadable weights ({one_line(exc)[:200]}); "
            "the file is truncated or damaged: copy it again or re-export"
        ) from exc
    where = f"{directory / (role + '.safetensors')}: weights do not fit models.{role}"
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{where} ({one_line(exc)[:300]}); {_MISMATCH}") from exc
    missing = set(result.missing_keys) - reloadable_keys(module)
    if result.unexpected_keys or missing:
        raise CheckpointError(
            f"{where} ({len(missing)} missing, e.g. {sorted(missing)[:3]}; {len(result.unexpected_keys)} "
            f"unexpected, e.g. {result.unexpected_keys[:3]}); {_MISMATCH}"
        )
    return module.eval()


_MISMATCH = "the config and the weights come from different models; re-export from the training run"
