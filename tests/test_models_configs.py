"""The shipped model configs build: quickstart runs on CPU; full-size builds offline (random init)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from restorekit.config import apply_overrides, load_yaml
from restorekit.losses import build_losses
from restorekit.models import MODELS
from restorekit.models.miipher2 import Miipher2

REPO = Path(__file__).resolve().parents[1]
OFFLINE = ["models.feature_cleaner.args.encoder.args.pretrained=null"]

# Parameter totals (millions, rounded to 0.1) the docs state for the full-size configs, with the
# text that states each: a change to a model or a config must come with a change to its doc.
DOCUMENTED = {  # (config, role): (total, trainable or None, where, text)
    ("models_w2v_bert2", "feature_cleaner"): (341.8, 27.3, "docs/models.md", "cleaner 341.8M parameters (27.3M trainable"),
    ("models_w2v_bert2", "vocoder"): (11.9, None, "docs/models.md", "WaveFit-5 11.9M"),
    ("models_w2v_bert2", "discriminators"): (41.4, None, "docs/models.md", "MPD + MS-STFT 41.4M"),
    ("models_gemma3n_audio", "feature_cleaner"): (360.4, 18.9, "docs/models.md", "cleaner 360.4M\n(18.9M trainable"),
    ("models_gemma3n_audio", "vocoder"): (17.0, None, "docs/models.md", "WaveFit-5 at 25 Hz 17.0M"),
}
# What configs/miipher2/vocoder_prenet.yaml adds to each vocoder (stated there, in docs and the README)
PRENET = {"models_gemma3n_audio": (217.3, "217.3M parameters to the"), "models_w2v_bert2": (96.6, "(96.6M at 1024-d)")}


def millions(module: torch.nn.Module, trainable: bool = False) -> float:
    return round(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable) / 1e6, 1)


def build_on_meta(node, where: str) -> torch.nn.Module:
    """The module with its parameters on the meta device: shapes without memory or initialisation."""
    with torch.device("meta"):
        return MODELS.build(node, where=where)


def full_size(name: str):
    return apply_overrides(load_yaml(REPO / f"configs/miipher2/{name}.yaml"), OFFLINE)


@pytest.mark.parametrize("key", sorted(DOCUMENTED), ids="-".join)
def test_full_size_configs_have_the_documented_parameter_totals(key):
    """Mutations caught: a default of a model changed (e.g. MPD's last layer 1024 -> 512 channels)
    without its documented total, and a documented total edited without the model."""
    name, role = key
    total, trainable, doc, text = DOCUMENTED[key]
    assert text in (REPO / doc).read_text(), f"{doc} no longer says '{text}'"
    module = build_on_meta(full_size(name).models[role], f"models.{role}")
    assert millions(module) == total
    if trainable is not None:
        assert millions(module, trainable=True) == trainable


@pytest.mark.parametrize("name", sorted(PRENET))
def test_vocoder_prenet_adds_its_documented_parameters(name):
    added, text = PRENET[name]
    for doc in ("configs/miipher2/vocoder_prenet.yaml", "configs/miipher2/README.md"):
        assert f"{added}M" in (REPO / doc).read_text(), doc
    assert text in (REPO / "configs/miipher2/vocoder_prenet.yaml").read_text()
    vocoder = full_size(name).models.vocoder
    with_prenet = OmegaConf.merge(vocoder, load_yaml(REPO / "configs/miipher2/vocoder_prenet.yaml").models.vocoder)
    plain, larger = build_on_meta(vocoder, "models.vocoder"), build_on_meta(with_prenet, "models.vocoder")
    assert round(millions(larger) - millions(plain), 1) == added


def test_msd_has_the_documented_parameter_total():
    assert "29.6M parameters" in (REPO / "docs/models.md").read_text()
    assert millions(build_on_meta({"name": "msd"}, "models.discriminators")) == 29.6


def test_quickstart_models_and_losses_build_and_restore_on_cpu():
    cfg = load_yaml(REPO / "configs/quickstart/models.yaml")
    assert set(cfg.models) == {"feature_cleaner", "vocoder", "discriminators"}
    torch.manual_seed(0)
    mods = {role: MODELS.build(node, where=f"models.{role}") for role, node in cfg.models.items()}
    for section, nodes in cfg.losses.items():
        assert build_losses(nodes, where=f"losses.{section}")
    restorer = Miipher2(mods["feature_cleaner"], mods["vocoder"])
    out, rate = restorer.restore(np.zeros(8000, np.float32) + 0.01, 16000)
    assert rate == 24000 and out.shape == (12000,)
    logits, _ = mods["discriminators"](torch.from_numpy(out)[None])
    assert len(logits) == 6  # 3 periods + 3 STFT scales


@pytest.mark.parametrize("variant", ["hubert", "wavlm"])
def test_encoder_variants_only_swap_the_encoder(variant):
    base = load_yaml(REPO / "configs/miipher2/models_w2v_bert2.yaml")
    cfg = load_yaml(REPO / f"configs/miipher2/models_{variant}.yaml")
    assert cfg.models.feature_cleaner.args.encoder.name == variant
    assert cfg.models.feature_cleaner.args.encoder.args.layer == 13
    assert cfg.models.vocoder == base.models.vocoder and cfg.losses == base.losses


@pytest.mark.slow
def test_full_size_w2v_bert2_config_builds_offline_with_its_documented_parameter_counts():
    cfg = apply_overrides(load_yaml(REPO / "configs/miipher2/models_w2v_bert2.yaml"), OFFLINE)
    cleaner = MODELS.build(cfg.models.feature_cleaner, where="models.feature_cleaner")
    total = sum(p.numel() for p in cleaner.parameters())
    trainable = sum(p.numel() for p in cleaner.parameters() if p.requires_grad)
    assert len(cleaner.encoder.model.encoder.layers) == 13 and cleaner.feature_dim == 1024
    # 13 adapters of 1024->1024->1024 (+biases) and 13 trainable LayerNorms
    assert trainable == 13 * (2 * (1024 * 1024 + 1024) + 2 * 1024)
    del cleaner
    vocoder = MODELS.build(cfg.models.vocoder, where="models.vocoder")
    wavefit = sum(p.numel() for p in vocoder.parameters())
    assert vocoder.hop == 480 and vocoder.iterations == 5
    # the documented totals hold for the real build too, not only for the shapes on the meta device
    assert (round(total / 1e6, 1), round(wavefit / 1e6, 1)) == (DOCUMENTED[("models_w2v_bert2", "feature_cleaner")][0],
                                                                DOCUMENTED[("models_w2v_bert2", "vocoder")][0])


@pytest.mark.slow
def test_gemma3n_audio_config_builds_offline_and_its_vocoder_fits_25_hz_features():
    cfg = apply_overrides(load_yaml(REPO / "configs/miipher2/models_gemma3n_audio.yaml"), OFFLINE)
    base = load_yaml(REPO / "configs/miipher2/models_w2v_bert2.yaml")
    assert cfg.losses == base.losses and cfg.models.discriminators == base.models.discriminators
    cleaner = MODELS.build(cfg.models.feature_cleaner, where="models.feature_cleaner")
    assert len(cleaner.encoder.blocks) == 6 and cleaner.feature_dim == 1536 and cleaner.frame_rate == 25.0
    trainable = sum(p.numel() for p in cleaner.parameters() if p.requires_grad)
    # 6 adapters of 1536->1024->1536 (+biases) and 6 trainable RMSNorm scales
    assert trainable == 6 * (1536 * 1024 + 1024 + 1024 * 1536 + 1536 + 1536)
    vocoder = MODELS.build(cfg.models.vocoder, where="models.vocoder")
    assert vocoder.hop == 960 and vocoder.feature_dim == 1536
    restorer = Miipher2(cleaner, vocoder)
    out, rate = restorer.restore(np.zeros(4000, np.float32) + 0.01, 16000)
    assert rate == 24000 and out.shape == (6000,)
    assert (millions(cleaner), millions(vocoder)) == (DOCUMENTED[("models_gemma3n_audio", "feature_cleaner")][0],
                                                      DOCUMENTED[("models_gemma3n_audio", "vocoder")][0])
