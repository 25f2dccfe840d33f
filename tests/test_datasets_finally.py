"""FINALLY data: WavLM context rows (degraded whole, segment cut on a hop grid), 48 kHz items, DAPS, VCTK-DEMAND."""
from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from restorekit.audio import resample
from restorekit.datasets import DATASETS, collate
from restorekit.datasets.recipes import DAPS, VOICEBANK_DEMAND, main
from restorekit.errors import ConfigError, DataError

SR = 16000
SEG, CTX = 0.512, 4.096  # FINALLY: 8192 and 65536 samples at 16 kHz
GAIN = {"name": "chain", "args": {"ops": [{"name": "gain", "p": 1.0, "args": {"gain_db": [-12.0, -1.0]}}]}}


def noise_wav(path, sr=SR, seconds=1.0, seed=0):
    """Seeded noise: every sample differs, so a crop at the wrong position cannot match by chance."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = 0.3 * np.random.default_rng(seed).uniform(-1, 1, int(round(sr * seconds)))
    sf.write(path, wave, sr)
    return path


def file_samples(path):
    return sf.read(str(path), dtype="float32")[0]


@pytest.fixture
def corpus(tmp_path):
    """16 kHz: a file longer than the row, one shorter than the row, one shorter than a segment."""
    root = tmp_path / "speech"
    noise_wav(root / "spk1" / "spk1_long.wav", seconds=5.0, seed=1)
    noise_wav(root / "spk1" / "spk1_mid.wav", seconds=3.0, seed=2)
    noise_wav(root / "spk2" / "spk2_short.wav", seconds=0.3, seed=3)
    return root


def build(name, sample_rate=SR, **args):
    return DATASETS.build({"name": name, "args": args}, where="data.train", sample_rate=sample_rate)


def context_set(corpus, **args):
    return build("degraded_speech", roots=[str(corpus)], segment_seconds=SEG, context_seconds=CTX, **args)


def by_name(ds):
    return {ds[i]["name"]: i for i in range(len(ds))}


def check_context_item(item, seg_len, hop, max_row):
    """The segment is the row's crop at context_offset, on the hop grid, inside the row."""
    o, n = item["context_offset"], seg_len
    assert isinstance(o, int) and o % hop == 0 and 0 <= o <= len(item["context"]) - n
    assert item["clean"].shape == item["degraded"].shape == (n,)
    assert item["context"].dtype == torch.float32 and item["context"].ndim == 1
    assert n <= len(item["context"]) <= max_row
    assert torch.equal(item["degraded"], item["context"][o:o + n])


