"""FINALLY's three stages chained on the path users run, with a WavLM saved by ``save_pretrained``.

The quickstart configs (what users start from) are loaded as the CLI loads them, their WavLM is
swapped for a tiny random one saved in the released layout (the generator's encoder and LMOS's
both load it by path, as they would load microsoft/wavlm-large), and each stage starts from the
previous stage's export: 1 -> 2 (init_from) -> 3 warm-up (init_weights: the stage-2 weights grow
an upsampler) -> 3 (init_from). Every export is then restored with through ``restorekit.load``,
and the stage-3 export through ``inference.py``: a file at 48 kHz.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import restorekit
from restorekit.config import load_config
from restorekit.inference import main as infer
from restorekit.models.export import load_export
from restorekit.trainers import TRAINERS
from tests_helpers import REPO

pytestmark = pytest.mark.usefixtures("one_thread")
STAGES = ["stage1", "stage2", "stage3_pretrain", "stage3"]
START = {"stage2": ("init_from", "stage1"), "stage3_pretrain": ("init_weights", "stage2"),
         "stage3": ("init_from", "stage3_pretrain")}


def _save_wavlm(folder) -> None:
    from transformers import WavLMConfig, WavLMModel

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "configs/finally/quickstart/models.yaml").tiny_wavlm)
    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**cfg)).save_pretrained(folder)


def _stage_cfg(stage: str, tmp_path, hub) -> OmegaConf:
    cfg = load_config([f"exp.config_path={REPO}/configs/finally/quickstart/{stage}.yaml",
                       f"exp.output_dir={tmp_path / stage}", "exp.device=cpu", "trainer.args.max_steps=2",
                       "trainer.args.max_valid_items=1", "trainer.args.num_audio_samples=0"])
    cfg.models.generator.args.wavlm.args.pretrained = str(hub)
    cfg.models.generator.args.wavlm.args.config = None
    for node in cfg.losses.generator:
        if node.name == "lmos":
            node.args.pretrained, node.args.config = str(hub), None
    if stage in START:
        key, previous = START[stage]
        cfg.trainer.args[key] = {"generator": str(tmp_path / previous / "export")}
    return cfg


def test_finally_stages_chain_on_a_saved_wavlm_and_stage3_restores_a_file_at_48k(tmp_path):
    hub = tmp_path / "wavlm"
    _save_wavlm(hub)
    exports = {}
    for stage in STAGES:
        cfg = _stage_cfg(stage, tmp_path, hub)
        exports[stage] = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg).fit()
    # the frozen WavLM is reloaded from `pretrained`, never copied into an export
    manifest = json.loads((exports["stage3"] / "export.json").read_text())
    assert manifest["generator"]["partial"] is True
    generator = load_export(exports["stage3"])["generator"]
    assert generator.sample_rate == 48000 and generator.upsampler is not None
    assert not any(k.startswith("wavlm.") for k in _export_keys(exports["stage3"]))
    # stage 3 started from the warm-up's weights and trained everything, discriminators included
    assert sorted(load_export(exports["stage3"])) == ["discriminators", "generator"]

    wave = 0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 16000).astype(np.float32)
    for stage, rate in zip(STAGES, (16000, 16000, 48000, 48000)):
        out, sr = restorekit.load(exports[stage])(wave, 16000)
        assert sr == rate and len(out) == len(wave) * rate // 16000 and np.isfinite(out).all()

    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "noisy.wav", wave, 16000)
    rc = infer([f"exp.ckpt_dir={exports['stage3']}", f"input={inputs}", f"output_dir={tmp_path / 'out'}"])
    restored, sr = sf.read(tmp_path / "out" / "noisy.wav")
    assert rc == 0 and sr == 48000 and len(restored) == 3 * len(wave)


def _export_keys(folder) -> list[str]:
    from safetensors.torch import load_file

    return list(load_file(str(folder / "generator.safetensors")))
