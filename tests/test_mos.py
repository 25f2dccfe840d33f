"""MOS predictors (WV-MOS, UTMOSv2), their metrics and the utmos_loss human-feedback loss.

Real weights cannot be downloaded here: tiny predictors of the same classes are saved in the
released checkpoint layouts and loaded through the real loading code via the metric/loss args.
"""
from __future__ import annotations

import pickle

import julius
import numpy as np
import pytest
import torch
from torch import nn

from restorekit.errors import CheckpointError, ConfigError
from restorekit.losses import LOSSES
from restorekit.metrics import METRICS
from restorekit.models.mos import (
    UTMOSV2_DATASETS,
    Utmosv2,
    Utmosv2Spec,
    Utmosv2Spectrograms,
    Utmosv2Ssl,
    WvMos,
    _tile,
    load_state,
)
from test_metrics import voiced as _voiced

SR = 16000


def voiced(sr: int = SR, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """tests/test_metrics.py's speech-like signal, 1 s by default here."""
    return _voiced(sr, seconds, seed)


def tiny_config(hidden: int = 16):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2, mask_time_prob=0.05)


def save_encoder(folder, hidden: int = 16) -> str:
    """What a hub snapshot of facebook/wav2vec2-base holds that the loaders read: config + extractor."""
    from transformers import Wav2Vec2FeatureExtractor

    tiny_config(hidden).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return str(folder)


def legacy_weight_norm(state: dict) -> dict:
    """Keys as transformers 4.x of 2022 saved them (pos_conv weight norm as weight_g / weight_v)."""
    new = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}
    out = {}
    for key, value in state.items():
        for now, old in new.items():
            key = key.replace(now, old)
        out[key] = value
    return out


class Hparams:
    """Stands for the pickled objects a Lightning checkpoint may carry (e.g. an AttributeDict)."""

    lr = 1e-4


@pytest.fixture(scope="module")
def wvmos_files(tmp_path_factory):
    """(checkpoint, encoder folder, the predictor saved) in WV-MOS's released Lightning layout."""
    folder = tmp_path_factory.mktemp("wvmos")
    torch.manual_seed(0)
    model = WvMos(tiny_config())
    with torch.no_grad():
        model.dense[3].bias.fill_(3.0)  # scores near the MOS scale
    state = {f"model.{k}": v for k, v in legacy_weight_norm(model.state_dict()).items()}
    ckpt = folder / "wav2vec2.ckpt"
    torch.save({"state_dict": state, "epoch": 7, "global_step": 1234, "pytorch-lightning_version": "1.5.10"}, ckpt)
    return str(ckpt), save_encoder(folder / "encoder"), model.eval()


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """A home without the packages' caches, so defaults find no weights."""
    monkeypatch.setenv("HOME", str(tmp_path))


