"""The HiFi-GAN SSL vocoder: its frame arithmetic, and Miipher-2 stages 2-3 + inference with it as
the ``vocoder`` role, swapped in by config alone (the Atotti/miipher-2 variant)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from restorekit.config import load_yaml
from restorekit.errors import ConfigError
from restorekit.inference import main as infer
from restorekit.models import MODELS
from restorekit.trainers import TRAINERS
from test_trainers import stage1_cfg, vocoder_cfg
from tests_helpers import REPO

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_GEN = {"channels": 16, "resblock_kernel_sizes": [3], "resblock_dilations": [[1, 3]]}


def vocoder(**args):
    torch.manual_seed(0)
    node = {"name": "hifigan_ssl_vocoder", "args": {"feature_dim": 32, "generator": TINY_GEN, **args}}
    return MODELS.build(node, where="models.vocoder")


@pytest.mark.parametrize(("rate", "hop"), [(22050, 441), (24000, 480), (16000, 320)])
def test_one_feature_frame_stands_for_rate_over_feature_rate_samples(rate, hop):
    voc = vocoder(sample_rate=rate)
    out = voc(torch.randn(2, 7, 32))
    assert voc.hop == hop and len(out) == 1 and out[0].shape == (2, 7 * hop)
    assert voc.infer(torch.randn(1, 3, 32), noise=torch.randn(1, 3 * hop)).shape == (1, 3 * hop)


def test_prenet_feeds_hifigan_its_width():
    plain = vocoder()
    pre = vocoder(prenet={"layers": 1, "dim": 16, "heads": 2, "ffn_dim": 32, "kernel_size": 5})
    assert plain.prenet is None and plain.generator.backbone.conv_pre.in_channels == 32
    assert pre.prenet is not None and pre.generator.backbone.conv_pre.in_channels == 16


def test_rates_that_do_not_divide_and_wrong_widths_are_config_errors():
    with pytest.raises(ConfigError, match="not a whole number of samples per feature frame"):
        vocoder(sample_rate=22050, feature_rate=64)
    with pytest.raises(ConfigError, match="expected features \\(batch, frames, 32\\)"):
        vocoder()(torch.randn(1, 5, 48))
    with pytest.raises(ConfigError, match="hifigan_ssl_vocoder: prenet has unknown key"):
        vocoder(prenet={"layer": 2})


def test_config_fragment_swaps_the_vocoder_role_and_keeps_the_encoders_rate():
    fragment = load_yaml(REPO / "configs/miipher2/vocoder_hifigan.yaml")
    node = fragment.models.vocoder
    assert node.name == "hifigan_ssl_vocoder" and node.args.sample_rate == 22050
    assert node.args.prenet.layers == 2 and node.args.prenet.dim == 768 and node.args.prenet.kernel_size == 31


def test_miipher2_stages_2_and_3_train_and_restore_with_the_hifigan_vocoder(tmp_path):
    """Stage 2 pre-trains it on clean features, stage 3 fine-tunes it on the frozen cleaner's, and the
    stage-3 export restores a file through inference.py: the HiFi-GAN variant by YAML alone."""
    hifigan = {"name": "hifigan_ssl_vocoder", "args": {"feature_dim": 32, "sample_rate": 16000, "generator": TINY_GEN}}
    s1 = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path / "s1", max_steps=2)).fit()
    cfg2 = vocoder_cfg(tmp_path / "s2", max_steps=2)
    cfg2.models.vocoder = hifigan
    s2 = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg2).fit()
    cfg3 = vocoder_cfg(tmp_path / "s3", "miipher2_vocoder_finetune", max_steps=2,
                       init_from={"feature_cleaner": str(s1), "vocoder": str(s2)})
    cfg3.models.vocoder = hifigan
    s3 = TRAINERS.get("miipher2_vocoder_finetune").from_config(cfg3).fit()
    wave = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", wave, 16000)
    rc = infer([f"exp.ckpt_dir={s3}", f"input={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}"])
    out, sr = sf.read(tmp_path / "out" / "a.wav")
    assert rc == 0 and sr == 16000 and len(out) == len(wave) and np.abs(out).max() == pytest.approx(0.9, abs=1e-3)


def test_fragment_resolves_on_a_full_size_stage(tmp_path):
    from restorekit.config import load_config
    from test_recipes_configs import FOLDERS, check_node

    variant = tmp_path / "stage2_hifigan.yaml"
    variant.write_text(f"inherit: [{REPO}/configs/miipher2/stage2.yaml, {REPO}/configs/miipher2/models_hubert.yaml, "
                       f"{REPO}/configs/miipher2/vocoder_hifigan.yaml]\n")
    cfg = load_config([f"exp.config_path={variant}", *FOLDERS])
    node = {"name": str(cfg.models.vocoder.name), "args": dict(cfg.models.vocoder.args)}
    check_node(MODELS, node, "models.vocoder")
    assert node["args"]["feature_dim"] == 1024 and "iterations" not in node["args"]
