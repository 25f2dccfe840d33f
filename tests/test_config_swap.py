"""Swapping a component by config: a node given another ``name`` does not inherit the old ``args``."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from restorekit.config import load_config
from restorekit.datasets import DATASETS
from restorekit.datasets.demo import demo_corpus_dir
from restorekit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _variant(tmp_path: Path, text: str, *overrides: str):
    path = tmp_path / "variant.yaml"
    path.write_text(f"inherit: [{ROOT}/configs/quickstart/stage1.yaml]\n{text}")
    return load_config([f"exp.config_path={path}", *overrides])


def test_variant_that_swaps_the_dataset_takes_only_its_own_args(tmp_path):
    """The issue's case: demo_speech's ``split`` leaked into degraded_speech ("no argument 'split'").
    Catches a plain deep merge of renamed nodes."""
    roots = [str(demo_corpus_dir("valid"))]
    swap = f"data:\n  train: {{name: degraded_speech, args: {{roots: {roots}}}}}\n"
    # data.valid interpolated the old node's degradations: one clear line, not an OmegaConf traceback
    with pytest.raises(ConfigError, match=r"data.valid.args.degradations refers to a key that does not exist "
                                          r"\(Interpolation key 'data.train.args.degradations' not found\).*swapped"):
        _variant(tmp_path, swap)
    cfg = _variant(tmp_path, swap + "  valid: {args: {degradations: null}}\n")
    assert OmegaConf.to_container(cfg.data.train) == {"name": "degraded_speech", "args": {"roots": roots}}
    dataset = DATASETS.build(cfg.data.train, where="data.train", sample_rate=16000)
    assert len(dataset) > 0


def test_same_component_still_deep_merges_and_trainer_args_survive_a_new_trainer(tmp_path):
    cfg = _variant(tmp_path, "data:\n  train: {name: demo_speech, args: {segment_seconds: 2.0}}\n"
                             "exp: {name: other}\ntrainer: {name: miipher2_vocoder_pretrain}\n")
    assert cfg.data.train.args.segment_seconds == 2.0 and cfg.data.train.args.split == "train"
    assert cfg.trainer.args.max_steps == 60 and cfg.trainer.args.optimizers.generator.name == "adamw"
    assert cfg.exp.seed == 0  # exp has a name but is no component: merged, not replaced


def test_replace_mark_swaps_a_node_wholesale_and_is_not_kept(tmp_path):
    """Catches ``_replace_`` being ignored (the old optimizer's args merged in) or left in the config."""
    cfg = _variant(tmp_path, "trainer:\n  args:\n    optimizers:\n      generator:\n"
                             "        {_replace_: true, name: adamw, args: {lr: 1.0e-3}}\n")
    # same name: without the mark, betas, weight_decay, grad_clip and scheduler would be merged in
    assert OmegaConf.to_container(cfg.trainer.args.optimizers.generator) == {"name": "adamw", "args": {"lr": 1e-3}}


def test_command_line_swap_drops_the_old_args_and_accepts_new_ones(tmp_path):
    """Catches ``data.train.name=X`` keeping demo_speech's args, or demanding ``+`` for the new ones."""
    roots = str(demo_corpus_dir("valid"))
    cfg = load_config([f"exp.config_path={ROOT}/configs/quickstart/stage1.yaml", "data.train.name=degraded_speech",
                       f"data.train.args.roots=[{roots}]", "data.train.args.segment_seconds=1.0",
                       "data.valid.args.degradations=null"])
    assert OmegaConf.to_container(cfg.data.train.args) == {"roots": [roots], "segment_seconds": 1.0}
    cfg = load_config([f"exp.config_path={ROOT}/configs/quickstart/stage1.yaml",
                       "data.train={name: degraded_speech, args: {roots: [/x]}}",  # whole node
                       "data.valid.args.degradations=null"])
    assert OmegaConf.to_container(cfg.data.train) == {"name": "degraded_speech", "args": {"roots": ["/x"]}}
    cfg = load_config([f"exp.config_path={ROOT}/configs/quickstart/stage1.yaml", "trainer.name=miipher2_vocoder_pretrain"])
    assert cfg.trainer.args.max_steps == 60
    with pytest.raises(ConfigError, match=r"key 'data.valid.args.segment_secnds' does not exist.*"
                                          r"Did you mean 'data.valid.args.segment_seconds'"):
        load_config([f"exp.config_path={ROOT}/configs/quickstart/stage1.yaml", "data.train.name=degraded_speech",
                     "data.valid.args.segment_secnds=1"])  # only the swapped node's args are free
