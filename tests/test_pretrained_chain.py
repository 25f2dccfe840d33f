"""The full-size path for each backbone, on tiny checkpoints: ``pretrained:`` -> stages 1, 2, 3 -> inference.

A tiny random encoder is saved full depth with ``save_pretrained`` (Gemma 3n: transformers'
``Gemma3nAudioEncoder`` folder) and is the ``pretrained:`` of every stage, as a user's hub id
would be. The stage-3 export must load and restore a file through ``inference.py``'s code, and
carry exactly the stage-1 cleaner. Chain tests with ``pretrained: null`` hid an export that
could not be loaded (issue 11, item 1).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from restorekit.inference import main as infer
from restorekit.models.export import load_export
from restorekit.trainers import TRAINERS
from test_ssl_cut import BACKBONES, _reference, _save_full
from test_trainers import VOCODER, stage1_cfg, vocoder_cfg

# the backbones of the full-size configs (HuBERT / WavLM Large: stable layer norm)
VARIANTS = ["w2v_bert2", "hubert_large", "wavlm_large", "gemma3n_audio"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _cleaner(folder, variant: str) -> dict:
    encoder = {"name": BACKBONES[variant][0], "args": {"pretrained": str(folder), "layer": 2}}
    return {"name": "parallel_adapter_cleaner", "args": {"bottleneck": 16, "encoder": encoder}}


def _vocoder(variant: str) -> dict:
    node = copy.deepcopy(VOCODER)
    if variant == "gemma3n_audio":  # 25 Hz features: 25 x 8 x 80 = 16 kHz
        node["args"].update(feature_rate=25, pre_upsample=8)
    return node


def _stage1_features_are_the_encoders_hidden_states(trainer, full) -> None:
    cleaner = trainer.raw("feature_cleaner")
    batch = trainer.to_device(next(iter(trainer.train_loader)))
    wave, lengths = batch["degraded"], batch["lengths"]
    with torch.no_grad():
        ours = cleaner(wave, 16000, lengths)  # adapters start at zero: the frozen encoder's features
        expected = _reference(full, cleaner.encoder, wave, lengths, 2)
    frames = cleaner.num_frames(int(lengths.min()), 16000)
    torch.testing.assert_close(ours[:, :frames], expected[:, :frames], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretrained_encoder_through_three_stages_and_inference(tmp_path, variant):
    hub = tmp_path / "hub"
    full = _save_full(hub, variant)
    models = {"feature_cleaner": _cleaner(hub, variant)}
    cfg1 = stage1_cfg(tmp_path / "s1", max_steps=2)
    cfg1.models.feature_cleaner = models["feature_cleaner"]
    s1 = TRAINERS.get("miipher2_feature_cleaner").from_config(cfg1)
    _stage1_features_are_the_encoders_hidden_states(s1, full)
    export1 = s1.fit()

    cfg2 = vocoder_cfg(tmp_path / "s2", max_steps=2)
    cfg2.models.feature_cleaner, cfg2.models.vocoder = models["feature_cleaner"], _vocoder(variant)
    export2 = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg2).fit()

    cfg3 = vocoder_cfg(tmp_path / "s3", "miipher2_vocoder_finetune", max_steps=2,
                       init_from={"feature_cleaner": str(export1), "vocoder": str(export2), "mpd": str(export2)})
    cfg3.models.feature_cleaner, cfg3.models.vocoder = models["feature_cleaner"], _vocoder(variant)
    export3 = TRAINERS.get("miipher2_vocoder_finetune").from_config(cfg3).fit()

    # the final export carries the stage-1 cleaner's own weights, nothing of the hub encoder
    stage1 = load_file(str(export1 / "feature_cleaner.safetensors"))
    final = load_file(str(export3 / "feature_cleaner.safetensors"))
    assert stage1 and final.keys() == stage1.keys()
    assert all(torch.equal(final[k], stage1[k]) for k in stage1)
    assert set(load_export(export3)) == {"feature_cleaner", "vocoder"}

    src = tmp_path / "in" / "talk.wav"
    src.parent.mkdir()
    t = np.arange(16000) / 16000
    sf.write(src, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    assert infer([f"exp.ckpt_dir={export3}", "exp.device=cpu", f"input={src}",
                  f"output_dir={tmp_path / 'out'}"]) == 0
    out, sr = sf.read(tmp_path / "out" / "talk.wav")
    assert sr == 16000 and out.shape == (16000,)
    assert np.abs(out).max() == pytest.approx(0.9, abs=1e-4)  # the restorer's output level
    assert infer([f"exp.ckpt_dir={export3}", "exp.device=cpu", f"input={src}", "enhancer.args.output_peak=0.5",
                  f"output_dir={tmp_path / 'out_half'}"]) == 0  # enhancer.args reach an export too
    assert np.abs(sf.read(tmp_path / "out_half" / "talk.wav")[0]).max() == pytest.approx(0.5, abs=1e-4)
