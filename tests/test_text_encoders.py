"""Text encoders: one contract (ids (B, L), lengths -> features (B, L', dim), lengths), padding-invariant."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from restorekit.errors import CheckpointError, DataError
from restorekit.models import MODELS
from restorekit.models.text import length_mask
from restorekit.text import phoneme_ids

TINY_ALBERT = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32,
               "embedding_size": 8}
TINY_ROBERTA = {"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 32}
ENCODERS = {
    "phoneme_embedding": {"dim": 16, "num_layers": 2},
    "plbert": TINY_ALBERT,
    "xphonebert": {"pretrained": None, "config": TINY_ROBERTA},
}
# "həlˈoʊ wˈɜːld" and "ðə kˈæt" as table ids
ROWS = [[50, 83, 54, 156, 57, 135, 16, 65, 156, 87, 158, 54, 46], [114, 83, 16, 53, 156, 72, 62]]


def _build(name: str, **over) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.build({"name": name, "args": {**ENCODERS[name], **over}}, where=f"models.{name}").eval()


def _batch(pad_to: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(ROWS), pad_to, dtype=torch.long)
    for row, r in zip(ids, ROWS):
        row[: len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in ROWS])


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_padding_does_not_change_valid_outputs(name, one_thread):
    model = _build(name)
    with torch.no_grad():
        feats, lengths = model(*_batch(len(ROWS[0])))
        wide, wide_lengths = model(*_batch(len(ROWS[0]) + 9))
        alone, alone_len = model(torch.tensor([ROWS[1]]), torch.tensor([len(ROWS[1])]))
    assert feats.shape[-1] == model.dim == 16 and torch.equal(lengths, wide_lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(wide[b, :n], feats[b, :n], atol=1e-5, rtol=1e-5)
    n = int(alone_len[0])
    assert n == int(lengths[1])
    torch.testing.assert_close(feats[1, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
    # the second row's valid features depend on its phonemes (the mask hides pads, not content)
    other = _batch(len(ROWS[0]))[0]
    other[1, 2] = 17
    with torch.no_grad():
        assert not torch.allclose(model(other, lengths.clone())[0][1, :n], feats[1, :n])


def test_phoneme_embedding_keeps_lengths_zeroes_padding_and_trains():
    model = _build("phoneme_embedding").train()
    ids, lengths = _batch(15)
    feats, out_lengths = model(ids, lengths)
    assert feats.shape == (2, 15, 16) and torch.equal(out_lengths, lengths)
    assert torch.all(feats[~length_mask(lengths, 15)] == 0)
    feats.pow(2).mean().backward()
    assert model.embed.weight.grad[ROWS[1][0]].abs().sum() > 0 and model.embed.weight.grad[0].abs().sum() == 0


def test_too_long_sequence_is_a_clear_error():
    model = _build("plbert", max_position_embeddings=8)
    with pytest.raises(DataError, match=r"plbert: a phoneme sequence of 13 symbols is longer than this "
                                        r"encoder's 8 positions; leave out long utterances"):
        model(*_batch(13))


# --- pretrained: PL-BERT's released layout, XPhoneBERT through save_pretrained ------------------
def _plbert_release(folder: Path, albert: torch.nn.Module, step: int) -> None:
    """Write ``albert`` as PL-BERT's training script saves it: DataParallel(MultiTaskModel) keys."""
    net = {f"module.encoder.{k}": v for k, v in albert.state_dict().items()}
    net["module.mask_predictor.weight"] = torch.randn(178, 16)  # pre-training heads: not the encoder
    net["module.word_predictor.weight"] = torch.randn(10, 16)
    torch.save({"net": net, "step": step, "optimizer": {"state": {}, "param_groups": []}}, folder / f"step_{step}.t7")


