"""configs/miipher2_hifigan: every stage resolves and names real components with fitting args
(checked against constructor signatures: building HuBERT-Large is too slow for the test run), the
README table's "ours" column is the configs' values, and the LayerNorm-input, Xavier-initialised
adapter option they use builds as the Atotti adapter while the defaults stay as they were."""
from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from restorekit.config import load_config
from restorekit.errors import ConfigError
from restorekit.models import MODELS
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import parse_args
from test_recipes_configs import FOLDERS, ROOT, check_components

STAGES = {"stage1": "miipher2_feature_cleaner", "stage2": "miipher2_vocoder_pretrain",
          "stage3": "miipher2_vocoder_finetune"}
CONFIGS = {f"{stage}{variant}": trainer for stage, trainer in STAGES.items() for variant in ("", "_mhubert147")}


def _plain(name: str) -> dict:
    return copy.deepcopy(_resolved(name))


@functools.cache  # resolving takes ~1 s a config on the shared test machine; each is read once
def _resolved(name: str) -> dict:
    cfg = load_config([f"exp.config_path={ROOT}/configs/miipher2_hifigan/{name}.yaml", *FOLDERS])
    parse_args(TRAINERS.get(cfg.trainer.name).Args, cfg.trainer.args, "trainer.args")
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_stage_config_resolves_and_names_components_with_fitting_args(name):
    plain = _plain(name)
    assert plain["trainer"]["name"] == CONFIGS[name]
    check_components(plain)
    cleaner = plain["models"]["feature_cleaner"]["args"]
    assert {k: cleaner[k] for k in ("activation", "input_norm", "init", "init_gain")} == {
        "activation": "gelu", "input_norm": True, "init": "xavier", "init_gain": 0.01}
    encoder = cleaner["encoder"]["args"]
    expected = (6, 768, "utter-project/mHuBERT-147") if "mhubert" in name else (2, 1024, "facebook/hubert-large-ll60k")
    assert (encoder["layer"], cleaner["bottleneck"], encoder["pretrained"]) == expected
    vocoder = plain["models"]["vocoder"]["args"]
    assert vocoder["feature_dim"] == encoder["config"]["hidden_size"] == expected[1]
    assert plain["data"]["sample_rate"] == (16000 if name.startswith("stage1") else 22050)


def test_phase_b_starts_from_its_own_stage1_and_phase_a_exports():
    for name, root in (("stage3", "runs/miipher2_hifigan"), ("stage3_mhubert147", "runs/miipher2_hifigan_mhubert147")):
        plain = _plain(name)
        assert plain["exp"]["output_dir"] == f"{root}/stage3"
        assert plain["trainer"]["args"]["init_from"] == {
            "feature_cleaner": f"{root}/stage1/export", "vocoder": f"{root}/stage2/export",
            "discriminators": f"{root}/stage2/export"}
        assert plain["data"]["train"]["args"]["degradations"] is not None  # cleaned features of degraded speech
    assert _plain("stage2")["data"]["train"]["args"]["degradations"] is None  # phase A: clean features


def _readme_rows() -> dict[str, str]:
    """configs/miipher2_hifigan/README.md's table: setting -> ours."""
    rows = {}
    for line in (ROOT / "configs/miipher2_hifigan/README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5:
            rows[cells[0]] = cells[3]
    return rows


def test_readme_table_states_the_configs_values():
    rows, s1, s2 = _readme_rows(), _plain("stage1"), _plain("stage2")
    mh = _plain("stage1_mhubert147")
    assert rows["encoder layer L (HuBERT-Large)"] == str(s1["models"]["feature_cleaner"]["args"]["encoder"]["args"]["layer"])
    assert rows["adapter bottleneck h (HuBERT-Large)"] == str(s1["models"]["feature_cleaner"]["args"]["bottleneck"])
    assert rows["encoder layer L (mHuBERT-147)"] == str(mh["models"]["feature_cleaner"]["args"]["encoder"]["args"]["layer"])
    assert rows["adapter bottleneck h (mHuBERT-147)"] == str(mh["models"]["feature_cleaner"]["args"]["bottleneck"])
    assert rows["stage 1 steps"] == str(s1["trainer"]["args"]["max_steps"])
    losses = {t["name"]: t["weight"] for t in s2["losses"]["vocoder"]}
    assert (rows["mel-L1 weight"], rows["GAN loss weight"], rows["feature matching weight"]) == tuple(
        str(int(losses[k])) for k in ("mel_l1", "lsgan", "feature_matching"))
    for group in ("generator", "discriminator"):
        args = s2["trainer"]["args"]["optimizers"][group]["args"]
        assert rows["vocoder optimizer"] == f"AdamW {args['lr']:.0e}, ({args['betas'][0]}, {args['betas'][1]}), " \
                                           f"wd {args['weight_decay']}".replace("e-04", "e-4")
    args = s1["trainer"]["args"]["optimizers"]["generator"]["args"]
    assert rows["stage 1 optimizer"] == f"AdamW 2e-4, ({args['betas'][0]}, {args['betas'][1]}), wd {args['weight_decay']}"
    assert args["lr"] == 2e-4
    assert rows["vocoder"] == f"{s2['models']['vocoder']['name']}, {s2['models']['vocoder']['args']['sample_rate']}"


# --- the adapter option -----------------------------------------------------------------------
TINY_LARGE = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [16] * 7,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
              "feat_extract_norm": "layer", "do_stable_layer_norm": True}


