"""inference with WebDataset shards: shards in, shards out, every key kept, finished shards skipped.

The output is read back with restorekit's own ``webdataset_shards`` dataset, the format a
restored corpus trains from.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.datasets.shards import WebDatasetShards
from restorekit.errors import ConfigError, DataError
from restorekit.inference import main
from restorekit.inference_shards import is_shard_input

SR = 16_000


def wave_of(seed: int, seconds: float = 0.3) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def encoded(wave: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def make_shards(folder: Path) -> dict[str, np.ndarray]:
    """shard-000000.tar: s0 (wav, json, txt), s1 (flac, json); shard-000001.tar: s2 (wav, json), a
    corrupt s3 (wav), s4 (flac, txt). Returns each good key's input audio (16-bit, as stored)."""
    import webdataset as wds

    folder.mkdir(parents=True)
    waves = {}
    layout = [[("spk1/s0", "wav"), ("spk1/s1", "flac")], [("spk2/s2", "wav"), ("spk2/s3", "bad"), ("spk2/s4", "flac")]]
    for number, samples in enumerate(layout):
        with wds.TarWriter(str(folder / f"shard-{number:06d}.tar")) as sink:
            for i, (key, ext) in enumerate(samples):
                seed = number * 10 + i
                sample = {"__key__": key, "json": json.dumps({"path": f"{key}.{ext}", "speaker": key[:4]}).encode()}
                if ext == "bad":
                    sample["wav"] = b"RIFF\x00\x00\x00\x00WAVEnot audio"
                else:
                    sample[ext] = encoded(wave_of(seed), "WAV" if ext == "wav" else "FLAC")
                    waves[key] = sf.read(io.BytesIO(sample[ext]), dtype="float32")[0]
                if i % 2 == 0:
                    sample["txt"] = f"words of {key}".encode()
                sink.write(sample)
    return waves


class Halver:
    """Halves the amplitude: the output is visibly the restoration, not the input copied through."""

    chunks_internally = False
    sample_rate = None

    def enhance_batch(self, items):
        return [(w * np.float32(0.5), s) for w, s in items]


def members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def restore(inputs: str, out: Path, monkeypatch, *args: str) -> tuple[int, dict]:
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: Halver())
    status = main(["enhancer=identity", f"input={inputs}", f"output_dir={out}", *args])
    return status, json.loads((out / "inference_summary.json").read_text())


def test_shards_round_trip_every_key_and_train_back(tmp_path, monkeypatch) -> None:
    """A brace pattern in, the same shard names out: every member in order, json/txt byte for byte,
    audio halved in its own format; the corrupt sample is left out and recorded failed. The
    webdataset_shards dataset reads the output shards back with the restored audio.

    Catches: members dropped or reordered, metadata re-encoded, audio not replaced, flac written as
    wav, a failed sample's unrestored audio kept, output the training dataset cannot read.
    """
    waves = make_shards(tmp_path / "shards")
    out = tmp_path / "restored"
    status, summary = restore(str(tmp_path / "shards" / "shard-{000000..000001}.tar"), out, monkeypatch)
    assert status == 1  # the corrupt sample failed; the rest was restored
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    assert not list(out.glob(".*partial"))
    statuses = {f["input"].rsplit(":", 1)[1]: (f["status"], f["reason"]) for f in summary["files"]}
    assert statuses == {"spk1/s0.wav": ("done", ""), "spk1/s1.flac": ("done", ""), "spk2/s2.wav": ("done", ""),
                        "spk2/s3.wav": ("failed", "spk2/s3.wav: cannot be decoded as audio (Error in WAV file. "
                                                  "No 'data' chunk marker.)"),
                        "spk2/s4.flac": ("done", "")}
    for number in (0, 1):
        name = f"shard-{number:06d}.tar"
        before, after = members(tmp_path / "shards" / name), members(out / name)
        kept = [(n, data) for n, data in before if not n.startswith("spk2/s3.")]
        assert [n for n, _ in after] == [n for n, _ in kept]
        for (member, data), (_, original) in zip(after, kept):
            ext = member.rsplit(".", 1)[1]
            if ext in ("json", "txt"):
                assert data == original, member
                continue
            assert sf.info(io.BytesIO(data)).format == ext.upper()
            restored = sf.read(io.BytesIO(data), dtype="float32")[0]
            np.testing.assert_allclose(restored, 0.5 * waves[member.rsplit(".", 1)[0]], atol=1e-4)

    dataset = WebDatasetShards(str(out / "shard-{000000..000001}.tar"), sample_rate=SR, segment_seconds=None,
                               validation=True)
    items = {item["name"]: item["clean"] for item in dataset}
    assert sorted(items) == ["spk1/s0", "spk1/s1", "spk2/s2", "spk2/s4"]
    np.testing.assert_allclose(items["spk2/s4"], 0.5 * waves["spk2/s4"], atol=1e-4)