def reference_wvmos(model: WvMos, wave: np.ndarray) -> float:
    """WV-MOS as the wvmos package computes it: transformers' feature extractor, then the network."""
    from transformers import Wav2Vec2FeatureExtractor

    x = Wav2Vec2FeatureExtractor(do_normalize=True)(wave, sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        return float(model.dense(model.encoder(x).last_hidden_state).mean())


# --- wvmos metric -----------------------------------------------------------------------------

def test_wvmos_metric_loads_the_released_layout_and_scores_like_the_package(wvmos_files):
    ckpt, encoder, model = wvmos_files
    metric = METRICS.build({"name": "wvmos", "args": {"checkpoint": ckpt, "encoder": encoder}}, "metrics.wvmos")
    # the second file is quiet (-60 dB): there the waveform normalisation decides the score, since
    # the feature encoder's group norm is otherwise invariant to level
    files = [voiced(seed=0, seconds=0.5), 1e-3 * voiced(seed=1, seconds=0.75)]
    scores = [metric(wave, SR) for wave in files]
    for wave, values in zip(files, scores):
        assert list(values) == ["wvmos"] and isinstance(values["wvmos"], float) and np.isfinite(values["wvmos"])
        assert values["wvmos"] == pytest.approx(reference_wvmos(model, wave), abs=1e-4)
    assert scores[0]["wvmos"] != pytest.approx(scores[1]["wvmos"], abs=1e-6)  # the audio matters


def test_wvmos_metric_scores_48k_audio_at_16k(wvmos_files):
    from restorekit.audio import resample

    ckpt, encoder, model = wvmos_files
    metric = METRICS.build({"name": "wvmos", "args": {"checkpoint": ckpt, "encoder": encoder}}, "m")
    wave48 = voiced(sr=48000, seconds=0.5)
    assert metric(wave48, 48000)["wvmos"] == pytest.approx(reference_wvmos(model, resample(wave48, 48000, SR)),
                                                            abs=1e-4)


def test_wvmos_without_weights_says_where_to_get_them_and_which_arg(no_cache, tmp_path):
    with pytest.raises(CheckpointError, match=r"wvmos: released weights not found \(no checkpoint given and none at "
                       r".*wv_mos/wv_mos.ckpt\); download https://zenodo.org/record/6201162/files/wav2vec2.ckpt "
                       r".*set the checkpoint argument"):
        METRICS.build({"name": "wvmos"}, "metrics.wvmos")
    with pytest.raises(CheckpointError, match=r"wvmos: released weights not found \(checkpoint .*nope.ckpt\)"):
        METRICS.build({"name": "wvmos", "args": {"checkpoint": str(tmp_path / "nope.ckpt")}}, "metrics.wvmos")


def test_wvmos_checkpoint_with_pickled_objects_loads_only_when_trusted(wvmos_files, tmp_path):
    ckpt, encoder, model = wvmos_files
    raw = torch.load(ckpt, weights_only=True)
    unsafe = tmp_path / "lightning.ckpt"
    torch.save({**raw, "hyper_parameters": Hparams()}, unsafe)
    args = {"checkpoint": str(unsafe), "encoder": encoder}
    with pytest.raises(CheckpointError, match="holds pickled Python objects .* set trust_checkpoint: true"):
        METRICS.build({"name": "wvmos", "args": args}, "m")
    metric = METRICS.build({"name": "wvmos", "args": {**args, "trust_checkpoint": True}}, "m")
    assert metric(voiced(), SR)["wvmos"] == pytest.approx(reference_wvmos(model, voiced()), abs=1e-4)


def test_wvmos_checkpoint_of_another_encoder_size_names_the_mismatch(wvmos_files, tmp_path):
    ckpt, _, _ = wvmos_files
    other = save_encoder(tmp_path / "wide", hidden=24)
    with pytest.raises(CheckpointError, match=r"wvmos: .* does not fit the model \(wrong shape .*check that the "
                       r"encoder config matches"):
        METRICS.build({"name": "wvmos", "args": {"checkpoint": ckpt, "encoder": other}}, "m")


def test_a_file_that_is_not_a_torch_checkpoint_is_a_checkpoint_error(wvmos_files, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="wvmos: cannot read .*bad.ckpt|wvmos: .*bad.ckpt holds pickled"):
        METRICS.build({"name": "wvmos", "args": {"checkpoint": str(bad), "encoder": wvmos_files[1]}}, "m")


def test_encoder_config_missing_offline_says_how_to_make_it_available(wvmos_files, tmp_path):
    with pytest.raises(CheckpointError, match=r"wvmos: cannot load the encoder config '.*nowhere'.*config.json "
                       r"and preprocessor_config.json"):
        METRICS.build({"name": "wvmos", "args": {"checkpoint": wvmos_files[0],
                                                 "encoder": str(tmp_path / "nowhere")}}, "m")


# --- utmos_loss --------------------------------------------------------------------------------

def wvmos_loss(wvmos_files, **args):
    ckpt, encoder, _ = wvmos_files
    node = {"name": "utmos_loss", "args": {"predictor": "wvmos", "checkpoint": ckpt, "encoder": encoder, **args}}
    return LOSSES.build(node, "losses[0]")


def test_utmos_loss_is_minus_the_mean_predicted_mos_and_ignores_the_reference(wvmos_files):
    loss = wvmos_loss(wvmos_files)
    waves = [voiced(seed=s) for s in range(2)]
    batch = torch.from_numpy(np.stack(waves))
    expected = -np.mean([reference_wvmos(wvmos_files[2], w) for w in waves])
    assert loss(batch).item() == pytest.approx(expected, abs=1e-4)
    assert loss(batch, torch.zeros_like(batch)).item() == pytest.approx(expected, abs=1e-4)


def test_utmos_loss_gradient_reaches_the_estimate_and_never_the_predictor(wvmos_files):
    loss = wvmos_loss(wvmos_files)
    loss.train()  # a trainer may switch modes; the predictor stays in eval (no dropout)
    assert not loss.predictor.training and not any(m.training for m in loss.predictor.modules())
    estimate = torch.from_numpy(voiced()[None]).requires_grad_(True)
    value = loss(estimate)
    assert value.ndim == 0
    value.backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_gradient_descent_on_utmos_loss_raises_the_predicted_mos(wvmos_files, one_thread):
    loss = wvmos_loss(wvmos_files)
    estimate = torch.from_numpy(voiced(seconds=0.5)[None]).requires_grad_(True)
    opt = torch.optim.Adam([estimate], lr=1e-3)
    values = []
    for _ in range(6):
        opt.zero_grad()
        value = loss(estimate)
        values.append(-value.item())
        value.backward()
        opt.step()
    assert values[-1] > values[0] + 1e-3
    assert all(b > a for a, b in zip(values, values[1:]))


def test_utmos_loss_resamples_48k_estimates_to_16k_with_julius(wvmos_files):
    loss48, loss16 = wvmos_loss(wvmos_files, sample_rate=48000), wvmos_loss(wvmos_files)
    estimate = torch.from_numpy(voiced(sr=48000, seconds=0.5)[None]).requires_grad_(True)
    value = loss48(estimate)
    assert value.item() == pytest.approx(loss16(julius.resample_frac(estimate.detach(), 48000, SR)).item(), abs=1e-5)
    value.backward()
    assert estimate.grad.shape == estimate.shape and estimate.grad.abs().sum() > 0


def test_utmos_loss_accepts_generator_outputs_of_shape_b_1_t(wvmos_files):
    loss = wvmos_loss(wvmos_files)
    batch = torch.from_numpy(voiced()[None])
    assert loss(batch[:, None]).item() == pytest.approx(loss(batch).item())


def test_utmos_loss_without_weights_fails_at_build_saying_where_to_get_them(no_cache):
    with pytest.raises(CheckpointError, match=r"utmosv2: released weights not found \(no checkpoint given and none "
                       r"at .*fold0_s42_best_model.pth\); download https://huggingface.co/sarulab-speech/UTMOSv2/"
                       r".*set the checkpoint argument"):
        LOSSES.build({"name": "utmos_loss"}, "losses[0]")
    with pytest.raises(CheckpointError, match="wvmos: released weights not found"):
        LOSSES.build({"name": "utmos_loss", "args": {"predictor": "wvmos"}}, "losses[0]")


def test_utmos_loss_unknown_predictor_lists_the_choices():
    with pytest.raises(ConfigError, match=r"utmos_loss: predictor 'dnsmos' is unknown; choose one of "
                       r"\['utmosv2', 'wvmos', 'utmos22'\]"):
        LOSSES.build({"name": "utmos_loss", "args": {"predictor": "dnsmos"}}, "losses[0]")


def test_utmos_loss_utmos22_says_what_it_lacks_at_build(tmp_path, monkeypatch):
    from restorekit.optional import missing

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if missing(["torchaudio"]):
        with pytest.raises(ConfigError, match=r"utmos_loss: predictor utmos22 runs tarepan/SpeechMOS:v1.2.0, whose "
                           r"code imports torchaudio, which is not installed .* or use predictor utmosv2 or wvmos"):
            LOSSES.build({"name": "utmos_loss", "args": {"predictor": "utmos22"}}, "losses[0]")
        return
    with pytest.raises(CheckpointError, match="utmos: weights for .* are not available offline"):
        LOSSES.build({"name": "utmos_loss", "args": {"predictor": "utmos22"}}, "losses[0]")


# --- UTMOSv2 -----------------------------------------------------------------------------------

def test_utmosv2_spectrograms_equal_librosa_db_mels_as_utmosv2_computes_them(one_thread):
    import librosa

    front = Utmosv2Spectrograms()
    crop = voiced(seconds=0.3)  # UTMOSv2 crops 1.4 s; a shorter one checks the same maths faster
    crop[len(crop) // 2:] = 0.0  # digital silence: below librosa's 80 dB floor
    for win in (4096, 512):
        mel = librosa.feature.melspectrogram(y=crop, sr=SR, n_fft=4096, hop_length=32, n_mels=512, win_length=win)
        expected = (librosa.power_to_db(mel, ref=np.max) + 80) / 80
        got = front.db(torch.from_numpy(crop)[None], win)[0].numpy()
        assert got.shape == expected.shape == (512, 151)
        np.testing.assert_allclose(got, expected, atol=2e-3)
    images = front(torch.from_numpy(crop)[None])
    assert images.shape == (1, 4, 3, 512, 512)
    assert torch.equal(images[:, :, 0], images[:, :, 2])  # three identical channels, as UTMOSv2 stacks them


class SmallCnn(nn.Sequential):
    """An image CNN returning a (B, C, h, w) map, standing for timm's EfficientNetV2-S (C = 1280)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__(nn.Conv2d(3, channels, 8, stride=8), nn.ReLU(), nn.Conv2d(channels, channels, 4, stride=4))
        self.num_features = channels


def small_utmosv2(seed: int = 0) -> Utmosv2:
    torch.manual_seed(seed)
    front = Utmosv2Spectrograms(n_fft=512, hop_length=64, n_mels=32, win_lengths=(512, 256, 128, 64), shape=(64, 64))
    spec = Utmosv2Spec([SmallCnn() for _ in range(4)], num_features=16)
    # shorter crops than the released 3 s / 1.4 s keep the test fast; the crop logic is the same
    return Utmosv2(Utmosv2Ssl(tiny_config()), spec, front, ssl_seconds=1.0, spec_seconds=0.5).freeze()


def test_utmosv2_fusion_layer_sees_both_branches_and_the_domain_as_released():
    model = small_utmosv2()
    # ssl: mean + max (2 * 16) + 10 zero domain slots; spec: 2 * (avg + max) * 16 + 10; domain one-hot 10
    assert model.fc.in_features == (2 * 16 + 10) + (4 * 16 + 10) + 10
    assert model.domain.argmax().item() == UTMOSV2_DATASETS.index("sarulab")
    # the released sizes: wav2vec2-base 768, EfficientNetV2-S 1280 -> UTMOSv2's Linear(6686, 1)
    assert (2 * 768 + 10) + (4 * 1280 + 10) + 10 == 6686
    # each branch's output ends in 10 zero domain slots (its fc was replaced by an identity after the cat)
    ssl = model.ssl(torch.from_numpy(voiced(seconds=1.0)[None]))
    images = torch.rand(1, 2 * 4, 3, 64, 64)
    spec = model.spec_long(images)
    for out, branch in ((ssl, model.ssl), (spec, model.spec_long)):
        assert out.shape == (1, branch.out_features) and torch.all(out[:, -10:] == 0) and out[:, :-10].abs().sum() > 0
    with pytest.raises(ConfigError, match="utmosv2: dataset 'vctk' is not one of UTMOSv2's domains"):
        Utmosv2(model.ssl, model.spec_long, model.frontend, dataset="vctk")


def test_utmosv2_is_repeatable_per_seed_differentiable_and_tiles_short_audio(one_thread):
    model = small_utmosv2()
    wave = torch.from_numpy(np.stack([voiced(seconds=0.4), voiced(seconds=0.4, seed=3)])).requires_grad_(True)
    model.reseed(1)
    first = model(wave, SR)
    model.reseed(1)
    again = model(wave, SR)
    assert first.shape == (2,) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    model.rng = None  # a loss in training: numpy's global generator, which the trainer seeds and checkpoints
    with torch.no_grad():
        np.random.seed(5)
        seeded = model(wave, SR)
        np.random.seed(5)
        assert torch.equal(model(wave, SR), seeded)
        assert not torch.equal(model(wave, SR), seeded)  # the draws go on
    first.sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    tiled = _tile(wave.detach(), model.ssl_len)  # utmosv2 extend_audio: repeat until longer than the crop
    assert tiled.shape[1] > model.ssl_len and torch.equal(tiled[:, wave.shape[1]:2 * wave.shape[1]], wave.detach())


def test_utmosv2_state_dict_keys_follow_the_released_layout():
    keys = set(small_utmosv2().state_dict())
    assert {"ssl.weights", "ssl.attn.0.in_proj_weight", "spec_long.weights", "spec_long.attn.in_proj_weight",
            "fc.weight", "fc.bias"} <= keys
    assert any(k.startswith("ssl.encoder.model.encoder.layers.1.") for k in keys)
    assert any(k.startswith("spec_long.backbones.3.") for k in keys)


def test_utmosv2_released_layout_round_trips_through_load_state_with_legacy_names(tmp_path):
    source, target = small_utmosv2(seed=0), small_utmosv2(seed=1)
    state = legacy_weight_norm(source.state_dict())
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in state)
    load_state("utmosv2", target, state, tmp_path / "fold0_s42_best_model.pth")
    wave = torch.from_numpy(voiced(seconds=1.0)[None])
    source.reseed(0), target.reseed(0)
    assert torch.allclose(source(wave, SR), target(wave, SR), atol=1e-5)
    del state["fc.bias"]
    with pytest.raises(CheckpointError, match=r"utmosv2: .*fold0_s42_best_model.pth does not fit the model "
                       r"\(missing \['fc.bias'\]\)"):
        load_state("utmosv2", target, state, tmp_path / "fold0_s42_best_model.pth")


def save_utmosv2_layout(path) -> None:
    """A checkpoint in the released key layout (only the keys the loader checks before building)."""
    torch.save({"ssl.weights": torch.ones(13), "spec_long.weights": torch.ones(4), "fc.weight": torch.ones(1, 6686),
                "fc.bias": torch.zeros(1)}, path)


def test_utmosv2_needs_timm_and_says_how_to_install_it(tmp_path):
    pytest.importorskip("transformers")
    try:
        import timm  # noqa: F401
        pytest.skip("timm is installed here; the error is for machines without it")
    except ImportError:
        pass
    ckpt = tmp_path / "fold0_s42_best_model.pth"
    save_utmosv2_layout(ckpt)
    with pytest.raises(ConfigError, match=r"utmosv2 \(its spectrogram branch runs timm EfficientNetV2 backbones\) "
                       r"needs timm, which is not installed: pip install timm"):
        METRICS.build({"name": "utmosv2", "args": {"checkpoint": str(ckpt)}}, "metrics.utmosv2")


def test_utmosv2_refuses_a_file_of_another_layout(wvmos_files):
    with pytest.raises(CheckpointError, match=r"utmosv2: .*wav2vec2.ckpt is not a UTMOSv2 fusion checkpoint"):
        LOSSES.build({"name": "utmos_loss", "args": {"checkpoint": wvmos_files[0]}}, "losses[0]")


def test_utmosv2_loads_the_released_layout_with_timm(tmp_path):
    """Where timm is installed: a tiny timm backbone saved in the released layout loads and scores."""
    pytest.importorskip("timm")
    from restorekit.models.mos import build_utmosv2

    encoder = save_encoder(tmp_path / "encoder")
    model = build_utmosv2(tiny_config(), True, "test_efficientnet")
    ckpt = tmp_path / "fold0_s42_best_model.pth"
    torch.save(legacy_weight_norm(model.state_dict()), ckpt)
    args = {"checkpoint": str(ckpt), "encoder": encoder, "backbone": "test_efficientnet"}
    values = METRICS.build({"name": "utmosv2", "args": args}, "m")(voiced(), SR)
    assert np.isfinite(values["utmosv2"])


def test_pickle_module_is_what_torch_raises_for_refused_objects(tmp_path):
    """read_checkpoint catches pickle.UnpicklingError: torch's weights_only refusal must still be one."""
    path = tmp_path / "x.pt"
    torch.save({"h": Hparams()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
