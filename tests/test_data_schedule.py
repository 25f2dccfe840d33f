"""data.train as a schedule of corpora by step (progressive training): switch, resume, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.errors import ConfigError
from restorekit.trainers.base import BaseTrainer
from restorekit.trainers.data import data_schedule, phase_at
from tests.test_trainers_base import TinyGanTrainer, tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000


class FolderTrainer(TinyGanTrainer):
    """TinyGanTrainer on real registered datasets (paired_folders) instead of its in-memory set."""

    build_dataset = BaseTrainer.build_dataset


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """Two paired-folder corpora whose file names say which corpus an item came from (a*, b*)."""
    root = tmp_path_factory.mktemp("corpora")
    rng = np.random.default_rng(0)
    for corpus in ("a", "b"):
        for sub in ("clean", "noisy"):
            (root / corpus / sub).mkdir(parents=True)
        for i in range(4):
            clean = (0.3 * rng.standard_normal(512)).astype(np.float32)
            sf.write(root / corpus / "clean" / f"{corpus}{i}.wav", clean, SR)
            sf.write(root / corpus / "noisy" / f"{corpus}{i}.wav", clean + 0.01, SR)
    return root


def folder(root: Path, corpus: str) -> dict:
    return {"name": "paired_folders", "args": {"degraded_dir": str(root / corpus / "noisy"),
                                               "clean_dir": str(root / corpus / "clean")}}


def schedule_cfg(out: Path, root: Path, **args):
    cfg = tiny_cfg(out, grad_accum=1, record_items=True, ema_decay=None, **args)
    cfg.data = {"sample_rate": SR, "batch_size": 1,
                "train": [{"until_step": 3, "dataset": folder(root, "a")}, {"dataset": folder(root, "b")}]}
    return cfg


def trained_items(out: Path) -> list[str]:
    """Item names in training order, one per step (batch 1)."""
    lines = (out / "items" / "rank0.txt").read_text().split("\n")
    return [line.split("\t")[1] for line in lines if line]


def test_schedule_switches_corpus_at_the_step_boundary(tmp_path, corpora):
    """Steps 1-3 train on corpus a, steps 4-7 on b (from b's epoch 0: a whole permutation of b)."""
    tr = FolderTrainer(schedule_cfg(tmp_path, corpora, max_steps=7))
    tr.fit()
    items = trained_items(tmp_path)
    assert [n[0] for n in items] == list("aaabbbb")
    assert sorted(items[3:]) == ["b0", "b1", "b2", "b3"]
    assert len(tr.train_loader.dataset) == 4 and tr._phase == 1


@pytest.mark.parametrize("stop", [3, 5], ids=["on_the_boundary", "inside_corpus_b"])
def test_resumed_run_uses_the_right_corpus_and_position(tmp_path, corpora, stop):
    """A run stopped at step k and resumed trains on exactly the items an uninterrupted run sees.
    Mutation caught: not restoring the phase from the checkpoint (a run resumed inside corpus b
    restarts b's epoch)."""
    full = tmp_path / "full"
    FolderTrainer(schedule_cfg(full, corpora, max_steps=7)).fit()

    cut = tmp_path / "cut"
    FolderTrainer(schedule_cfg(cut, corpora, max_steps=stop, ckpt_every=stop)).fit()
    cfg = schedule_cfg(cut, corpora, max_steps=7)
    cfg.trainer.ckpt_dir = str(cut / "ckpt")
    resumed = FolderTrainer(cfg)
    assert resumed.step == stop
    resumed.fit()
    assert trained_items(cut) == trained_items(full)


def test_a_single_dataset_node_is_one_phase_forever():
    phases = data_schedule({"name": "x"})
    assert len(phases) == 1 and phases[0].until_step is None and phases[0].where == "data.train"
    phases = data_schedule([{"until_step": 2, "dataset": {"name": "a"}}, {"until_step": 5, "dataset": {"name": "b"}},
                            {"until_step": None, "dataset": {"name": "c"}}])
    assert [phase_at(phases, s) for s in range(8)] == [0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("train, match", [
    ([], r"data.train is an empty list"),
    ([{"until_step": 5, "dataset": {"name": "a"}}, {"until_step": 3, "dataset": {"name": "b"}}, {"dataset": {}}],
     r"data.train\[1\].until_step \(3\) must be greater than the entry before's \(5\)"),
    ([{"dataset": {"name": "a"}}, {"dataset": {"name": "b"}}],
     r"data.train\[0\].until_step must be a step >= 1 \(only the last entry trains to the end\), got None"),
    ([{"until_step": 5, "dataset": {"name": "a"}}, {"until_step": 9, "dataset": {"name": "b"}}],
     r"data.train\[1\].until_step is 9, but the last corpus trains to the end of training; remove its until_step"),
    ([{"until_step": 5, "data": {"name": "a"}}, {"dataset": {"name": "b"}}],
     r"data.train\[0\] must be \{until_step: N, dataset: \{name, args\}\}"),
    ([{"until_step": 5, "dataset": {"name": "a"}, "weight": 1}, {"dataset": {"name": "b"}}],
     r"data.train\[0\].weight is not a schedule key"),
])
def test_bad_schedules_are_config_errors(train, match):
    with pytest.raises(ConfigError, match=match):
        data_schedule(train)


def test_a_bad_later_corpus_fails_at_start(tmp_path, corpora):
    cfg = schedule_cfg(tmp_path, corpora)
    cfg.data.train[1].dataset.args.clean_dir = str(tmp_path / "missing")
    with pytest.raises(Exception, match="missing"):
        FolderTrainer(cfg)
