"""What a training run tells its user: a start-up banner, the first step's losses, a model card."""
from __future__ import annotations

import re

from restorekit.trainers import TRAINERS
from test_trainers import stage1_cfg


def test_banner_first_losses_and_model_card(one_thread, tmp_path, capsys):
    """Catches a silent start (no banner), losses first shown only at log_every, and an export
    without its model card."""
    trainer = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path, max_steps=3, log_every=50))
    export = trainer.fit()
    out = capsys.readouterr().out
    cleaner = trainer.models["feature_cleaner"]
    total = sum(p.numel() for p in cleaner.parameters())
    trained = sum(p.numel() for p in cleaner.parameters() if p.requires_grad)
    assert "miipher2_feature_cleaner: device cpu, precision fp32, 1 process(es)" in out
    assert f"feature_cleaner: ParallelAdapterCleaner, {trained / 1e6:.3f}M trainable / {total / 1e6:.3f}M parameters" in out
    items = len(trainer.train_loader.dataset)
    assert f"data: {items} training items; batch 2 x 1 process(es) x 1 accumulated = 2" in out
    assert re.search(r"^step 1 \| .*loss/miipher_feature_loss", out, re.M)  # before log_every (50)
    card = (export / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: restorekit") and "`miipher2_feature_cleaner` (3 steps)" in card


def test_docs_table_lists_every_trainer_setting_with_its_default():
    """docs/training.md's trainer.args table must follow the dataclasses (it drifted before)."""
    import dataclasses
    from pathlib import Path

    from restorekit.trainers.base import TrainerArgs
    from restorekit.trainers.vocoder import VocoderArgs

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for f in dataclasses.fields(VocoderArgs):  # base + adversarial + vocoder settings
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
        assert f"| `{f.name}` | `{shown}` | {f.metadata['help']} |" in doc, f.name
    assert len(dataclasses.fields(VocoderArgs)) > len(dataclasses.fields(TrainerArgs))