def test_plbert_loads_the_released_checkpoint_layout(tmp_path, one_thread):
    from transformers import AlbertConfig, AlbertModel

    params = {**TINY_ALBERT, "vocab_size": 178, "max_position_embeddings": 32, "dropout": 0.1}
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"log_dir": "Checkpoint", "model_params": params}))
    torch.manual_seed(1)
    albert = AlbertModel(AlbertConfig(**{k: v for k, v in params.items() if k != "dropout"})).eval()
    _plbert_release(tmp_path, AlbertModel(albert.config), 900)  # an older, different one
    _plbert_release(tmp_path, albert, 1000)  # the newest step is loaded (not the longest name's)
    _plbert_release(tmp_path, AlbertModel(albert.config), 200)
    model = MODELS.build({"name": "plbert", "args": {"pretrained": str(tmp_path)}}, where="models.text_encoder")
    ids, lengths = _batch(13)
    with torch.no_grad():
        feats, out_lengths = model.train()(ids, lengths)  # frozen: stays in eval mode (no dropout)
        expected = albert(input_ids=ids, attention_mask=length_mask(lengths, 13).long()).last_hidden_state
    torch.testing.assert_close(feats, expected)
    assert torch.equal(out_lengths, lengths) and model.dim == 16 and model.max_length == 32
    assert not model.model.training and not any(p.requires_grad for p in model.parameters())


def test_plbert_missing_or_broken_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"plbert: cannot get 'yl4579/no-such-plbert' .*give a local folder "
                                              r"holding config.yml and step_\*.t7"):
        MODELS.build({"name": "plbert", "args": {"pretrained": "yl4579/no-such-plbert"}}, where="m")
    with pytest.raises(CheckpointError, match=r"plbert: .*nope is not a folder"):
        MODELS.build({"name": "plbert", "args": {"pretrained": str(tmp_path / "nope")}}, where="m")
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"model_params": {**TINY_ALBERT, "vocab_size": 178}}))
    with pytest.raises(CheckpointError, match=r"plbert: no step_\*.t7 checkpoint in"):
        MODELS.build({"name": "plbert", "args": {"pretrained": str(tmp_path)}}, where="m")
    torch.save({"net": {"module.encoder.embeddings.word_embeddings.weight": torch.zeros(178, 8)}}, tmp_path / "step_1.t7")
    with pytest.raises(CheckpointError, match=r"plbert: .*step_1.t7 does not fit the ALBERT of its config.yml "
                                              r"\(Error\(s\) in loading state_dict.*Missing key"):
        MODELS.build({"name": "plbert", "args": {"pretrained": str(tmp_path)}}, where="m")


XPB_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", "▁", "h", "ə", "l", "ˈo", "ʊ", "w", "ˈɜ", "ː", "d", "ð", "k", "ˈæ", "t"]


def _xphonebert_folder(folder: Path) -> torch.nn.Module:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    vocab = {t: i for i, t in enumerate(XPB_VOCAB)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(2)
    roberta = RobertaModel(RobertaConfig(vocab_size=len(vocab), max_position_embeddings=40, **TINY_ROBERTA),
                           add_pooling_layer=False).eval()
    roberta.save_pretrained(folder)
    return roberta


def test_xphonebert_maps_phonemes_to_its_tokens_and_matches_the_saved_model(tmp_path, one_thread):
    roberta = _xphonebert_folder(tmp_path)
    model = MODELS.build({"name": "xphonebert", "args": {"pretrained": str(tmp_path)}}, where="models.text_encoder")
    v = {t: i for i, t in enumerate(XPB_VOCAB)}
    # "həlˈoʊ wˈɜːld": stress joins the next phone, words split by ▁, <s> ... </s> around
    assert model.tokens(ROWS[0]) == [0, v["h"], v["ə"], v["l"], v["ˈo"], v["ʊ"], v["▁"], v["w"], v["ˈɜ"], v["ː"],
                                     v["l"], v["d"], 2]
    assert model.tokens(phoneme_ids("ˈiː ɹ")) == [0, 3, v["ː"], v["▁"], 3, 2]  # bare stress dropped, unknowns <unk>
    assert model.unknown == {"i": 1, "ɹ": 1}
    with torch.no_grad():
        feats, lengths = model(*_batch(15))
        expected = roberta(input_ids=torch.tensor([model.tokens(ROWS[1])])).last_hidden_state
    assert lengths.tolist() == [13, 8] and feats.shape == (2, 13, 16)
    torch.testing.assert_close(feats[1, :8], expected[0], atol=1e-5, rtol=1e-5)


def test_xphonebert_offline_without_the_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"xphonebert: cannot load '.*empty' .*give a local folder holding "
                                              r"the model and its tokenizer"):
        MODELS.build({"name": "xphonebert", "args": {"pretrained": str(tmp_path / "empty")}}, where="m")