def _cleaner(**options):
    torch.manual_seed(0)
    encoder = {"name": "hubert", "args": {"layer": 2, "config": TINY_LARGE}}
    node = {"name": "parallel_adapter_cleaner", "args": {"encoder": encoder, "bottleneck": 64, **options}}
    return MODELS.build(node, where="models.feature_cleaner")


def _recipe_cleaner():
    """The recipe's feature_cleaner node as stage1.yaml resolves it, on the tiny encoder."""
    node = _plain("stage1")["models"]["feature_cleaner"]
    node["args"]["encoder"]["args"].update(pretrained=None, config=TINY_LARGE, normalize_waveform=False)
    torch.manual_seed(0)
    return MODELS.build(node, where="models.feature_cleaner")


def test_layernorm_input_adapter_has_the_atotti_structure_and_xavier_init(one_thread):
    cleaner = _recipe_cleaner()
    adapters = [layer.feed_forward.adapter for layer in cleaner.encoder.blocks]
    assert len(adapters) == 2
    for adapter in adapters:
        assert isinstance(adapter.norm, torch.nn.LayerNorm) and adapter.norm.normalized_shape == (32,)
        assert isinstance(adapter.act, torch.nn.GELU)
        for linear, (fan_out, fan_in) in ((adapter.down, (1024, 32)), (adapter.up, (32, 1024))):
            w = linear.weight.detach()
            assert w.shape == (fan_out, fan_in)
            bound = 0.01 * math.sqrt(6.0 / (fan_in + fan_out))  # Xavier-uniform with gain 0.01
            assert float(w.abs().max()) <= bound
            assert float(w.std()) == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
            assert float(linear.bias.detach().abs().max()) == 0.0
    assert [n for n, p in cleaner.named_parameters() if p.requires_grad and ".adapter.norm." in n]


def test_xavier_adapters_start_near_the_frozen_features_and_train_their_norm(one_thread):
    cleaner = _recipe_cleaner()
    wave = torch.randn(2, 8000)
    out, target = cleaner(wave, 16000), cleaner.target(wave, 16000)
    assert not torch.equal(out, target)  # not zero-initialised: every weight gets a gradient at once
    assert float((out - target).abs().max()) < 1e-3 * float(target.abs().max())
    out.square().mean().backward()
    norm = cleaner.encoder.blocks[0].feed_forward.adapter.norm
    assert norm.weight.grad is not None and float(norm.weight.grad.abs().sum()) > 0


def test_adapter_defaults_are_unchanged_so_existing_exports_load():
    cleaner = _cleaner()
    adapter = cleaner.encoder.blocks[0].feed_forward.adapter
    assert isinstance(adapter.norm, torch.nn.Identity) and isinstance(adapter.act, torch.nn.ReLU)
    assert float(adapter.up.weight.abs().sum()) == 0.0
    keys = sorted({k.split(".adapter.")[1] for k in cleaner.state_dict() if ".adapter." in k})
    assert keys == ["down.bias", "down.weight", "up.bias", "up.weight"]
    wave = torch.randn(1, 4000)
    torch.testing.assert_close(cleaner(wave, 16000), cleaner.target(wave, 16000), atol=0, rtol=0)


def test_unknown_adapter_init_is_a_config_error():
    with pytest.raises(ConfigError, match=r"parallel_adapter_cleaner: init 'kaiming' is unknown; "
                                          r"use one of \['zeros', 'xavier'\]"):
        _cleaner(init="kaiming")