def test_validation_context_is_the_centred_row_and_the_segment_its_centred_crop(corpus):
    ds = context_set(corpus, validation=True)
    items = {ds[i]["name"]: ds[i] for i in range(len(ds))}
    long, mid, short = items["spk1/spk1_long"], items["spk1/spk1_mid"], items["spk2/spk2_short"]
    assert [len(x["context"]) for x in (long, mid, short)] == [65536, 48000, 8192]
    # Row centred in the 5 s file: starts at (5 - 4.096) / 2 s = 7232 samples; segment at grid slot 224 // 2.
    assert long["context_offset"] == 112 * 256
    wave = file_samples(corpus / "spk1" / "spk1_long.wav")
    np.testing.assert_array_equal(long["context"].numpy(), wave[7232:7232 + 65536])
    np.testing.assert_array_equal(long["clean"].numpy(), wave[7232 + 28672:7232 + 28672 + 8192])
    assert mid["context_offset"] == (39808 // 256 // 2) * 256  # the whole 3 s file is the row
    np.testing.assert_array_equal(mid["context"].numpy(), file_samples(corpus / "spk1" / "spk1_mid.wav"))
    assert short["context_offset"] == 0 and short["context"][4800:].abs().max() == 0  # padded to a segment
    for item in (long, mid, short):
        check_context_item(item, 8192, 256, 65536)
        assert torch.equal(item["clean"], item["degraded"]) and item["degradations"] == []
    before = long["context"].clone()
    long["degraded"].mul_(0)  # a trainer editing the segment in place leaves the context alone
    assert torch.equal(long["context"], before)


def test_the_whole_row_is_degraded_and_the_segment_is_its_crop(corpus):
    ds = context_set(corpus, validation=True, degradations=GAIN)
    item = ds[by_name(ds)["spk1/spk1_long"]]
    check_context_item(item, 8192, 256, 65536)
    (gain,) = item["degradations"]
    g = np.float32(10 ** (gain["gain_db"] / 20))
    clean_row = file_samples(corpus / "spk1" / "spk1_long.wav")[7232:7232 + 65536]
    # One gain over the whole row, not only the segment: the degradation runs through the context.
    np.testing.assert_allclose(item["context"].numpy(), clean_row * g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(item["degraded"].numpy(), item["clean"].numpy() * g, rtol=1e-6, atol=1e-7)
    assert not torch.equal(item["clean"], item["degraded"])


def test_training_items_are_reproducible_per_seed_epoch_and_index_and_vary_by_epoch(corpus):
    a, b = context_set(corpus, degradations=GAIN, seed=7), context_set(corpus, degradations=GAIN, seed=7)
    i = by_name(a)["spk1/spk1_long"]
    first = a[i]
    b.set_epoch(3)
    b.set_epoch(0)  # a fresh or resumed dataset at the same epoch gives the same item
    again = b[i]
    for key in ("clean", "degraded", "context"):
        assert torch.equal(first[key], again[key])
    assert first["context_offset"] == again["context_offset"] and first["degradations"] == again["degradations"]
    offsets, rows = set(), set()
    for epoch in range(8):
        a.set_epoch(epoch)
        item = a[i]
        check_context_item(item, 8192, 256, 65536)
        offsets.add(item["context_offset"])
        rows.add(float(item["context"][0]))
    assert len(offsets) >= 6 and len(rows) >= 6  # new row and new crop each epoch


def test_hop_null_allows_any_offset_and_a_bad_hop_is_a_config_error(corpus):
    ds = context_set(corpus, context_hop_seconds=None)
    i = by_name(ds)["spk1/spk1_long"]
    offsets = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        offsets.append(ds[i]["context_offset"])
    assert any(o % 256 for o in offsets)
    with pytest.raises(ConfigError, match=r"degraded_speech.context_hop_seconds=0.016 must be > 0 and a whole "
                                          r"number of samples at sample_rate=22050 Hz \(it is 352.8\); use e.g."):
        context_set(corpus, sample_rate=22050)


def test_context_shorter_than_the_segment_or_without_a_segment_is_a_config_error(corpus):
    with pytest.raises(ConfigError, match=r"degraded_speech.context_seconds \(0.256 s\) must be >= segment_seconds "
                                          r"\(0.512 s\): the segment is cropped from the context row; raise"):
        build("degraded_speech", roots=[str(corpus)], segment_seconds=SEG, context_seconds=0.256)
    with pytest.raises(ConfigError, match=r"degraded_speech.context_seconds=4.096 needs segment_seconds"):
        build("degraded_speech", roots=[str(corpus)], segment_seconds=None, context_seconds=CTX)


def test_collate_pads_context_and_stacks_offsets(corpus):
    ds = context_set(corpus, validation=True, degradations=GAIN)
    items = [ds[i] for i in range(len(ds))]
    batch = collate(items)
    assert batch["context"].shape == (3, 65536) and batch["clean"].shape == batch["degraded"].shape == (3, 8192)
    assert batch["context_lengths"].tolist() == [len(it["context"]) for it in items]
    assert batch["context_offset"].dtype == batch["context_lengths"].dtype == torch.long
    assert batch["context_offset"].tolist() == [it["context_offset"] for it in items]
    for row, it in enumerate(items):
        n, o = len(it["context"]), it["context_offset"]
        assert torch.equal(batch["context"][row, :n], it["context"]) and batch["context"][row, n:].abs().sum() == 0
        assert torch.equal(batch["degraded"][row], batch["context"][row, o:o + 8192])
    with pytest.raises(DataError, match=r"cannot batch items with and without context .*same context_seconds"):
        collate([items[0], {k: v for k, v in items[1].items() if k not in ("context", "context_offset")}])


def test_without_context_items_and_batches_are_unchanged(corpus):
    ds = build("degraded_speech", roots=[str(corpus)], segment_seconds=SEG)
    item = ds[0]
    assert sorted(item) == ["clean", "degradations", "degraded", "name", "sr"]
    assert sorted(collate([item, ds[1]])) == ["clean", "degradations", "degraded", "lengths", "names", "sr"]


def test_webdataset_shards_give_the_same_context_items_as_degraded_speech(corpus, tmp_path):
    from restorekit.datasets.shards import write_shards

    write_shards(corpus, tmp_path / "shards")
    urls = [str(p) for p in sorted((tmp_path / "shards").glob("*.tar"))]
    streamed = list(build("webdataset_shards", urls=urls, segment_seconds=SEG, context_seconds=CTX, validation=True))
    indexed = context_set(corpus, validation=True)
    expected = {it["name"]: it for it in (indexed[i] for i in range(len(indexed)))}
    assert sorted(it["name"] for it in streamed) == sorted(expected)
    for item in streamed:
        check_context_item(item, 8192, 256, 65536)
        want = expected[item["name"]]
        assert item["context_offset"] == want["context_offset"] and torch.equal(item["context"], want["context"])
    train = build("webdataset_shards", urls=urls, segment_seconds=SEG, context_seconds=CTX, degradations=GAIN)
    for item in train:
        check_context_item(item, 8192, 256, 65536)
        assert [d["name"] for d in item["degradations"]] == ["gain"]


def test_stage3_items_at_48_khz_with_context(tmp_path):
    root = tmp_path / "daps_like"
    noise_wav(root / "f1" / "f1_script1_clean.wav", sr=44100, seconds=6.0, seed=4)  # DAPS is 44.1 kHz
    ds = build("degraded_speech", sample_rate=48000, roots=[str(root)], segment_seconds=SEG, context_seconds=CTX,
               degradations=GAIN)
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["sr"] == 48000
        check_context_item(item, 24576, 768, 196608)
        assert len(item["context"]) == 196608
        # The model resamples its input to 16 kHz: a 24576-sample segment is 8192 samples there, and the
        # offset lands on a whole 256-sample hop of the 16 kHz row.
        assert len(resample(item["degraded"].numpy(), 48000, 16000)) == 8192
        assert (item["context_offset"] * 16000 // 48000) % 256 == 0
        assert len(resample(item["context"].numpy(), 48000, 16000)) == 65536


def test_paired_folders_context_from_the_degraded_file_same_offset_in_both(tmp_path):
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    noise_wav(clean / "p232_001.wav", sr=48000, seconds=5.0, seed=5)
    noise_wav(noisy / "p232_001.wav", sr=48000, seconds=5.0, seed=6)
    common = {"degraded_dir": str(noisy), "clean_dir": str(clean), "segment_seconds": SEG, "context_seconds": CTX}
    val = build("paired_folders", validation=True, **common)[0]
    check_context_item(val, 8192, 256, 65536)
    noisy16, clean16 = (resample(file_samples(d / "p232_001.wav"), 48000, 16000) for d in (noisy, clean))
    start = int(round((5.0 - CTX) / 2 * SR))  # the centred row
    o = val["context_offset"]
    assert o == 112 * 256
    # Resampling a 4.096 s row differs from resampling the whole file only at the row's edges.
    np.testing.assert_allclose(val["context"].numpy()[64:-64], noisy16[start + 64:start + 65536 - 64], atol=2e-3)
    np.testing.assert_allclose(val["clean"].numpy(), clean16[start + o:start + o + 8192], atol=2e-3)
    train = build("paired_folders", seed=1, **common)
    seen = set()
    for epoch in range(5):
        train.set_epoch(epoch)
        item = train[0]
        check_context_item(item, 8192, 256, 65536)
        seen.add(item["context_offset"])
    assert len(seen) >= 4
    with pytest.raises(ConfigError, match=r"paired_folders.context_seconds \(0.1 s\) must be >= segment_seconds"):
        build("paired_folders", **{**common, "context_seconds": 0.1})


def test_demo_speech_with_context(tmp_path):
    ds = build("demo_speech", split="valid", segment_seconds=SEG, context_seconds=CTX, cache_dir=str(tmp_path),
               degradations=GAIN)
    batch = collate([ds[i] for i in range(4)])
    assert batch["degraded"].shape == (4, 8192) and batch["context"].shape[0] == 4
    for row in range(4):
        o = int(batch["context_offset"][row])
        assert o % 256 == 0 and torch.equal(batch["degraded"][row], batch["context"][row, o:o + 8192])


def wav_bytes(sr, seconds, seed):
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.random.default_rng(seed).uniform(-1, 1, int(sr * seconds)), sr, format="WAV")
    return buf.getvalue()


def make_daps_archive(path):
    members = {"daps/clean/f1_script1_clean.wav": wav_bytes(44100, 1.0, 1),
               "daps/clean/m10_script5_clean.wav": wav_bytes(44100, 0.8, 2),
               "daps/clean/._f1_script1_clean.wav": b"\x00\x05\x16\x07 AppleDouble junk",
               "daps/produced/f1_script1_produced.wav": wav_bytes(44100, 1.0, 3),
               "daps/ipad_office1/f1_script1_ipad_office1.wav": wav_bytes(44100, 1.0, 4)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_daps_recipe_indexes_clean_and_produced_and_feeds_48_khz_items(tmp_path, capsys):
    md5 = make_daps_archive(tmp_path / "archives" / "daps.tar.gz")
    assert main(DAPS, ["--out-dir", str(tmp_path), "--offline", "--checksum", f"daps.tar.gz=md5:{md5}"]) == 0
    clean, produced = tmp_path / "daps" / "clean", tmp_path / "daps" / "produced"
    assert f"indexed: {clean} {produced}" in capsys.readouterr().out
    rows = (clean / "metadata.csv").read_text().splitlines()
    assert rows[0].startswith("path,duration,sample_rate,channels,speaker")
    assert [r.split(",")[0] for r in rows[1:]] == ["f1_script1_clean.wav", "m10_script5_clean.wav"]
    assert [(r.split(",")[2], r.split(",")[4]) for r in rows[1:]] == [("44100", "f1"), ("44100", "m10")]
    assert not (tmp_path / "daps" / "ipad_office1" / "metadata.csv").exists()
    ds = build("degraded_speech", sample_rate=48000, roots=[str(clean)], segment_seconds=SEG, context_seconds=CTX)
    item = ds[0]
    check_context_item(item, 24576, 768, 196608)
    assert len(item["context"]) == 48000  # the whole 1 s file, resampled 44.1 -> 48 kHz on load


def test_daps_recipe_checks_the_published_md5_and_deletes_a_mismatch(tmp_path, capsys):
    assert DAPS.archives["all"][0].md5 == "303c130b7ce2e02b59c7ca5cd595a89c"
    make_daps_archive(tmp_path / "archives" / "daps.tar.gz")
    assert main(DAPS, ["--out-dir", str(tmp_path), "--offline"]) == 2
    assert "daps.tar.gz: md5 is" in capsys.readouterr().err
    assert not (tmp_path / "archives" / "daps.tar.gz").exists()


def test_vctk_demand_56_speaker_training_set_pairs_with_context(tmp_path):
    (tmp_path / "archives").mkdir()
    for kind, seed in (("clean", 1), ("noisy", 2)):
        with zipfile.ZipFile(tmp_path / "archives" / f"{kind}_trainset_56spk_wav.zip", "w") as zf:
            zf.writestr(f"{kind}_trainset_56spk_wav/p234_001.wav", wav_bytes(48000, 1.0, seed))
            zf.writestr(f"{kind}_trainset_56spk_wav/p234_002.wav", wav_bytes(48000, 0.7, seed + 2))
    assert main(VOICEBANK_DEMAND, ["--out-dir", str(tmp_path), "--subsets", "train56", "--offline"]) == 0
    ds = build("paired_folders", degraded_dir=str(tmp_path / "noisy_trainset_56spk_wav"),
               clean_dir=str(tmp_path / "clean_trainset_56spk_wav"), segment_seconds=SEG, context_seconds=CTX)
    assert len(ds) == 2
    for i in range(2):
        check_context_item(ds[i], 8192, 256, 65536)
    assert [len(ds[i]["context"]) for i in range(2)] == [16000, 11200]


@pytest.mark.real_data
def test_real_pairs_resampled_to_16_khz_with_context_items(real_data):
    ds = build("paired_folders", degraded_dir=str(real_data / "pairs" / "noisy"),
               clean_dir=str(real_data / "pairs" / "clean"), segment_seconds=SEG, context_seconds=CTX,
               validation=True)
    assert len(ds) == 28
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["sr"] == SR and batch["clean"].shape == batch["degraded"].shape == (28, 8192)
    assert batch["context"].shape == (28, 65536)
    for row, name in enumerate(batch["names"]):
        seconds = sf.info(str(real_data / "pairs" / "noisy" / ds.pairs[row][0])).duration
        # The row is the whole file (up to 4.096 s), resampled to 16 kHz: its length tells the rate.
        assert abs(int(batch["context_lengths"][row]) - min(seconds, CTX) * SR) <= 2, name
        o = int(batch["context_offset"][row])
        assert o % 256 == 0 and torch.equal(batch["degraded"][row], batch["context"][row, o:o + 8192])
        if name.startswith("vbdemand_"):  # additive noise at moderate SNR: the pair is aligned speech
            corr = np.corrcoef(batch["clean"][row].numpy(), batch["degraded"][row].numpy())[0, 1]
            assert corr > 0.3, f"{name}: clean/noisy segments correlate {corr:.2f}"
