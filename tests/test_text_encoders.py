"""Text encoders: one contract (ids (B, L), lengths -> features (B, L', dim), lengths), padding-invariant."""
from __future__ import annotations

import pytest
import torch

from restorekit.errors import DataError
from restorekit.models import MODELS
from restorekit.models.text import length_mask

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
