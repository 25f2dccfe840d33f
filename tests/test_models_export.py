"""Exports: atomic folders that rebuild the exact models offline."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from restorekit.errors import CheckpointError
from restorekit.models import MODELS
from restorekit.models.export import load_export, save_export
from test_models import EXAMPLES, TINY_WAV


def _config(cleaner_encoder: dict | None = None) -> dict:
    cleaner = {"name": "parallel_adapter_cleaner", "args": {**EXAMPLES["parallel_adapter_cleaner"]}}
    if cleaner_encoder:
        cleaner["args"]["encoder"] = cleaner_encoder
    return {"exp": {"name": "t"}, "models": {"feature_cleaner": cleaner,
                                             "vocoder": {"name": "wavefit", "args": EXAMPLES["wavefit"]}}}


def _perturb(module: torch.nn.Module) -> None:
    for p in module.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)


def test_random_init_export_rebuilds_exactly(tmp_path):
    cfg = _config()
    torch.manual_seed(0)
    mods = {role: MODELS.build(node, where=f"models.{role}") for role, node in cfg["models"].items()}
    _perturb(mods["feature_cleaner"])
    save_export(tmp_path / "export", cfg, mods)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "config.yaml", "export.json", "feature_cleaner.safetensors", "vocoder.safetensors"]
    torch.manual_seed(123)  # a different init must not matter: every weight comes from the export
    loaded = load_export(tmp_path / "export")
    wave, feats, noise = torch.randn(1, 16000), torch.randn(1, 5, 32), torch.randn(1, 2400)
    with torch.no_grad():
        assert torch.equal(loaded["feature_cleaner"](wave, 16000), mods["feature_cleaner"](wave, 16000))
        assert torch.equal(loaded["vocoder"].infer(feats, noise), mods["vocoder"].infer(feats, noise))
    assert not [p for p in tmp_path.iterdir() if p.name != "export"]  # no temporary folders left


def test_pretrained_encoder_export_stores_only_trainable_weights(tmp_path):
    from transformers import HubertConfig, HubertModel

    HubertModel(HubertConfig(**{**TINY_WAV, "num_hidden_layers": 2})).save_pretrained(tmp_path / "hub")
    cfg = _config({"name": "hubert", "args": {"pretrained": str(tmp_path / "hub"), "layer": 2}})
    cleaner = MODELS.build(cfg["models"]["feature_cleaner"], where="models.feature_cleaner")
    _perturb(cleaner)
    save_export(tmp_path / "export", cfg, {"feature_cleaner": cleaner})
    stored = load_file(str(tmp_path / "export" / "feature_cleaner.safetensors"))
    trainable = {n for n, p in cleaner.named_parameters() if p.requires_grad}
    assert set(stored) == trainable
    loaded = load_export(tmp_path / "export")["feature_cleaner"]
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        assert torch.equal(loaded(wave, 16000), cleaner(wave, 16000))


def test_missing_export_and_mismatched_weights_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a restorekit export \\(no config.yaml\\)"):
        load_export(tmp_path)
    cfg = _config()
    vocoder = MODELS.build(cfg["models"]["vocoder"], where="models.vocoder")
    save_export(tmp_path / "e", cfg, {"vocoder": vocoder})
    with pytest.raises(CheckpointError, match="export has no weights for role 'feature_cleaner'"):
        load_export(tmp_path / "e", roles=["feature_cleaner"])
    cfg["models"]["vocoder"]["args"] = {**EXAMPLES["wavefit"], "cond_channels": 8}
    save_export(tmp_path / "e", cfg, {"vocoder": vocoder})  # overwrite with a config that does not fit
    with pytest.raises(CheckpointError, match="weights do not fit models.vocoder"):
        load_export(tmp_path / "e")
    with pytest.raises(CheckpointError, match=r"cannot export roles \['discriminators'\]"):
        save_export(tmp_path / "f", cfg, {"discriminators": vocoder})


@pytest.mark.parametrize("damage, match", [
    ("config.yaml", "config.yaml: unreadable export config"),
    ("config-no-models", "config.yaml: an export config needs a 'models' section"),
    ("export.json", "export.json: unreadable export manifest"),
    ("vocoder.safetensors", "vocoder.safetensors: unreadable weights"),
])
def test_a_damaged_export_file_is_a_checkpoint_error_naming_it(tmp_path, damage, match):
    cfg = _config()
    save_export(tmp_path / "e", cfg, {"vocoder": MODELS.build(cfg["models"]["vocoder"], where="models.vocoder")})
    if damage == "config-no-models":
        (tmp_path / "e" / "config.yaml").write_text("exp: {name: t}\n")
    else:
        path = tmp_path / "e" / damage
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3] + b"\x00{[: ")
    with pytest.raises(CheckpointError, match=match):
        load_export(tmp_path / "e")


def test_frozen_cleaner_export_keeps_its_adapters(tmp_path):
    """Stage 3 freezes the stage-1 cleaner before exporting it. Catches a freeze-state rule in
    ``reloadable_keys`` (what the code did before): 0 tensors written and "missing" on load."""
    from transformers import HubertConfig, HubertModel

    HubertModel(HubertConfig(**{**TINY_WAV, "num_hidden_layers": 2})).save_pretrained(tmp_path / "hub")
    cfg = _config({"name": "hubert", "args": {"pretrained": str(tmp_path / "hub"), "layer": 2}})
    cleaner = MODELS.build(cfg["models"]["feature_cleaner"], where="models.feature_cleaner")
    trains = {n for n, p in cleaner.named_parameters() if p.requires_grad}
    _perturb(cleaner)
    cleaner.requires_grad_(False)  # as a stage-3 trainer holds it
    save_export(tmp_path / "export", cfg, {"feature_cleaner": cleaner})
    stored = load_file(str(tmp_path / "export" / "feature_cleaner.safetensors"))
    assert trains and set(stored) == trains
    loaded = load_export(tmp_path / "export")["feature_cleaner"]
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        assert torch.equal(loaded(wave, 16000), cleaner(wave, 16000))


def _previous_export(tmp_path):
    """An export of the vocoder at tmp_path/export; returns (config, its files' bytes by name)."""
    cfg = _config()
    torch.manual_seed(0)
    vocoder = MODELS.build(cfg["models"]["vocoder"], where="models.vocoder")
    save_export(tmp_path / "export", cfg, {"vocoder": vocoder})
    return cfg, {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()}


def _both_roles(cfg: dict) -> dict:
    return {role: MODELS.build(node, where=f"models.{role}") for role, node in cfg["models"].items()}


def test_a_failed_export_write_keeps_the_previous_export_and_leaves_no_temporary(tmp_path, monkeypatch):
    """Re-exporting fails twice: the disk fills on the second weights file, then a weight is NaN.

    Each time the previous export is there byte for byte and nothing else is left beside it;
    the NaN is a CheckpointError naming the weight. Catches: writing into the export folder
    itself (half an export), temporary folders left behind, NaN weights written.
    """
    from safetensors.torch import save_file

    from restorekit.models import export

    cfg, before = _previous_export(tmp_path)
    written = []

    def full_disk(tensors, filename):
        written.append(filename)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        return save_file(tensors, filename)

    monkeypatch.setattr(export, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        save_export(tmp_path / "export", cfg, _both_roles(cfg))
    monkeypatch.undo()
    mods = _both_roles(cfg)
    with torch.no_grad():
        next(mods["vocoder"].parameters())[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"weight '.*' holds NaN/Inf, so nothing was written"):
        save_export(tmp_path / "export", cfg, mods)
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_an_export_interrupted_while_swapping_folders_keeps_the_previous_one(tmp_path, monkeypatch):
    """Interrupted between moving the previous export aside and moving the new one in: the previous
    export is put back under its name, and nothing else is left.

    Catches: a swap that leaves the previous export only under a hidden ``.export.old`` name (a
    reader then finds no export, and the next export deletes the only copy).
    """
    import os
    from pathlib import Path

    cfg, before = _previous_export(tmp_path)
    replace = os.replace

    def interrupted(src, dst):
        if Path(dst) == tmp_path / "export" and not Path(src).name.endswith(".old"):
            raise KeyboardInterrupt
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_export(tmp_path / "export", cfg, _both_roles(cfg))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