def test_finished_shards_are_skipped_and_a_partial_one_is_redone(tmp_path, monkeypatch) -> None:
    """Rerun after shard-000001 was killed mid-write (a .partial left, no output): shard-000000 is
    skipped untouched, shard-000001 restored again and the .partial gone.

    Catches: a finished shard restored again, a partial shard taken as finished, leftovers kept.
    """
    make_shards(tmp_path / "shards")
    out = tmp_path / "restored"
    restore(str(tmp_path / "shards"), out, monkeypatch)  # a folder of shards
    first = (out / "shard-000000.tar").stat().st_mtime_ns
    (out / "shard-000001.tar").unlink()
    (out / ".shard-000001.tar.partial").write_bytes(b"half a tar")
    _, summary = restore(str(tmp_path / "shards"), out, monkeypatch)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 1, 1)
    skipped = [f for f in summary["files"] if f["status"] == "skipped"]
    assert [(Path(f["input"]).name, f["reason"]) for f in skipped] == [("shard-000000.tar", "output shard exists")]
    assert (out / "shard-000000.tar").stat().st_mtime_ns == first
    assert [n for n, _ in members(out / "shard-000001.tar")] == [
        "spk2/s2.json", "spk2/s2.txt", "spk2/s2.wav", "spk2/s4.flac", "spk2/s4.json", "spk2/s4.txt"]
    assert sorted(p.name for p in out.iterdir()) == [
        "inference_config.yaml", "inference_summary.json", "shard-000000.tar", "shard-000001.tar"]


