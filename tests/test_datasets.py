"""Datasets: every registered dataset yields contract items; determinism, sharding, bad input."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, DistributedSampler

from restorekit.datasets import DATASETS, collate
from restorekit.datasets.demo import SENTENCES, demo_corpus_dir, utterances
from restorekit.datasets.manifest import write_metadata
from restorekit.datasets.shards import write_shards
from restorekit.errors import ConfigError, DataError

SR = 24000
CHAIN = {"name": "chain", "args": {"ops": [
    {"name": "gain", "p": 1.0, "args": {"gain_db": [-6.0, 0.0]}},
    {"name": "clipping", "p": 1.0},
]}}


def write_wav(path, sr=16000, seconds=0.5, channels=1, freq=220.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr)
    return path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """The demo corpus, synthesized once per test session into a temporary cache."""
    cache = tmp_path_factory.mktemp("demo_cache")
    demo_corpus_dir("train", cache)
    return cache


@pytest.fixture
def corpus(tmp_path):
    """A 24 kHz corpus with the awkward cases mixed in: an 8 kHz file, a stereo file, a short clip."""
    root = tmp_path / "speech"
    for k in range(6):
        write_wav(root / "spk1" / f"spk1_{k:03d}.wav", sr=SR, seconds=1.0 + 0.1 * k, freq=150 + 20 * k)
    write_wav(root / "spk2" / "spk2_8k.wav", sr=8000, seconds=1.2)
    write_wav(root / "spk2" / "spk2_stereo.flac", sr=48000, seconds=1.1, channels=2)
    write_wav(root / "spk2" / "spk2_short.wav", sr=SR, seconds=0.3)
    return root


@pytest.fixture
def pairs(tmp_path):
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    for k in range(4):
        write_wav(clean / f"p232_{k:03d}.wav", seconds=0.6 + 0.1 * k, freq=200 + 30 * k)
        write_wav(noisy / f"p232_{k:03d}.wav", seconds=0.6 + 0.1 * k, freq=200 + 30 * k)
    return noisy, clean


def check_item(item, sr, paired=True):
    """The contract of docs/contracts.md for one item."""
    assert item["sr"] == sr and isinstance(item["name"], str) and item["name"]
    assert item["degraded"].dtype == torch.float32 and item["degraded"].ndim == 1
    assert torch.isfinite(item["degraded"]).all() and item["degraded"].abs().max() <= 1.0
    assert isinstance(item["degradations"], list) and all(isinstance(d, dict) for d in item["degradations"])
    if paired:
        assert item["clean"].dtype == torch.float32 and item["clean"].shape == item["degraded"].shape
    else:
        assert "clean" not in item


def example_nodes(corpus, pairs, demo_dir, shards):
    """One example config per registered dataset (the registry sweep below builds each)."""
    return {
        "degraded_speech": {"roots": [str(corpus)], "segment_seconds": 0.5, "degradations": CHAIN},
        "paired_folders": {"degraded_dir": str(pairs[0]), "clean_dir": str(pairs[1]), "segment_seconds": 0.5},
        "audio_folder": {"roots": [str(pairs[0])]},
        "demo_speech": {"split": "valid", "segment_seconds": 1.0, "degradations": CHAIN, "cache_dir": str(demo_dir)},
        "webdataset_shards": {"urls": str(shards / "shard-{000000..000001}.tar"), "segment_seconds": 0.5,
                              "degradations": CHAIN, "validation": True},
    }


@pytest.fixture
def shards(corpus, tmp_path):
    paths = write_shards(corpus, tmp_path / "shards", maxcount=5)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar"]
    return tmp_path / "shards"


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_registered_dataset_builds_from_its_example_and_yields_a_contract_item(
        name, corpus, pairs, demo_dir, shards):
    nodes = example_nodes(corpus, pairs, demo_dir, shards)
    assert sorted(nodes) == DATASETS.names()
    ds = DATASETS.build({"name": name, "args": nodes[name]}, where="data.train", sample_rate=SR)
    item = next(iter(ds)) if isinstance(ds, torch.utils.data.IterableDataset) else ds[0]
    check_item(item, SR, paired=name != "audio_folder")
    if "degradations" in nodes[name]:
        assert [d["name"] for d in item["degradations"]][:2] == ["gain", "clipping"]


def test_degraded_speech_converts_rates_and_channels_and_pads_short_clips(corpus):
    ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": str(corpus), "segment_seconds": 0.5}},
                        where="data.train", sample_rate=SR)
    assert len(ds) == 9
    for i in range(len(ds)):
        item = ds[i]
        check_item(item, SR)
        assert item["degraded"].shape == (12000,) and torch.equal(item["clean"], item["degraded"])
    short = ds[[ds.index.file(i)[1] for i in range(9)].index("spk2/spk2_short.wav")]
    assert short["clean"][7200 + 50:].abs().max() == 0 and short["clean"][:7000].abs().max() > 0.1


def test_degraded_speech_short_drop_and_duration_filters(corpus):
    drop = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "segment_seconds": 0.5,
                                                               "short": "drop"}}, where="d", sample_rate=SR)
    assert len(drop) == 8
    limited = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "min_duration": 1.15,
                                                                  "max_duration": 1.35}}, where="d", sample_rate=SR)
    assert sorted(limited.index.file(i)[1] for i in range(len(limited))) == [
        "spk1/spk1_002.wav", "spk1/spk1_003.wav", "spk2/spk2_8k.wav"]
    with pytest.raises(DataError, match=r"none of the 9 files .* is within min_duration=5.0.*relax the limits"):
        DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "min_duration": 5.0}},
                       where="d", sample_rate=SR)
    with pytest.raises(ConfigError, match=r"degraded_speech.short must be one of pad, drop"):
        DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "short": "trim"}},
                       where="d", sample_rate=SR)


def test_validation_items_are_deterministic_and_training_items_vary_by_epoch(corpus):
    def build(validation):
        return DATASETS.build({"name": "degraded_speech", "args": {
            "roots": [str(corpus)], "segment_seconds": 0.4, "degradations": CHAIN, "validation": validation,
            "seed": 3}}, where="d", sample_rate=SR)

    a, b = build(True), build(True)
    b.set_epoch(5)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x["degraded"], y["degraded"]) and x["degradations"] == y["degradations"]
    train = build(False)
    first = train[0]
    assert torch.equal(first["degraded"], train[0]["degraded"])  # same (seed, epoch, index), same item
    train.set_epoch(1)
    assert first["degradations"] != train[0]["degradations"]


def test_stale_manifest_rows_are_skipped_counted_and_reported(corpus, capsys):
    write_metadata(corpus)
    (corpus / "spk1" / "spk1_000.wav").unlink()
    (corpus / "spk1" / "spk1_001.wav").write_bytes(b"garbage")
    ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "segment_seconds": 0.2}},
                        where="d", sample_rate=SR)
    items = [ds[i] for i in range(len(ds))]
    assert len(items) == 9 and ds.skips.skipped == 2
    assert items[0]["name"] == "spk1/spk1_002"  # the next readable file stands in
    err = capsys.readouterr().err
    assert "skipping" in err and "spk1_000.wav: file not found" in err and "spk1_001.wav: cannot be decoded" in err


def test_a_manifest_that_no_longer_matches_the_disk_stops_with_how_to_fix(corpus):
    write_metadata(corpus)
    for f in corpus.rglob("*.wav"):
        f.unlink()
    for f in corpus.rglob("*.flac"):
        f.unlink()
    ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)]}}, where="d", sample_rate=SR)
    with pytest.raises(DataError, match=r"none of the 9 files could be read \(9 failed\); .*make_metadata_csv.py --root-dir DIR --update"):
        for i in range(len(ds)):
            ds[i]


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"degraded_speech: folder .*nope does not exist; check the path"):
        DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(tmp_path / "nope")]}}, where="d",
                       sample_rate=SR)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"degraded_speech: no audio indexed in .*empty; add audio files"):
        DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(tmp_path / "empty")]}}, where="d",
                       sample_rate=SR)
    with pytest.raises(DataError, match=r"audio_folder: no readable audio files under"):
        DATASETS.build({"name": "audio_folder", "args": {"roots": [str(tmp_path / "empty")]}}, where="d")


def test_distributed_sampler_over_two_ranks_gives_disjoint_shards_covering_the_set(corpus):
    ds = DATASETS.build({"name": "degraded_speech", "args": {"roots": [str(corpus)], "segment_seconds": 0.35,
                                                             "short": "drop", "validation": True}},
                        where="d", sample_rate=SR)
    assert len(ds) == 8
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=1)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate)
        seen.append([n for batch in loader for n in batch["names"]])
    assert len(seen[0]) == len(seen[1]) == 4
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == {ds[i]["name"] for i in range(len(ds))}


def test_collate_pads_to_the_longest_and_records_lengths_names_and_degradations(pairs):
    ds = DATASETS.build({"name": "paired_folders", "args": {"degraded_dir": str(pairs[0]),
                                                            "clean_dir": str(pairs[1])}}, where="d", sample_rate=SR)
    batch = collate([ds[0], ds[3]])
    assert batch["clean"].shape == batch["degraded"].shape == (2, int(0.9 * SR))
    assert batch["lengths"].tolist() == [int(0.6 * SR), int(0.9 * SR)] and batch["lengths"].dtype == torch.long
    assert batch["degraded"][0, int(0.6 * SR):].abs().max() == 0
    assert batch["names"] == ["p232_000", "p232_003"] and batch["sr"] == SR and batch["degradations"] == [[], []]
    with pytest.raises(DataError, match=r"cannot batch items at different sample rates \[16000, 24000\]"):
        collate([ds[0], {**ds[1], "sr": 16000}])


def test_paired_folders_lists_unmatched_files(pairs):
    noisy, clean = pairs
    write_wav(noisy / "extra_noisy.wav")
    (clean / "p232_001.wav").unlink()
    with pytest.raises(DataError, match=r"2 in .*noisy without a clean file in .*clean: extra_noisy, p232_001\. "
                                        r".*Remove or rename them"):
        DATASETS.build({"name": "paired_folders", "args": {"degraded_dir": str(noisy), "clean_dir": str(clean)}},
                       where="d", sample_rate=SR)


def test_paired_folders_crops_both_sides_at_the_same_offset(tmp_path):
    clean, noisy = tmp_path / "c", tmp_path / "n"
    write_wav(clean / "a.wav", sr=48000, seconds=2.0, freq=300)
    write_wav(noisy / "a.flac", sr=48000, seconds=2.0, freq=300)
    ds = DATASETS.build({"name": "paired_folders", "args": {"degraded_dir": str(noisy), "clean_dir": str(clean),
                                                            "segment_seconds": 0.5}}, where="d", sample_rate=SR)
    item = ds[0]
    check_item(item, SR)
    assert item["clean"].shape == (12000,)
    np.testing.assert_allclose(item["clean"].numpy(), item["degraded"].numpy(), atol=1e-4)


def test_audio_folder_skips_and_counts_unreadable_files(pairs, capsys):
    noisy, _ = pairs
    (noisy / "sub").mkdir()
    (noisy / "sub" / "bad.wav").write_bytes(b"not audio")
    ds = DATASETS.build({"name": "audio_folder", "args": {"roots": [str(noisy)]}}, where="d")
    assert len(ds) == 4 and [p.endswith("bad.wav") for p, _ in ds.unreadable] == [True]
    assert "skipping unreadable" in capsys.readouterr().err
    item = ds[1]
    check_item(item, 16000, paired=False)
    assert item["path"].endswith("p232_001.wav") and item["degraded"].shape == (int(0.7 * 16000),)


def test_webdataset_shards_split_across_ranks_disjointly_and_cover_the_set(corpus, shards, monkeypatch):
    urls = str(shards / "shard-{000000..000001}.tar")
    names = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = DATASETS.build({"name": "webdataset_shards", "args": {"urls": urls, "segment_seconds": 0.3,
                                                                   "degradations": CHAIN}}, where="d", sample_rate=SR)
        items = list(ds)
        for item in items:
            check_item(item, SR)
        names.append({it["name"] for it in items})
    assert not names[0] & names[1]
    assert names[0] | names[1] == {p.relative_to(corpus).with_suffix("").as_posix()
                                   for p in corpus.rglob("*") if p.suffix in (".wav", ".flac")}


def test_webdataset_validation_is_deterministic_and_loads_in_workers(shards):
    node = {"name": "webdataset_shards", "args": {"urls": [str(p) for p in sorted(shards.glob("*.tar"))],
                                                  "segment_seconds": 0.3, "degradations": CHAIN, "validation": True}}
    first = list(DATASETS.build(node, where="d", sample_rate=SR))
    loader = DataLoader(DATASETS.build(node, where="d", sample_rate=SR), batch_size=4, num_workers=2,
                        collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["names"]) for b in batches) == len(first) == 9
    by_name = {it["name"]: it for it in first}
    for b in batches:
        for name, wave in zip(b["names"], b["degraded"]):
            assert torch.equal(wave, by_name[name]["degraded"])
    with pytest.raises(DataError, match=r"shard\(s\) not found, e.g. .*missing.tar; .*scripts/make_shards.py"):
        DATASETS.build({"name": "webdataset_shards", "args": {"urls": str(shards / "missing.tar")}}, where="d",
                       sample_rate=SR)


def frame_pitch_strength(wave, sr):
    """Per 40 ms frame: the peak normalised autocorrelation at lags of 70-400 Hz (voicing)."""
    n = int(0.04 * sr)
    out = []
    for start in range(0, len(wave) - n, n):
        f = wave[start:start + n] - wave[start:start + n].mean()
        if np.sqrt(np.mean(f ** 2)) < 1e-3:
            continue
        ac = np.correlate(f, f, "full")[n - 1:]
        out.append(ac[sr // 400: sr // 70].max() / ac[0])
    return np.array(out)


def test_demo_corpus_is_intelligible_speech_like_and_deterministic(demo_dir, tmp_path):
    train, valid = demo_corpus_dir("train", demo_dir), demo_corpus_dir("valid", demo_dir)
    files = sorted(train.rglob("*.wav")) + sorted(valid.rglob("*.wav"))
    assert len(files) == 56 and len(list(valid.rglob("*.wav"))) == 24
    texts = {stem: text for _, _, stem, text in utterances()}
    for f in files:
        wave, sr = sf.read(f, dtype="float32")
        assert sr == 22050
        seconds = len(wave) / sr
        assert 0.04 < seconds / len(texts[f.stem]) < 0.12, f"{f.name}: {seconds:.2f} s for {texts[f.stem]!r}"
        assert 20 * np.log10(np.sqrt(np.mean(wave ** 2))) > -35  # not silent
        voicing = frame_pitch_strength(wave, sr)
        assert np.mean(voicing > 0.5) > 0.3, f"{f.name}: too few voiced frames"
    assert len(set(texts.values())) == len(SENTENCES) == 56
    again = demo_corpus_dir("valid", tmp_path / "rebuilt")
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*.wav")}  # noqa: E731
    assert digest(again) == digest(valid)


def test_demo_cache_location_follows_the_environment(tmp_path, monkeypatch, demo_dir):
    from restorekit.datasets.demo import demo_cache_root

    monkeypatch.setenv("RESTOREKIT_DEMO_DIR", str(tmp_path / "env"))
    assert demo_cache_root() == tmp_path / "env"
    monkeypatch.delenv("RESTOREKIT_DEMO_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_cache_root() == tmp_path / "xdg" / "restorekit" / "demo_speech"
    assert demo_cache_root(demo_dir) == demo_dir
    with pytest.raises(ConfigError, match=r"demo_speech: split must be one of train, valid, got 'test'"):
        demo_corpus_dir("test", demo_dir)


@pytest.mark.real_data
def test_paired_folders_over_the_real_voicebank_style_pairs(real_data):
    ds = DATASETS.build({"name": "paired_folders", "args": {
        "degraded_dir": str(real_data / "pairs" / "noisy"), "clean_dir": str(real_data / "pairs" / "clean")}},
        where="d", sample_rate=16000)
    assert len(ds) == 28
    names = [ds.pairs[i][0] for i in range(len(ds))]
    for i in (names.index("vbdemand_p232_002.wav"), names.index("seflow_noise_p232_189.flac")):
        item = ds[i]
        check_item(item, 16000)
        expected = sf.info(str(real_data / "pairs" / "clean" / names[i])).duration
        assert abs(len(item["clean"]) / 16000 - expected) < 0.01
        assert np.corrcoef(item["clean"].numpy(), item["degraded"].numpy())[0, 1] > 0.3
