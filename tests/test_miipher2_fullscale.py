"""Issue 11 fixes on the Miipher-2 trainers and restorer: each test names the defect it catches.

Trainers run on the tiny models of test_trainers.py; the restorer on the quickstart-sized one
of test_models_miipher2.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import CheckpointError, ConfigError, TrainingError
from restorekit.trainers import TRAINERS
from test_trainers import VOCODER, stage1_cfg, vocoder_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(tr) -> dict:
    return tr.to_device(next(iter(tr.train_loader)))


# --- item 3: level --------------------------------------------------------------------------
def test_vocoder_targets_are_peak_normalised_with_the_degraded_input_scaled_alike(tmp_path):
    """Catches unnormalised targets (the power head could then only learn the corpus mean)."""
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(vocoder_cfg(tmp_path))
    batch = _batch(tr)
    batch = {**batch, "clean": batch["clean"] * torch.tensor([[0.05], [0.5]]),
             "degraded": batch["degraded"] * torch.tensor([[0.05], [0.5]])}
    out = tr._level(batch)
    torch.testing.assert_close(out["clean"].abs().amax(dim=1), torch.tensor([0.9, 0.9]))
    ratio = out["degraded"].abs().amax(dim=1) / batch["degraded"].abs().amax(dim=1)
    torch.testing.assert_close(ratio, out["clean"].abs().amax(dim=1) / batch["clean"].abs().amax(dim=1))


def _restorer():
    from test_models_miipher2 import _restorer as build

    return build()


def _speech(seconds: float = 1.5, sr: int = 16000) -> np.ndarray:
    from restorekit.audio import load
    from restorekit.datasets.demo import demo_corpus_dir

    path = min(demo_corpus_dir("valid").rglob("*.wav"))
    wave, file_sr = load(path, sr=sr)
    assert file_sr == sr and len(wave) >= seconds * sr
    return wave[: int(seconds * sr)]


def test_restored_level_does_not_follow_the_input_gain():
    """Catches the vocoder's own (corpus-mean) level leaking out: output peak 0.9 at any gain."""
    restorer = _restorer()
    x = _speech()
    loud, _ = restorer.restore(0.9 * x / np.abs(x).max(), 16000)
    quiet, _ = restorer.restore(0.02 * x / np.abs(x).max(), 16000)
    assert np.abs(loud).max() == pytest.approx(0.9, abs=1e-5)
    assert np.abs(quiet).max() == pytest.approx(0.9, abs=1e-5)
    rms = [20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) for y in (loud, quiet)]
    assert abs(rms[0] - rms[1]) < 1.0, rms


def test_silence_in_gives_silence_out_also_inside_a_file():
    """Catches an ungated restorer: the demo export turned digital silence into peak-0.99 noise."""
    restorer = _restorer()
    out, sr = restorer.restore(np.zeros(16000, dtype=np.float32), 16000)
    assert out.shape == (24000,) and np.abs(out).max() == 0.0
    x = _speech(1.0)
    gap = np.concatenate([x, np.zeros(16000, np.float32), x])
    out, _ = restorer.restore(gap, 16000)
    middle = out[int(1.25 * sr): int(1.75 * sr)]  # away from the 100 ms hang-over and its ramp
    assert np.abs(middle).max() == 0.0
    assert np.sqrt(np.mean(out[: sr] ** 2)) > 0.01  # speech around it is kept


# --- item 4: context --------------------------------------------------------------------------
def test_vocoder_crop_is_frame_aligned_with_its_audio(tmp_path):
    """Catches a crop whose audio is not the span its features stand for (off by a frame or more)."""
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(
        vocoder_cfg(tmp_path, vocoder_segment_seconds=0.1))
    hop, frames = tr.raw("vocoder").hop, 40
    feats = torch.arange(frames, dtype=torch.float32)[None, :, None].repeat(3, 1, 32)  # frame i holds i
    real = (torch.arange(frames * hop) // hop).float()[None].repeat(3, 1)  # sample j belongs to frame j // hop
    torch.manual_seed(0)
    cf, cr, starts = tr.crop(feats, real, torch.tensor([40, 25, 5]))
    n = round(0.1 * tr.raw("vocoder").feature_rate)
    assert cf.shape == (3, n, 32) and cr.shape == (3, n * hop)
    for b in range(3):
        assert torch.equal(cr[b].view(n, hop)[:, 0], cf[b, :, 0])  # each hop of audio is its frame's
    assert starts[1] + n <= 25 and starts[2] == 0  # starts stay inside each item's unpadded frames


def test_encoder_sees_the_whole_segment_and_the_vocoder_a_crop(tmp_path):
    """Catches stages 2-3 computing features on the vocoder's short crop (1 s of context)."""
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(
        vocoder_cfg(tmp_path, vocoder_segment_seconds=0.1))
    seen = {}
    tr.raw("feature_cleaner").encoder.register_forward_pre_hook(lambda m, a: seen.update(enc=a[0].shape))
    tr.raw("vocoder").register_forward_pre_hook(lambda m, a: seen.update(voc=a[0].shape))
    batch = _batch(tr)
    tr._last_micro, tr._stepped, tr._skipped, tr._step_scalars = True, set(), set(), {}
    tr.train_step(batch)
    assert seen["enc"] == batch["clean"].shape  # the whole 0.5 s segment
    assert seen["voc"][1] == round(0.1 * tr.raw("vocoder").feature_rate)


# --- item 7: pairing checked at build --------------------------------------------------------
def test_mismatched_frame_rate_fails_when_the_trainer_is_built(tmp_path):
    """Catches silent truncation: a vocoder for 100 Hz features fed 50 Hz ones trained on half the audio."""
    cfg = vocoder_cfg(tmp_path)
    cfg.models.vocoder.args.feature_rate = 100
    cfg.models.vocoder.args.upsample_factors = [5, 4, 2, 1]
    with pytest.raises(ConfigError, match=r"vocoder expects 100.0 Hz features but the cleaner gives 50.0 Hz"):
        TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg)


