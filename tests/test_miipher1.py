"""Miipher-1's feature cleaner: padding masked everywhere, text that matters, every intermediate output,
the masked feature loss, and stage 1 on the demo corpus."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import ConfigError, DataError
from restorekit.losses import LOSSES
from restorekit.models import MODELS
from restorekit.models.miipher1 import Miipher1Network

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_NET = {"hidden": 16, "heads": 2, "blocks": 2, "ffn_dim": 32, "kernel_size": 5, "postnet_channels": 8,
            "dropout": 0.0, "postnet_dropout": 0.0}
TINY_ENCODER = {"name": "w2v_bert2", "args": {"layer": 1, "config": {
    "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "output_hidden_size": 16,
    "conv_depthwise_kernel_size": 5}}}


def network(**kw) -> Miipher1Network:
    torch.manual_seed(0)
    return Miipher1Network(12, kw.pop("text_dim", 10), kw.pop("speaker_dim", 6), **{**TINY_NET, **kw})


def cleaner(**args) -> torch.nn.Module:
    torch.manual_seed(0)
    node = {"name": "miipher1_cleaner", "args": {"encoder": TINY_ENCODER,
                                                 "text_encoder": {"name": "phoneme_embedding", "args": {"dim": 8}},
                                                 **TINY_NET, **args}}
    return MODELS.build(node, where="models.feature_cleaner")


def batch_inputs():
    """Two items: 20 frames / 7 phones and 13 frames / 4 phones, padding filled with garbage."""
    g = torch.Generator().manual_seed(1)
    feats, text, spk = torch.randn(2, 20, 12, generator=g), torch.randn(2, 7, 10, generator=g), torch.randn(2, 6)
    fv = torch.arange(20)[None] < torch.tensor([20, 13])[:, None]
    tv = torch.arange(7)[None] < torch.tensor([7, 4])[:, None]
    return feats, fv, text, tv, spk


def test_a_padded_batch_gives_each_item_its_unpadded_output_on_valid_frames():
    net = network().eval()
    feats, fv, text, tv, spk = batch_inputs()
    padded = net(feats, fv, text, tv, spk)
    for b, (n, m) in enumerate(((20, 7), (13, 4))):
        alone = net(feats[b:b + 1, :n], fv[b:b + 1, :n], text[b:b + 1, :m], tv[b:b + 1, :m], spk[b:b + 1])
        for out, ref in zip(padded, alone):
            torch.testing.assert_close(out[b, :n], ref[0], atol=2e-5, rtol=1e-4)
    assert all(o[1, 13:].abs().max() == 0 for o in padded)  # padded frames come out zero


def test_train_mode_batchnorm_takes_its_statistics_from_valid_frames_only():
    net = network().train()  # BatchNorm normalises with the batch's statistics
    feats, fv, text, tv, spk = batch_inputs()
    a = net(feats, fv, text, tv, spk)
    longer = torch.cat([feats, torch.full((2, 6, 12), 1e3)], 1)  # six more padded frames, holding garbage
    b = net(longer, torch.cat([fv, torch.zeros(2, 6, dtype=torch.bool)], 1), text, tv, spk)
    for x, y in zip(a, b):
        torch.testing.assert_close(y[:, :20], x, atol=2e-5, rtol=1e-4)


def test_text_padding_does_not_change_the_output_but_the_text_does():
    net = network().eval()
    feats, fv, text, tv, spk = batch_inputs()
    base = net(feats, fv, text, tv, spk)[-1]
    junk = text.clone()
    junk[1, 4:] = 50.0  # padded phones
    torch.testing.assert_close(net(feats, fv, junk, tv, spk)[-1], base)
    other = text.clone()
    other[1, :4] = torch.randn(4, 10)  # the transcript itself
    changed = net(feats, fv, other, tv, spk)[-1]
    assert (changed[1, :13] - base[1, :13]).abs().max() > 1e-3
    torch.testing.assert_close(changed[0], base[0])  # item 0's text is untouched
    masked = tv.clone()
    masked[1, 2:] = False  # masking two valid phones is a different transcript
    assert (net(feats, fv, text, masked, spk)[-1][1, :13] - base[1, :13]).abs().max() > 1e-3


def test_two_iterations_give_four_intermediate_outputs_and_the_speaker_matters():
    net = network().eval()
    feats, fv, text, tv, spk = batch_inputs()
    outs = net(feats, fv, text, tv, spk)
    assert len(outs) == 4 and all(o.shape == (2, 20, 12) for o in outs)
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[3])
    assert len(network(iterations=3).eval()(feats, fv, text, tv, spk)) == 6
    assert (net(feats, fv, text, tv, -spk)[-1] - outs[-1]).abs().max() > 1e-3


def test_without_text_or_speaker_the_network_still_cleans():
    net = network(text_dim=None, speaker_dim=None).eval()
    feats, fv, *_ = batch_inputs()
    outs = net(feats, fv)
    assert len(outs) == 4 and outs[-1].shape == (2, 20, 12) and torch.isfinite(outs[-1]).all()


def test_cleaner_reads_phonemes_and_reports_missing_ones():
    model = cleaner().eval()
    assert model.conditioning == ("phonemes", "text_lengths") and model.feature_dim == 16
    wave = torch.randn(2, 8000) * 0.1
    ph, tl = torch.tensor([[5, 9, 12, 3], [7, 8, 0, 0]]), torch.tensor([4, 2])
    with torch.no_grad():
        out = model(wave, 16000, None, ph, tl)
        wider = model(wave, 16000, None, torch.cat([ph, torch.zeros(2, 3, dtype=torch.long)], 1), tl)
        outs = model(wave, 16000, None, ph, tl, intermediate=True)
    assert out.shape == (2, model.num_frames(8000, 16000), 16) and len(outs) == 4
    torch.testing.assert_close(outs[-1], out)
    torch.testing.assert_close(wider, out)  # more padding, same transcript
    with pytest.raises(DataError, match="text-conditioned but got no phonemes.*phonemes: true"):
        model(wave, 16000)
    with pytest.raises(DataError, match="empty phoneme sequence"):
        model(wave, 16000, None, ph, torch.tensor([4, 0]))
    no_text = cleaner(text_encoder=None).eval()
    assert no_text.conditioning == () and no_text(wave, 16000).shape == out.shape


def test_only_the_cleaner_network_and_a_learned_text_embedding_train():
    model = cleaner(speaker_encoder={"name": "resemblyzer"})
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"network", "text_encoder"}
    assert model.network.speaker_proj.in_features == 256  # resemblyzer's embedding
    model.train()
    assert not model.encoder.training and not model.speaker_encoder.training and model.network.training


def test_bad_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="hidden \\(18\\) must be even and divisible by heads \\(4\\)"):
        cleaner(hidden=18, heads=4)
    with pytest.raises(ConfigError, match="iterations must be >= 1"):
        cleaner(iterations=0)


def test_feature_loss_masks_padded_frames():
    loss = LOSSES.build({"name": "miipher_feature_loss", "args": {"spectral_convergence": "squared"}}, "losses")
    g = torch.Generator().manual_seed(0)
    est, ref = torch.randn(1, 6, 4, generator=g), torch.randn(1, 6, 4, generator=g)
    padded_est = torch.cat([est, torch.randn(1, 3, 4, generator=g)], 1)
    padded_ref = torch.cat([ref, torch.randn(1, 3, 4, generator=g)], 1)
    alone = loss(est, ref)
    assert loss(padded_est, padded_ref, torch.tensor([6])) == pytest.approx(float(alone), rel=1e-6)
    assert loss(padded_est, padded_ref) != pytest.approx(float(alone), rel=1e-3)
    d = est - ref  # by hand: L1 and L2 over the 6 x 4 valid elements, squared SC
    hand = d.abs().mean() + d.square().mean() + d.square().sum() / ref.square().sum()
    assert float(alone) == pytest.approx(float(hand), rel=1e-6)


def test_transcripts_csv_is_looked_up_by_relative_path_or_stem_and_a_missing_row_names_file_and_csv(tmp_path):
    from restorekit.inference_text import TranscriptSource

    csv = tmp_path / "texts.csv"
    csv.write_text("name,text\nspk1/a.wav,Hello there.\nb,Second file.\n", encoding="utf-8")
    source, wave = TranscriptSource(str(csv)), np.zeros(160, dtype=np.float32)
    assert source.text("spk1/a", wave, 16000) == "Hello there."
    assert source.text("other/b", wave, 16000) == "Second file."  # a stem row matches in any folder
    with pytest.raises(DataError, match=f"no transcript for spk2/c in {csv}; add a row 'spk2/c,<text>'"):
        source.text("spk2/c", wave, 16000)
    with pytest.raises(ConfigError, match="reads the transcript of each file: pass transcripts="):
        TranscriptSource(None)


def test_miipher1_restorer_needs_the_transcript():
    restorer = MODELS.build({"name": "miipher1", "args": {
        "feature_cleaner": {"name": "miipher1_cleaner", "args": {"encoder": TINY_ENCODER, "text_encoder": {
            "name": "phoneme_embedding", "args": {"dim": 8}}, **TINY_NET}},
        "vocoder": {"name": "wavefit", "args": {"feature_dim": 16, "iterations": 1, "cond_channels": 8,
                                                "upsample_channels": [8, 8, 8, 8], "downsample_channels": [4, 4, 8, 8],
                                                "memory_efficient": True}}}}, where="models.restorer")
    wave = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    with pytest.raises(DataError, match="text-conditioned and got no transcript"):
        restorer.restore(wave, 16000)
    out, sr = restorer.restore(wave, 16000, text="Bring two pencils.")
    assert restorer.text_conditioned and sr == 24000 and out.shape == (12000,)
    assert restorer.feature_cleaner._transcript is None  # the transcript does not outlive the call


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3", "quickstart/stage1", "quickstart/stage3"])
def test_miipher1_configs_resolve_to_registered_components(stage):
    from omegaconf import OmegaConf

    from restorekit.config import load_config
    from test_recipes_configs import check_components, check_node
    from tests_helpers import REPO

    folders = ["data.train_dirs=[/d/train]", "data.valid_dirs=[/d/valid]", "data.noise_dirs=[/d/noise]",
               "models.feature_cleaner.args.text_encoder.args.pretrained=/d/plbert"]
    cfg = load_config([f"exp.config_path={REPO}/configs/miipher1/{stage}.yaml",
                       *(folders if "quickstart" not in stage else [])])
    plain = OmegaConf.to_container(cfg, resolve=True)
    check_components(plain)
    cleaner = plain["models"]["feature_cleaner"]
    for key in ("encoder", "text_encoder", "speaker_encoder"):
        check_node(MODELS, cleaner["args"][key], f"models.feature_cleaner.args.{key}")
    assert cleaner["name"] == "miipher1_cleaner" and plain["models"]["vocoder"]["args"]["feature_dim"] == (
        64 if "quickstart" in stage else 1024)
    if stage.endswith(("stage1", "stage3")):  # the stages that run the cleaner read whole utterances' phonemes
        assert plain["data"]["train"]["args"]["phonemes"] and plain["data"]["train"]["args"]["segment_seconds"] is None
    if stage == "stage1":
        assert cleaner["args"]["encoder"]["args"]["layer"] == 8 and cleaner["args"]["text_encoder"]["name"] == "plbert"
        assert plain["trainer"]["args"]["optimizers"]["generator"]["args"]["lr"] == 2e-5
        assert plain["losses"]["feature_cleaner"][0]["args"]["spectral_convergence"] == "squared"
