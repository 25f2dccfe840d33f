"""whisper_encoder: the torch log mel equals WhisperFeatureExtractor, inputs shorter and longer than
Whisper's window give the frames of the same audio padded, the pretrained path loads checkpoints the
test saves, and the parallel-adapter cleaner refuses it with the reason."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from restorekit.errors import CheckpointError, ConfigError
from restorekit.models import MODELS
from restorekit.models.frontends import WhisperLogMel

# 50 positions: a 1 s window (100 mel frames) instead of 30 s, so tests cross it cheaply
TINY = {"d_model": 32, "encoder_layers": 3, "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
        "max_source_positions": 50, "num_mel_bins": 80}
TINY_FULL = {**TINY, "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 64, "vocab_size": 64,
             "max_target_positions": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
             "decoder_start_token_id": 1}


def _encoder(layer: int = 2, **args):
    torch.manual_seed(0)
    return MODELS.build({"name": "whisper_encoder", "args": {"layer": layer, "config": TINY, **args}}, where="models.encoder")


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.1 * rng.standard_normal(t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def _check_log_mel(wave: np.ndarray, bins: int) -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=bins)
    ref = extractor(wave, sampling_rate=16000, return_tensors="np")["input_features"]  # zero-padded to 30 s
    padded = torch.zeros(1, extractor.n_samples)
    padded[0, : wave.size] = torch.from_numpy(wave)
    ours = WhisperLogMel(extractor)(padded).numpy()
    assert ours.shape == ref.shape == (1, bins, 3000)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("bins", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(bins):
    _check_log_mel(_speechlike(2.0), bins)


@pytest.mark.real_data
def test_log_mel_matches_whisper_feature_extractor_on_real_speech(real_data):
    import soxr

    wave, sr = sf.read(real_data / "pairs/clean/seflow_complex_p232_096.flac", dtype="float32")
    _check_log_mel(soxr.resample(wave, sr, 16000).astype(np.float32), 80)


def test_one_second_gives_the_first_frames_of_the_same_audio_padded(one_thread):
    enc = _encoder()
    assert enc.frame_rate == 50.0 and len(enc.blocks) == 2
    speech = torch.from_numpy(_speechlike(0.8))[None]  # shorter than the 1 s window
    alone = enc(speech, 16000)
    assert alone.shape == (1, 40, 32) == (1, enc.num_frames(speech.shape[1], 16000), 32)
    padded = torch.nn.functional.pad(speech, (0, 8000))  # 1.3 s: crosses into a second window
    with_silence = enc(padded, 16000)
    assert with_silence.shape == (1, 65, 32)
    torch.testing.assert_close(with_silence[:, :40], alone, atol=1e-5, rtol=0)
    # in a batch, lengths mask the other item's samples out of this one
    batch = torch.cat([padded.clone(), torch.randn(1, padded.shape[1])])
    batch[0, speech.shape[1]:] = 1.0  # garbage after the valid length
    out = enc(batch, 16000, torch.tensor([speech.shape[1], padded.shape[1]]))
    torch.testing.assert_close(out[:1, :40], alone, atol=1e-5, rtol=0)


def test_longer_inputs_are_encoded_window_by_window(one_thread):
    enc = _encoder()
    wave = torch.from_numpy(_speechlike(2.5))[None]
    out = enc(wave, 16000)
    assert out.shape == (1, 125, 32)
    for start, stop in ((0, 16000), (16000, 32000), (32000, 40000)):
        part = enc(wave[:, start:stop], 16000)
        torch.testing.assert_close(out[:, start // 320: start // 320 + part.shape[1]], part, atol=1e-5, rtol=0)
    # other rates are resampled to 16 kHz first: 2.5 s at 24 kHz is 125 frames too
    assert enc(torch.randn(1, 60000), 24000).shape == (1, 125, 32)


@pytest.mark.parametrize("layout", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_pretrained_folder_gives_the_checkpoints_hidden_states(tmp_path, layout, one_thread):
    import transformers

    torch.manual_seed(1)
    full = getattr(transformers, layout)(transformers.WhisperConfig(**TINY_FULL)).eval()
    full.save_pretrained(tmp_path)
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(tmp_path)
    wave = torch.from_numpy(_speechlike(1.0))[None]
    mel = WhisperLogMel()(wave)
    encoder = full.get_encoder()
    with torch.no_grad():
        ref = encoder(mel, output_hidden_states=True)
    for layer, expected in ((2, ref.hidden_states[2]), (3, ref.last_hidden_state)):
        enc = MODELS.build({"name": "whisper_encoder", "args": {"pretrained": str(tmp_path), "layer": layer}},
                           where="models.encoder")
        assert len(enc.blocks) == layer
        torch.testing.assert_close(enc(wave, 16000), expected, atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training


def test_bad_checkpoints_and_layers_are_user_errors(tmp_path):
    import transformers

    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                            intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"whisper_encoder: '.*' holds a 'bert' model, not Whisper"):
        MODELS.build({"name": "whisper_encoder", "args": {"pretrained": str(tmp_path), "layer": 1}}, where="m")
    with pytest.raises(CheckpointError, match=r"whisper_encoder: cannot load pretrained encoder '/nonexistent/w'"):
        MODELS.build({"name": "whisper_encoder", "args": {"pretrained": "/nonexistent/w", "layer": 1}}, where="m")
    with pytest.raises(ConfigError, match=r"whisper_encoder: layer=4 is out of range; this encoder has layers 1..3"):
        _encoder(layer=4)


def test_parallel_adapter_cleaner_refuses_whisper_and_says_why():
    node = {"name": "parallel_adapter_cleaner",
            "args": {"encoder": {"name": "whisper_encoder", "args": {"layer": 2, "config": TINY}}}}
    with pytest.raises(ConfigError, match=r"whisper_encoder cannot carry parallel adapters: its layers compute "
                                          r"their feed-forward inline \(fc1, fc2\)"):
        MODELS.build(node, where="models.feature_cleaner")