def test_batch_whose_features_do_not_cover_the_audio_is_an_error(tmp_path):
    """Catches the per-step truncation to the shorter signal when lengths disagree by > one hop."""
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(vocoder_cfg(tmp_path))
    vocoder = tr.raw("vocoder")
    tr._check_lengths(10, 10 * vocoder.hop + vocoder.hop, vocoder, "x")  # one hop apart: fine
    with pytest.raises(ConfigError, match=r"makes 10 frames from x, .* target has 3840 \(more than one hop"):
        tr._check_lengths(10, 12 * vocoder.hop, vocoder, "x")


# --- item 10: precision ----------------------------------------------------------------------
def test_stage1_compares_estimate_and_target_in_one_precision(tmp_path):
    """Catches an fp32 target against a bf16 estimate: an untrained cleaner (zero adapters) on clean
    input must have exactly zero loss under bf16 autocast."""
    cfg = stage1_cfg(tmp_path)
    cfg.exp.precision = "bf16"
    cfg.data.train.args.degradations = None
    tr = TRAINERS.get("miipher2_feature_cleaner").from_config(cfg)
    batch = _batch(tr)
    estimate, target, _ = tr._features(batch)
    assert torch.equal(estimate, target)


def test_vocoder_features_are_fp32_as_at_inference(tmp_path):
    """Catches stage 2-3 features computed under bf16 autocast while inference runs fp32."""
    cfg = vocoder_cfg(tmp_path)
    cfg.exp.precision = "bf16"
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg)
    got = {}
    tr.raw("vocoder").register_forward_pre_hook(lambda m, a: got.update(feats=a[0].detach().clone()))
    batch = _batch(tr)
    tr._last_micro, tr._stepped, tr._skipped, tr._step_scalars = True, set(), set(), {}
    tr.train_step(batch)
    leveled = tr._level(batch)
    with torch.no_grad():
        expected = tr.raw("feature_cleaner").target(leveled["clean"], int(batch["sr"]), batch.get("lengths"))
    assert got["feats"].dtype == torch.float32
    assert torch.equal(got["feats"], expected)


# --- item 12: discriminators run on real audio once ------------------------------------------
def test_discriminator_sees_each_real_clip_once_per_pass(tmp_path):
    """Catches the real batch repeated per WaveFit iteration (T x the D work on identical audio)."""
    cfg = vocoder_cfg(tmp_path)
    cfg.models.vocoder = {**VOCODER, "args": {**VOCODER["args"], "iterations": 3}}
    tr = TRAINERS.get("miipher2_vocoder_pretrain").from_config(cfg)
    rows = []
    tr.raw("mpd").register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    tr._last_micro, tr._stepped, tr._skipped, tr._step_scalars = True, set(), set(), {}
    tr.train_step(_batch(tr))
    b = 2
    assert sorted(rows) == [b, b, 3 * b, 3 * b]  # D step: real, fake; G step: real (no grad), fake


# --- item 13: non-finite steps ---------------------------------------------------------------
def _nan_batch(batch: dict) -> dict:
    return {**batch, "degraded": torch.full_like(batch["degraded"], float("nan"))}


def test_nan_batch_skips_the_update_and_is_counted(tmp_path):
    """Catches a NaN step reaching the weights (and through them the EMA and every checkpoint)."""
    tr = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path, max_nonfinite_steps=3))
    batch = _batch(tr)
    before = {n: p.detach().clone() for n, p in tr.models["feature_cleaner"].named_parameters()}
    scalars = tr._train_window([_nan_batch(batch)])
    after = dict(tr.models["feature_cleaner"].named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert scalars["grad/nonfinite_skips"] == 1.0 and tr.nonfinite_in_a_row == 1
    tr._train_window([batch])  # a finite step updates and resets the run of skips
    assert tr.nonfinite_in_a_row == 0 and tr.nonfinite_total == 1
    assert any(not torch.equal(before[n], after[n]) for n in before)
    tr._train_window([_nan_batch(batch)])
    tr._train_window([_nan_batch(batch)])
    with pytest.raises(TrainingError, match=r"3 updates in a row had a non-finite loss or gradient \(generator\)"):
        tr._train_window([_nan_batch(batch)])


def test_checkpoint_and_export_refuse_non_finite_weights(tmp_path):
    """Catches a checkpoint holding NaN replacing the last good one."""
    tr = TRAINERS.get("miipher2_feature_cleaner").from_config(stage1_cfg(tmp_path, ema_decay=None))
    good = tr.save_checkpoint()
    adapter = next(p for n, p in tr.models["feature_cleaner"].named_parameters() if ".adapter." in n)
    with torch.no_grad():
        adapter[0] = float("nan")
    tr.step = 7
    with pytest.raises(CheckpointError, match=r"checkpoint step 7 \(models\): weight 'feature_cleaner\..*' holds NaN"):
        tr.save_checkpoint()
    ckpt = tmp_path / "miipher2_feature_cleaner" / "ckpt"
    assert (ckpt / "latest").resolve() == good.resolve()
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest", good.name]
    with pytest.raises(CheckpointError, match=r"export of models.feature_cleaner .* holds NaN"):
        tr._write_export()
    assert not (tmp_path / "miipher2_feature_cleaner" / "export").exists()
