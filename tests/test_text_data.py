"""Text in the data: eSpeak NG phonemes, the 178-symbol table, transcripts, text in items and batches."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from restorekit.datasets.collate import collate
from restorekit.datasets.degraded import DegradedSpeech
from restorekit.datasets.demo import SPLITS, VERSION, demo_speech, utterances
from restorekit.datasets.manifest import write_metadata
from restorekit.datasets.paired import PairedFolders
from restorekit.datasets.text import read_transcript_csv, transcript_lookup
from restorekit.errors import ConfigError, DataError
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


# --- transcripts in the real corpus layouts ---------------------------------------------------
def _wav(path: Path, seconds: float = 0.25, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(int(sr * seconds)) * 0.05)).astype(np.float32), sr)


def _libritts_r(root: Path) -> dict[str, str]:
    texts = {"84_121123_000007_000001": "Hello world.", "84_121123_000008_000000": "The cat sat.",
             "84_121123_000009_000000": "This one failed restoration."}
    for stem, text in texts.items():
        _wav(root / "84" / "121123" / f"{stem}.wav")
        (root / "84" / "121123" / f"{stem}.normalized.txt").write_text(text + "\n")
        (root / "84" / "121123" / f"{stem}.original.txt").write_text(text.upper())
    return texts


def test_libritts_r_text_and_phonemes_honour_the_failed_lists(tmp_path):
    texts = _libritts_r(tmp_path / "train-clean-100")
    failed = tmp_path / "train-clean-100_bad_sample_list.txt"
    failed.write_text("./train-clean-100/84/121123/84_121123_000009_000000.wav\n")
    ds = DegradedSpeech(roots=[str(tmp_path / "train-clean-100")], sample_rate=16000, segment_seconds=None,
                        transcripts={"source": "libritts_r", "failed_lists": [str(failed)]}, phonemes=True)
    items = {ds[i]["name"].rsplit("/", 1)[-1]: ds[i] for i in range(len(ds))}
    assert sorted(items) == ["84_121123_000007_000001", "84_121123_000008_000000"]
    for stem, item in items.items():
        assert item["text"] == texts[stem]
        assert item["phonemes"].tolist() == phoneme_ids(phonemize([texts[stem]])[0])
    assert ids_to_phonemes(items["84_121123_000007_000001"]["phonemes"].tolist()) == "həlˈoʊ wˈɜːld."
    batch = collate([items["84_121123_000007_000001"], items["84_121123_000008_000000"]])
    assert batch["text"] == ["Hello world.", "The cat sat."]
    assert batch["text_lengths"].tolist() == [14, 13] and batch["phonemes"].shape == (2, 14)
    plain = DegradedSpeech(roots=[str(tmp_path / "train-clean-100")], sample_rate=16000, segment_seconds=None)
    assert len(plain) == 3 and "text" not in plain[0]  # defaults unchanged: no text, nothing left out


def test_a_file_without_transcript_is_an_error_naming_it_or_skipped(tmp_path):
    root = tmp_path / "dev-clean"
    _libritts_r(root)
    _wav(root / "84" / "121123" / "84_121123_000010_000000.wav")
    with pytest.raises(DataError, match=r"degraded_speech: no libritts_r transcript for 1 file\(s\) under .*dev-clean: "
                                        r"84/121123/84_121123_000010_000000.wav; add their transcripts, or set "
                                        r"missing_text: skip"):
        DegradedSpeech(roots=[str(root)], sample_rate=16000, transcripts="libritts_r")
    ds = DegradedSpeech(roots=[str(root)], sample_rate=16000, transcripts="libritts_r", missing_text="skip")
    assert len(ds) == 3 and all(ds[i]["text"] for i in range(3))


@pytest.mark.parametrize("root_name", ["wav48_silence_trimmed", "."])
def test_vctk_transcripts_from_txt_beside_the_audio(tmp_path, root_name):
    _wav(tmp_path / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac")
    _wav(tmp_path / "wav48_silence_trimmed" / "p225" / "p225_001_mic2.flac")
    (tmp_path / "txt" / "p225").mkdir(parents=True)
    (tmp_path / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.\n")
    lookup = transcript_lookup("vctk", tmp_path / root_name)
    prefix = "" if root_name != "." else "wav48_silence_trimmed/"
    assert lookup.text(prefix + "p225/p225_001_mic2.flac") == "Please call Stella."
    assert lookup.text(prefix + "p225/p225_002_mic1.flac") is None
    ds = DegradedSpeech(roots=[str(tmp_path / "wav48_silence_trimmed")], sample_rate=16000, transcripts="vctk")
    assert [ds[i]["text"] for i in range(len(ds))] == ["Please call Stella."] * 2
    with pytest.raises(DataError, match=r"transcripts vctk: no txt folder in .*p225 or beside it"):
        transcript_lookup("vctk", tmp_path / "wav48_silence_trimmed" / "p225")


def _pairs(tmp_path: Path) -> tuple[Path, Path]:
    for side in ("noisy", "clean"):
        _wav(tmp_path / side / "p232_001.wav")
        _wav(tmp_path / side / "sub" / "p232_002.wav")
    return tmp_path / "noisy", tmp_path / "clean"


def test_paired_folders_take_text_from_a_name_text_csv(tmp_path):
    noisy, clean = _pairs(tmp_path)
    table = tmp_path / "text.csv"
    table.write_text('name,text\np232_001.wav,"Yes, we can."\nsub/p232_002,Hello world.\n')
    ds = PairedFolders(str(noisy), str(clean), 16000, transcripts=f"csv:{table}", phonemes=True)
    assert [ds[i]["text"] for i in range(2)] == ["Yes, we can.", "Hello world."]
    assert ids_to_phonemes(ds[1]["phonemes"].tolist()) == "həlˈoʊ wˈɜːld."
    table.write_text("p232_001,Yes.\n")  # by stem, no header; the other file has none
    with pytest.raises(DataError, match=r"paired_folders: no csv transcript for 1 file\(s\) under .*clean: "
                                        r"sub/p232_002.wav"):
        PairedFolders(str(noisy), str(clean), 16000, transcripts={"source": "csv", "path": str(table)})


@pytest.mark.parametrize("body, message", [
    ("name,text\na.wav,one\nb.wav,two,three\n", r"text.csv line 3: expected 2 fields name,text with both set, got 3"),
    ("a.wav,one\nb.wav,\n", r"text.csv line 2: expected 2 fields name,text with both set, got 2"),
    ("a.wav,one\nb,two\nsub/../a,three\na,again\n", r"text.csv line 4: 'a' is listed again \(first on line 1\)"),
])
def test_transcript_csv_errors_name_the_line(tmp_path, body, message):
    (tmp_path / "text.csv").write_text(body)
    with pytest.raises(DataError, match=message):
        read_transcript_csv(tmp_path / "text.csv")


def test_transcript_arguments_are_checked(tmp_path):
    _wav(tmp_path / "a.wav")
    with pytest.raises(ConfigError, match=r"degraded_speech.phonemes: true needs transcripts"):
        DegradedSpeech(roots=[str(tmp_path)], sample_rate=16000, phonemes=True)
    with pytest.raises(ConfigError, match=r"degraded_speech.transcripts: source must be one of libritts_r, vctk, "
                                          r"demo, csv \(got 'librispeech'\)"):
        DegradedSpeech(roots=[str(tmp_path)], sample_rate=16000, transcripts="librispeech")
    with pytest.raises(ConfigError, match=r"source csv needs path"):
        transcript_lookup({"source": "csv"}, tmp_path)
    with pytest.raises(ConfigError, match=r"missing_text must be one of error, skip"):
        DegradedSpeech(roots=[str(tmp_path)], sample_rate=16000, transcripts="demo", missing_text="drop")
    with pytest.raises(DataError, match=r"failed_lists: .*nope.txt does not exist"):
        transcript_lookup({"source": "libritts_r", "failed_lists": [str(tmp_path / "nope.txt")]}, tmp_path)


def test_demo_speech_items_carry_their_sentence(tmp_path):
    # A stand-in cache in the demo layout (tones, not speech): the text lookup is what is tested.
    corpus = tmp_path / VERSION
    for split, speaker, stem, _ in utterances():
        if speaker in ("spk1", "spk5"):
            _wav(corpus / split / speaker / f"{stem}.wav", seconds=0.1)
    for split in SPLITS:
        write_metadata(corpus / split, workers=1)
    ds = demo_speech(16000, split="train", segment_seconds=None, cache_dir=str(tmp_path), phonemes=True)
    sentences = {stem: text for _, _, stem, text in utterances()}
    assert len(ds) == 8 and sentences["spk1_001"] == "The kettle was still warm when we came home."
    for i in range(len(ds)):
        item = ds[i]
        assert item["text"] == sentences[item["name"].rsplit("/", 1)[-1]]
        assert item["phonemes"].tolist() == phoneme_ids(phonemize([item["text"]])[0])
    assert "text" not in demo_speech(16000, split="valid", segment_seconds=None, cache_dir=str(tmp_path))[0]


def test_libritts_r_recipe_fetches_the_failed_lists_for_transcripts(tmp_path):
    import io
    import tarfile

    from restorekit.datasets.recipes import LIBRITTS_R, prepare

    body = b"./train-clean-100/84/121123/84_121123_000009_000000.wav\n"
    (tmp_path / "archives").mkdir()
    with tarfile.open(tmp_path / "archives" / "libritts_r_failed_speech_restoration_examples.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("libritts_r_failed_speech_restoration_examples/train-clean-100_bad_sample_list.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    assert prepare(LIBRITTS_R, tmp_path, ["failed_lists"], offline=True) == []  # nothing to index
    listed = tmp_path / "libritts_r_failed_speech_restoration_examples" / "train-clean-100_bad_sample_list.txt"
    lookup = transcript_lookup({"source": "libritts_r", "failed_lists": [str(listed)]}, tmp_path)
    assert lookup.excluded(["84/121123/84_121123_000009_000000.wav", "84/121123/84_121123_000007_000001.wav"]).tolist() \
        == [True, False]