def test_a_truncated_shard_fails_alone_and_ranks_take_every_other_shard(tmp_path, monkeypatch) -> None:
    """Three shards, the last one cut short, restored as rank 0 of 2: the run takes shards 0 and 2
    only (shard 1 is rank 1's); the truncated one fails as a whole (no output, the reason says so).

    Catches: shards not split by rank, a truncated shard written as if whole.
    """
    make_shards(tmp_path / "shards")
    shards = tmp_path / "shards"
    data = (shards / "shard-000001.tar").read_bytes()
    (shards / "shard-000002.tar").write_bytes(data[: len(data) // 2 + 100])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    status, summary = restore(str(shards), tmp_path / "out", monkeypatch)
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tar")) == ["shard-000000.tar"]
    assert not list((tmp_path / "out").glob(".*partial"))
    records = {Path(f["input"].split(":")[0]).name: f for f in summary["files"]}
    assert sorted(records) == ["shard-000000.tar", "shard-000002.tar"]
    bad = records["shard-000002.tar"]
    assert bad["status"] == "failed" and bad["input"] == str(shards / "shard-000002.tar")
    assert bad["reason"].startswith("shard not restored (ReadError") and "whole tar file" in bad["reason"]


def test_shard_inputs_are_recognised_and_checked(tmp_path, monkeypatch) -> None:
    make_shards(tmp_path / "shards")
    listing = tmp_path / "shards.txt"
    listing.write_text("shards/shard-000000.tar\n")
    assert is_shard_input(str(listing)) and is_shard_input(str(tmp_path / "shards"))
    assert is_shard_input("corpus/shard-{000..009}.tar") and not is_shard_input(str(tmp_path))
    with pytest.raises(DataError, match=r"input: 1 shard\(s\) not found, e.g. .*shard-000002.tar; check the pattern"):
        restore(str(tmp_path / "shards" / "shard-{000000..000002}.tar"), tmp_path / "o", monkeypatch)
    with pytest.raises(ConfigError, match="output shard .*shard-000000.tar would overwrite input shard"):
        restore(str(listing), tmp_path / "shards", monkeypatch)


class TextScaler(Halver):
    """A stand-in text-conditioned export: scales its input by len(text) / 100."""

    text_conditioned = True

    def with_text(self, text):
        scaler = Halver()
        scaler.enhance_batch = lambda items: [(w * np.float32(len(text) / 100), s) for w, s in items]
        return scaler


def test_a_text_conditioned_export_reads_each_samples_txt_member(tmp_path, monkeypatch) -> None:
    """Miipher-1 on shards: s0 restored with its .txt ('words of spk1/s0', 16 characters); s1 has no
    .txt and no transcripts= was given, so it fails alone with the message saying what to pass.

    Catches: the .txt member ignored, a missing transcript ending the run.
    """
    waves = make_shards(tmp_path / "shards")
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: TextScaler())
    out = tmp_path / "out"
    assert main(["enhancer=identity", f"input={tmp_path / 'shards' / 'shard-000000.tar'}", f"output_dir={out}"]) == 1
    records = {f["input"].rsplit(":", 1)[1]: f for f in json.loads((out / "inference_summary.json").read_text())["files"]}
    assert records["spk1/s0.wav"]["status"] == "done"
    assert records["spk1/s1.flac"]["status"] == "failed"
    assert records["spk1/s1.flac"]["reason"].startswith("ConfigError: this export (a Miipher-1 restorer) reads the")
    (restored,) = [data for name, data in members(out / "shard-000000.tar") if name == "spk1/s0.wav"]
    np.testing.assert_allclose(sf.read(io.BytesIO(restored), dtype="float32")[0], 0.16 * waves["spk1/s0"], atol=1e-4)


class To24k:
    """16 kHz in, 24 kHz out (each sample repeated 3 times, every second one kept): a rate-changing restorer."""

    chunks_internally = False
    sample_rate = 24000

    def enhance_batch(self, items):
        return [(np.repeat(w, 3)[::2].astype(np.float32), 24000) for w, s in items]


def test_a_json_header_gets_the_restored_rate_and_nothing_else_changes(tmp_path, monkeypatch) -> None:
    """make_shards' header {path, duration, sample_rate, ...} says 24000 after a 16 -> 24 kHz restoration,
    its other keys and their order kept; JSON that is not such an object (a list, bytes that do not parse,
    an object without sample_rate) is copied byte for byte.

    Catches: a stale input rate left in the header, keys dropped or reordered, other JSON rewritten."""
    import webdataset as wds

    (tmp_path / "in").mkdir()
    headers = {"a": json.dumps({"path": "a.wav", "duration": 0.5, "sample_rate": 16000, "speaker": "p1"}).encode(),
               "b": b"[1, 2]", "c": b"{not json", "d": json.dumps({"path": "d.wav", "speaker": "p2"}).encode()}
    with wds.TarWriter(str(tmp_path / "in" / "shard-000000.tar")) as sink:
        for i, (key, header) in enumerate(headers.items()):
            sink.write({"__key__": key, "wav": encoded(wave_of(i), "WAV"), "json": header})
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: To24k())
    main(["enhancer=identity", f"input={tmp_path / 'in' / 'shard-000000.tar'}", f"output_dir={tmp_path / 'out'}"])
    out = dict(members(tmp_path / "out" / "shard-000000.tar"))
    assert list(json.loads(out["a.json"]).items()) == [("path", "a.wav"), ("duration", 0.5), ("sample_rate", 24000),
                                                       ("speaker", "p1")]
    assert sf.info(io.BytesIO(out["a.wav"])).samplerate == 24000
    assert (out["b.json"], out["c.json"], out["d.json"]) == (headers["b"], headers["c"], headers["d"])
