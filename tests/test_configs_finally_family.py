"""FINALLY, HiFi-GAN and HiFi++ configs: the full-size ones resolve and name real components with
fitting args (checked against constructor signatures: building WavLM-Large is too slow for the test
run), the values configs/finally/README.md's table states are the configs' values, and the
quickstart variants build and take a step on the demo corpus."""
from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from restorekit.config import load_config
from restorekit.trainers import TRAINERS
from restorekit.trainers.base import parse_args
from test_recipes_configs import ROOT, check_components

FINALLY_FOLDERS = ["data.train_dirs=[/data/train]", "data.valid_dirs=[/data/valid]", "data.noise_dirs=[/data/noise]",
                   "data.rir_dirs=[/data/rirs]", "data.mic_ir_dirs=[/data/mic_irs]"]
FULL = {
    "finally/stage1": ("finally_stage1", FINALLY_FOLDERS),
    "finally/stage2": ("finally_stage2", [*FINALLY_FOLDERS, "trainer.args.init_from.generator=/runs/s1"]),
    "finally/stage3_pretrain": ("finally_stage3_pretrain",
                                [*FINALLY_FOLDERS, "trainer.args.init_weights.generator=/runs/s2"]),
    "finally/stage3": ("finally_stage3", [*FINALLY_FOLDERS, "trainer.args.init_from.generator=/runs/s3p",
                                          "losses.generator.3.args.checkpoint=/weights/utmosv2"]),
    "hifigan/v1": ("hifigan", ["data.train_dirs=[/data/train]", "data.valid_dirs=[/data/valid]"]),
    "hifigan/v2": ("hifigan", ["data.train_dirs=[/data/train]", "data.valid_dirs=[/data/valid]"]),
    "hifipp/a2a": ("hifipp", ["data.train_noisy=/n", "data.train_clean=/c", "data.valid_noisy=/vn",
                              "data.valid_clean=/vc"]),
}


def _full(name: str) -> dict:
    trainer, overrides = FULL[name]
    cfg = load_config([f"exp.config_path={ROOT}/configs/{name}.yaml", *overrides])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["trainer"]["name"] == trainer
    parse_args(TRAINERS.get(trainer).Args, cfg.trainer.args, "trainer.args")
    return plain


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_config_resolves_and_names_components_with_fitting_args(name):
    plain = _full(name)
    check_components(plain)


def test_stage3_starts_from_init_from_alone_and_trains_everything():
    """stage3 inherits the warm-up; its init_weights and train_only must not leak in."""
    args = _full("finally/stage3")["trainer"]["args"]
    assert args["init_weights"] == {} and args["train_only"] == {}
    assert args["init_from"] == {"generator": "/runs/s3p"}
    assert args["discriminator_steps"] == 2 and args["sub_batches"] == 4


def _table() -> dict[str, list[str]]:
    """configs/finally/README.md's hyperparameter table: setting -> [paper, fw, ours, why]."""
    rows = {}
    for line in (ROOT / "configs/finally/README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


# table row -> (config, dotted path in the resolved config)
LOCKED = {
    "stage 1 steps": ("finally/stage1", "trainer.args.max_steps"),
    "stage 2 steps": ("finally/stage2", "trainer.args.max_steps"),
    "stage 3 steps": ("finally/stage3", "trainer.args.max_steps"),
    "batch (per step)": ("finally/stage1", "data.batch_size"),
    "G learning rate": ("finally/stage1", "trainer.args.optimizers.generator.args.lr"),
    "D learning rate": ("finally/stage2", "trainer.args.optimizers.discriminator.args.lr"),
    "stage 2 LMOS weight": ("finally/stage2", "losses.generator.0.weight"),
    "stage 2 GAN weight": ("finally/stage2", "losses.generator.1.weight"),
    "stage 2 FM weight": ("finally/stage2", "losses.generator.2.weight"),
    "stage 3 LMOS weight": ("finally/stage3", "losses.generator.0.weight"),
    "stage 3 GAN weight": ("finally/stage3", "losses.generator.1.weight"),
    "stage 3 FM weight": ("finally/stage3", "losses.generator.2.weight"),
    "stage 3 UTMOS weight": ("finally/stage3", "losses.generator.3.weight"),
    "stage 3 PESQ weight": ("finally/stage3", "losses.generator.4.weight"),
    "stage 3 sub-batches": ("finally/stage3", "trainer.args.sub_batches"),
    "stage 3 D updates per step": ("finally/stage3", "trainer.args.discriminator_steps"),
    "MS-STFT filters": ("finally/stage1", "models.discriminators.args.channels"),
    "HiFi-GAN mel L1 weight": ("hifigan/v1", "losses.generator.0.weight"),
    "HiFi-GAN FM weight": ("hifigan/v1", "losses.generator.2.weight"),
    "HiFi-GAN steps": ("hifigan/v1", "trainer.args.max_steps"),
    "HiFi++ steps": ("hifipp/a2a", "trainer.args.max_steps"),
}


@pytest.mark.parametrize("row", sorted(LOCKED))
def test_readme_table_states_the_configs_values(row):
    config, path = LOCKED[row]
    value = OmegaConf.select(OmegaConf.create(_full(config)), path)
    ours = _table()[row][2]
    number = re.match(r"[0-9.e+-]+", ours.replace(",", ""))
    assert number and float(number.group()) == pytest.approx(float(value)), f"{row}: README says {ours}, config {value}"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["hifigan/quickstart", "hifipp/quickstart"])
def test_quickstart_config_trains_and_exports_a_restorer(name, tmp_path):
    """The quickstart variants run as written (FINALLY's are chained in tests/test_finally_chain.py)."""
    import numpy as np

    import restorekit

    cfg = load_config([f"exp.config_path={ROOT}/configs/{name}.yaml", f"exp.output_dir={tmp_path}", "exp.device=cpu",
                       "trainer.args.max_steps=2", "trainer.args.max_valid_items=1"])
    export = TRAINERS.get(str(cfg.trainer.name)).from_config(cfg).fit()
    out, sr = restorekit.load(export)(0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32), 16000)
    assert sr == 16000 and out.shape == (8000,) and np.isfinite(out).all()
