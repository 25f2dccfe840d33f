"""The shipped model configs build: quickstart runs on CPU; full-size builds offline (random init)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from restorekit.config import apply_overrides, load_yaml
from restorekit.losses import build_losses
from restorekit.models import MODELS
from restorekit.models.miipher2 import Miipher2

REPO = Path(__file__).resolve().parents[1]
OFFLINE = ["models.feature_cleaner.args.encoder.args.pretrained=null"]


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
def test_full_size_w2v_bert2_config_builds_offline_and_reports_parameter_counts(capsys):
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
    with capsys.disabled():
        print(f"\nfull-size w2v-BERT 2.0 (layer 13) cleaner: {total / 1e6:.1f}M parameters "
              f"({trainable / 1e6:.1f}M trainable); WaveFit-5: {wavefit / 1e6:.1f}M")


@pytest.mark.slow
def test_gemma3n_audio_config_builds_offline_and_its_vocoder_fits_25_hz_features(capsys):
    cfg = apply_overrides(load_yaml(REPO / "configs/miipher2/models_gemma3n_audio.yaml"), OFFLINE)
    base = load_yaml(REPO / "configs/miipher2/models_w2v_bert2.yaml")
    assert cfg.losses == base.losses and cfg.models.discriminators == base.models.discriminators
    cleaner = MODELS.build(cfg.models.feature_cleaner, where="models.feature_cleaner")
    assert len(cleaner.encoder.blocks) == 6 and cleaner.feature_dim == 1536 and cleaner.frame_rate == 25.0
    total = sum(p.numel() for p in cleaner.parameters())
    trainable = sum(p.numel() for p in cleaner.parameters() if p.requires_grad)
    # 6 adapters of 1536->1024->1536 (+biases) and 6 trainable RMSNorm scales
    assert trainable == 6 * (1536 * 1024 + 1024 + 1024 * 1536 + 1536 + 1536)
    vocoder = MODELS.build(cfg.models.vocoder, where="models.vocoder")
    assert vocoder.hop == 960 and vocoder.feature_dim == 1536
    restorer = Miipher2(cleaner, vocoder)
    out, rate = restorer.restore(np.zeros(4000, np.float32) + 0.01, 16000)
    assert rate == 24000 and out.shape == (6000,)
    with capsys.disabled():
        print(f"\nfull-size Gemma 3n audio (layer 6) cleaner: {total / 1e6:.1f}M parameters "
              f"({trainable / 1e6:.1f}M trainable); WaveFit-5 at 25 Hz: "
              f"{sum(p.numel() for p in vocoder.parameters()) / 1e6:.1f}M")
