"""The `mimi` codec model (issue 15): rates and shapes, streaming equal to offline, the released
weight layout (transformers' MimiModel) both ways, and the training quantiser (k-means init, EMA,
dead codes, quantiser dropout, the 50% quantisation rate). Tiny configs only."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import MimiConfig, MimiModel

from restorekit.errors import AudioError, CheckpointError, ConfigError
from restorekit.models import MODELS
from restorekit.models.mimi import Mimi
from restorekit.models.quantization import EuclideanCodebook

# ~20k parameters; context 3 (25 Hz frames) so a few frames already slide the attention window
TINY = {"n_filters": 4, "dimension": 16, "transformer_layers": 2, "heads": 2, "ffn": 32, "context": 3,
        "n_q": 4, "codebook_size": 16, "codebook_dim": 8}
HF_TINY = dict(hidden_size=16, num_filters=4, num_hidden_layers=2, intermediate_size=32, num_attention_heads=2,
               num_key_value_heads=2, codebook_size=16, codebook_dim=8, vector_quantization_hidden_dimension=8,
               num_quantizers=4, upsample_groups=16, sliding_window=3,
               layer_scale_initial_scale=0.5)  # strong attention, and a scale that must be applied


def tiny(**kw) -> Mimi:
    torch.manual_seed(0)
    return MODELS.build({"name": "mimi", "args": {**TINY, **kw}}, where="models.codec").eval()


def noise(seconds: float, sr: int = 24000, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, int(seconds * sr), generator=torch.Generator().manual_seed(1)) * 0.3


def test_tiny_mimi_round_trips_at_12_5_hz_with_a_1920_sample_hop(one_thread):
    model = tiny(codebook_size=2048, n_q=8)
    assert model.hop == 1920 and model.frame_rate == 12.5 and model.sample_rate == 24000
    assert model.bitrate(8) == pytest.approx(1100.0)  # 8 x 11 bits x 12.5 Hz, the paper's 1.1 kbps
    wave = noise(0.5)  # 12000 samples: 6.25 frames -> 7
    with torch.no_grad():
        codes = model.encode(wave)
        assert codes.shape == (2, 8, 7) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < 2048
        assert model.encode(wave, n_q=3).equal(codes[:, :3])  # fewer levels = a prefix of the codes
        assert model.decode(codes).shape == (2, 7 * 1920)
        out = model(wave)
    assert out["wave"].shape == wave.shape and out["codes"].equal(codes)
    assert out["semantic"].shape == out["latent"].shape == (2, 7, 16) and out["n_q"] == 8
    assert out["commitment"].dim() == 0 and out["commitment"] > 0 and out["quantized_fraction"] == 1.0


def test_16khz_variant_keeps_12_5_hz_frames_and_bad_rates_say_how_to_fix(one_thread):
    model = tiny(sample_rate=16000, ratios=[8, 5, 4, 4])
    assert model.hop == 1280 and model.frame_rate == 12.5
    with torch.no_grad():
        assert model.encode(noise(0.16, 16000)).shape == (2, 4, 2)
    with pytest.raises(ConfigError, match=r"frame_rate=12\.5 must divide .* 16000 / 960 .* by a whole factor"):
        tiny(sample_rate=16000)
    with pytest.raises(ConfigError, match=r"n_q=9 is out of range; this model has 1\.\.4 codebooks"):
        tiny().encode(noise(0.08), n_q=9)
    with pytest.raises(AudioError, match=r"expected a wave of shape \(batch, time\) at 24000 Hz"):
        tiny().encode(noise(0.08)[0])


def test_streaming_in_1920_sample_pieces_equals_offline_encode_and_decode(one_thread):
    model, wave = tiny(), noise(0.8)  # 10 frames; attention context 3 frames at 25 Hz
    with torch.no_grad():
        codes, audio = model.encode(wave), model.decode(model.encode(wave))
        stream, pieces = None, []
        for piece in wave.split(1920, dim=-1):
            got, stream = model.encode_stream(piece, stream)
            pieces.append(got)
        assert torch.cat(pieces, -1).equal(codes)
        stream, parts = None, []
        for chunk in (codes[..., :1], codes[..., 1:4], codes[..., 4:]):  # 1, 3 and 6 frames
            got, stream = model.decode_stream(chunk, stream)
            parts.append(got)
    torch.testing.assert_close(torch.cat(parts, -1), audio, atol=1e-5 * audio.abs().max().item(), rtol=0)
    with pytest.raises(AudioError, match=r"1000 samples is not a multiple of the hop \(1920 samples at 24000 Hz\)"):
        model.encode_stream(wave[:, :1000])


def _hf_tiny(tmp_path):
    torch.manual_seed(0)
    hf = MimiModel(MimiConfig(**HF_TINY)).eval()
    with torch.no_grad():  # transformers initialises empty codebooks; give them distinct vectors
        for name, buf in hf.named_buffers():
            if name.endswith("embed_sum"):
                buf.normal_()
            elif name.endswith("cluster_usage"):
                buf.uniform_(0.5, 2.0)
    hf.save_pretrained(tmp_path / "hf")
    return hf


def _hf_codes_audio(hf: MimiModel, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    codes = hf.encode(wave[:, None]).audio_codes
    return codes, hf.decode(codes).audio_values[:, 0]


def test_transformers_mimi_weights_load_give_its_codes_and_audio_and_save_back(tmp_path, one_thread):
    hf, wave = _hf_tiny(tmp_path), noise(0.64)
    ours = Mimi.from_pretrained(tmp_path / "hf").eval()
    assert ours.n_q == 4 and ours.hop == 1920
    with torch.no_grad():
        ref_codes, ref_audio = _hf_codes_audio(hf, wave)
        torch.testing.assert_close(ours.encode_latent(wave), hf.encoder(wave[:, None]).latents, atol=1e-5, rtol=1e-5)
        assert ours.encode(wave).equal(ref_codes)
        torch.testing.assert_close(ours.decode(ref_codes), ref_audio, atol=1e-5, rtol=1e-5)
        ours.save_pretrained(tmp_path / "ours")
        back = MimiModel.from_pretrained(tmp_path / "ours").eval()
        codes, audio = _hf_codes_audio(back, wave)
    assert codes.equal(ref_codes)
    torch.testing.assert_close(audio, ref_audio, atol=1e-5, rtol=1e-5)


def test_weight_norm_and_fewer_codebooks_load_the_same_model_and_save_plain_weights(tmp_path, one_thread):
    hf, wave = _hf_tiny(tmp_path), noise(0.32)
    normed = Mimi.from_pretrained(tmp_path / "hf", n_q=2, weight_norm=True).eval()
    assert any("parametrizations" in k for k in normed.state_dict())
    with torch.no_grad():
        ref_codes, _ = _hf_codes_audio(hf, wave)
        assert normed.encode(wave).equal(ref_codes[:, :2])
        normed.save_pretrained(tmp_path / "normed")
        back = MimiModel.from_pretrained(tmp_path / "normed").eval()
        assert back.config.num_quantizers == 2
        torch.testing.assert_close(back.decode(ref_codes[:, :2]).audio_values[:, 0], normed.decode(ref_codes[:, :2]),
                                   atol=1e-5, rtol=1e-5)


def test_missing_weights_are_a_checkpoint_error_that_says_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match=r"cannot load pretrained weights .*nowhere.*huggingface-cli download"):
        Mimi.from_pretrained(tmp_path / "nowhere")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))  # offline, nothing cached
    with pytest.raises(CheckpointError, match=r"'kyutai/mimi' .*offline mode is HF_HUB_OFFLINE=1"):
        Mimi.from_pretrained("kyutai/mimi")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "encodec"}')
    (tmp_path / "other" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"holds a 'encodec' model, not Mimi"):
        Mimi.from_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text('{"model_type": "mimi"}')
    with pytest.raises(CheckpointError, match=r"cannot read .*other.*; re-download it"):
        Mimi.from_pretrained(tmp_path / "other")  # an empty, damaged weights file


def test_kmeans_initialisation_finds_the_clusters_of_the_first_batch():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    x = (centres[:, None] + 0.1 * torch.randn(4, 50, 2)).reshape(-1, 2)
    book = EuclideanCodebook(4, 2, kmeans_iters=10)
    assert book.initialized.item() == 0
    book.init_kmeans(x)
    assert book.initialized.item() == 1
    order = torch.cdist(centres, book.embed).argmin(dim=1)
    assert sorted(order.tolist()) == [0, 1, 2, 3]  # one code per cluster
    torch.testing.assert_close(book.embed[order], centres, atol=0.05, rtol=0)
    assert book.cluster_usage.tolist() == [50.0] * 4


def test_ema_update_moves_codes_by_one_percent_and_dead_codes_take_batch_vectors():
    book = EuclideanCodebook(4, 2)
    book.cluster_usage.fill_(10.0)
    book.embed_sum.copy_(torch.tensor([[10.0, 0], [0, 10.0], [-10.0, 0], [0, -10.0]]))
    x = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    book.update(x, book.encode(x))
    expect_usage = torch.tensor([10 * 0.99 + 2 * 0.01, 10 * 0.99 + 0.01, 9.9, 9.9])
    torch.testing.assert_close(book.cluster_usage, expect_usage)
    torch.testing.assert_close(book.embed_sum[0], torch.tensor([9.9 + 4 * 0.01, 0.0]))
    book.cluster_usage[2] = 0.2  # under 0.1 x the uniform usage (~7.5 / 4): dead
    assert book.replace_dead(x) == 1
    uniform = (expect_usage.sum() - 9.9 + 0.2) / 4
    assert book.cluster_usage[2].item() == pytest.approx(uniform.item())
    assert any(torch.allclose(book.embed[2], row) for row in x)  # a vector of the batch
    assert book.replace_dead(x) == 0


def test_quantizer_dropout_draws_1_to_7_acoustic_levels_uniformly_and_half_the_sequences_quantised():
    model = tiny(n_q=8).train()
    torch.manual_seed(0)
    draws = torch.tensor([model._draw_n_q(torch.device("cpu")) for _ in range(2800)])
    counts = torch.bincount(draws, minlength=9)
    assert counts[:2].sum() == 0 and counts.sum() == 2800  # always the semantic level + 1..7 acoustic
    sd = math.sqrt(2800 * (1 / 7) * (6 / 7))
    assert all(abs(c - 400) < 4.5 * sd for c in counts[2:].tolist()), counts
    keep = model._draw_keep(20000, torch.device("cpu"))
    assert abs(keep.float().sum().item() - 10000) < 4.5 * math.sqrt(20000 * 0.25)
    assert model.eval()._draw_keep(64, torch.device("cpu")).all()


def test_training_forward_quantises_per_sequence_and_passes_gradients_straight_through(one_thread):
    model, wave = tiny(quantize_rate=0.0).train(), noise(0.32)
    out = model(wave)
    assert out["quantized_fraction"] == 0.0 and 2 <= out["n_q"] <= 4 and out["codes"].shape[1] == out["n_q"]
    assert all(book.initialized.item() == 1 for name, book in model.named_modules()
               if name.endswith(f"layers.{out['n_q'] - 2}.codebook"))  # k-means ran on the levels used
    q = model.quantizer
    with torch.no_grad():  # no sequence quantised: the decoder heard the latent through both projections only
        latent = model.encode_latent(wave)
        passed = sum(rvq.output_proj(rvq.input_proj(latent)) for rvq in (
            q.semantic_residual_vector_quantizer, q.acoustic_residual_vector_quantizer))
        unquantised = model.decode_latent(passed)[:, :wave.shape[-1]]
    torch.testing.assert_close(out["wave"], unquantised, atol=1e-6, rtol=0)
    model.quantize_rate = 1.0
    out = model(wave, n_q=4)
    assert out["quantized_fraction"] == 1.0 and out["codes"].shape == (2, 4, 4)
    out["wave"].square().mean().backward()  # no commitment term: only the straight-through path
    grad = model.encoder.layers[0].conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # through the quantiser to the encoder
