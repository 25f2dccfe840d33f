"""Text in the data: eSpeak NG phonemes, the 178-symbol table, transcripts, text in items and batches."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from restorekit.datasets.collate import collate
from restorekit.errors import DataError
from restorekit.text import PHONEME_SYMBOLS, SYMBOL_TO_ID, ids_to_phonemes, phoneme_ids, phonemize


def test_phoneme_table_is_pl_berts():
    assert len(PHONEME_SYMBOLS) == 178 and PHONEME_SYMBOLS[0] == "$"
    # PL-BERT's checkpoint rows follow this order: spot-check ids across the sections.
    assert (SYMBOL_TO_ID[" "], SYMBOL_TO_ID["A"], SYMBOL_TO_ID["a"], SYMBOL_TO_ID["ɑ"]) == (16, 17, 43, 69)
    assert (SYMBOL_TO_ID["ˈ"], SYMBOL_TO_ID["ː"], SYMBOL_TO_ID["ᵻ"]) == (156, 158, 177)


def test_phonemize_gives_espeak_ipa_with_stress_and_punctuation():
    assert phonemize(["hello world", "Bring two pencils."]) == ["həlˈoʊ wˈɜːld", "bɹˈɪŋ tˈuː pˈɛnsəlz."]
    assert phonemize(["Wait, really?"]) == ["wˈeɪt, ɹˈiəli?"]  # clause break kept as the comma
    assert phonemize(["hello"], language="de") == ["hˈɛloː"]


def test_phoneme_ids_round_trip_and_unknown_symbols_are_skipped_and_counted():
    ipa = phonemize(["The kettle was still warm when we came home."])[0]
    ids = phoneme_ids(ipa)
    assert ids[:4] == [SYMBOL_TO_ID["ð"], SYMBOL_TO_ID["ə"], SYMBOL_TO_ID[" "], SYMBOL_TO_ID["k"]]
    assert ids_to_phonemes(ids) == ipa
    skipped: Counter = Counter()
    with pytest.warns(UserWarning, match=r"symbol '͡' \(U\+0361\) is not in PHONEME_SYMBOLS; skipped"):
        assert phoneme_ids("t͡ʃa͡", skipped) == [SYMBOL_TO_ID["t"], SYMBOL_TO_ID["ʃ"], SYMBOL_TO_ID["a"]]
    assert skipped == Counter({"͡": 2})


def _item(name: str, n: int, **extra) -> dict:
    return {"degraded": torch.zeros(n), "clean": torch.zeros(n), "sr": 16000, "name": name, **extra}


def test_collate_pads_phonemes_with_zero_and_gives_text_lengths():
    batch = collate([_item("a", 10, text="hi", phonemes=torch.tensor([5, 6, 7])),
                     _item("b", 12, text="yo", phonemes=torch.tensor([8]))])
    assert batch["text"] == ["hi", "yo"]
    assert batch["phonemes"].dtype == torch.long and batch["phonemes"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["text_lengths"].tolist() == [3, 1] and batch["text_lengths"].dtype == torch.long
    plain = collate([_item("a", 10), _item("b", 12)])
    assert "phonemes" not in plain and "text_lengths" not in plain and "text" not in plain
    with pytest.raises(DataError, match=r"cannot batch items with and without phonemes \(with: \['a'\]\)"):
        collate([_item("a", 10, phonemes=torch.tensor([5])), _item("b", 12)])
