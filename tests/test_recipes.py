"""Corpus recipes: extract-and-index on small archives built here; resumable, verified downloads."""
from __future__ import annotations

import csv
import hashlib
import http.server
import io
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf

from restorekit.datasets import DATASETS
from restorekit.datasets.recipes import (
    DNS_NOISE,
    LIBRITTS_R,
    VCTK,
    VOICEBANK_DEMAND,
    Archive,
    download,
    extract,
    main,
    prepare,
)
from restorekit.errors import DataError
from tests_helpers import local_http_server


def wav_bytes(sr=16000, seconds=0.3, fmt="WAV"):
    buf = io.BytesIO()
    t = np.arange(int(sr * seconds)) / sr
    sf.write(buf, 0.2 * np.sin(2 * np.pi * 200 * t), sr, format=fmt)
    return buf.getvalue()


def make_tar(path, members, mode="w:gz"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def manifest_rows(folder):
    with open(folder / "metadata.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_libritts_r_extracts_and_indexes_with_speakers(tmp_path):
    make_tar(tmp_path / "archives" / "dev_clean.tar.gz", {
        "LibriTTS_R/dev-clean/84/121123/84_121123_000007_000001.wav": wav_bytes(24000),
        "LibriTTS_R/dev-clean/84/121123/84_121123_000007_000001.normalized.txt": b"text",
        "LibriTTS_R/dev-clean/174/50561/174_50561_000010_000000.wav": wav_bytes(24000, 0.5),
    })
    folders = prepare(LIBRITTS_R, tmp_path, ["dev_clean"], offline=True)
    assert folders == [tmp_path / "LibriTTS_R" / "dev-clean"]
    rows = manifest_rows(folders[0])
    assert [(r["path"], r["speaker"], r["sample_rate"]) for r in rows] == [
        ("174/50561/174_50561_000010_000000.wav", "174", "24000"),
        ("84/121123/84_121123_000007_000001.wav", "84", "24000")]
    assert (tmp_path / ".extracted-dev_clean.tar.gz").is_file()
    assert prepare(LIBRITTS_R, tmp_path, ["dev_clean"], offline=True) == folders  # idempotent re-run


def test_vctk_zip_is_extracted_and_indexed(tmp_path):
    make_zip(tmp_path / "archives" / "VCTK-Corpus-0.92.zip", {
        "wav48_silence_trimmed/p225/p225_001_mic1.flac": wav_bytes(48000, fmt="FLAC"),
        "wav48_silence_trimmed/p225/p225_001_mic2.flac": wav_bytes(48000, fmt="FLAC"),
        "txt/p225/p225_001.txt": b"Please call Stella.",
    })
    (folder,) = prepare(VCTK, tmp_path, ["all"], offline=True)
    assert [(r["path"], r["speaker"]) for r in manifest_rows(folder)] == [
        ("p225/p225_001_mic1.flac", "p225"), ("p225/p225_001_mic2.flac", "p225")]


def test_voicebank_demand_prepares_a_paired_set(tmp_path):
    for kind in ("clean", "noisy"):
        make_zip(tmp_path / "archives" / f"{kind}_testset_wav.zip", {
            f"{kind}_testset_wav/p232_001.wav": wav_bytes(48000), f"{kind}_testset_wav/p257_002.wav": wav_bytes(48000)})
    assert main(VOICEBANK_DEMAND, ["--out-dir", str(tmp_path), "--subsets", "test", "--offline"]) == 0
    clean, noisy = tmp_path / "clean_testset_wav", tmp_path / "noisy_testset_wav"
    assert [r["speaker"] for r in manifest_rows(clean)] == ["p232", "p257"]
    ds = DATASETS.build({"name": "paired_folders", "args": {"degraded_dir": str(noisy), "clean_dir": str(clean)}},
                        where="d", sample_rate=16000)
    assert len(ds) == 2 and ds[0]["clean"].shape == (4800,)


def test_dns_noise_and_rirs_from_bz2_tars(tmp_path):
    make_tar(tmp_path / "archives" / "datasets_fullband.noise_fullband.tar.bz2",
             {"datasets_fullband/noise_fullband/door_1.wav": wav_bytes(48000)}, mode="w:bz2")
    make_tar(tmp_path / "archives" / "datasets_fullband.impulse_responses_000.tar.bz2",
             {"datasets_fullband/impulse_responses/SLR26/room_1.wav": wav_bytes(16000, 0.2)}, mode="w:bz2")
    noise, rir = prepare(DNS_NOISE, tmp_path, ["noise", "rir"], offline=True)
    assert noise.name == "noise_fullband" and [r["path"] for r in manifest_rows(noise)] == ["door_1.wav"]
    assert [(r["path"], r["speaker"]) for r in manifest_rows(rir)] == [("SLR26/room_1.wav", "")]


def test_offline_without_the_archive_and_unknown_subsets_say_what_to_do(tmp_path, capsys):
    with pytest.raises(DataError, match=r"VCTK-Corpus-0.92.zip not found and --offline was given; download https://"):
        prepare(VCTK, tmp_path, ["all"], offline=True)
    assert main(LIBRITTS_R, ["--out-dir", str(tmp_path), "--subsets", "train_clean_99", "--offline"]) == 2
    assert "unknown subset(s) train_clean_99; choose from dev_clean" in capsys.readouterr().err


def test_corrupt_or_hostile_archives_are_refused(tmp_path):
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"broken.tar.gz: cannot be extracted .*delete it and run again"):
        extract(tmp_path / "broken.tar.gz", tmp_path / "out")
    make_zip(tmp_path / "evil.zip", {"../escape.wav": b"x"})
    with pytest.raises(DataError, match=r"member '../escape.wav' would be written outside"):
        extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "escape.wav").exists()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload and honours 'Range: bytes=N-' like the corpus hosts do."""

    payload = b""
    ranges: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0])
        type(self).ranges.append(start)
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(self.payload) - start))
        self.end_headers()
        self.wfile.write(self.payload[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.payload = bytes(range(256)) * 4000
    RangeHandler.ranges = []
    with local_http_server(RangeHandler) as url:
        yield url


def test_download_resumes_a_partial_file_and_verifies_the_checksum(tmp_path, server):
    payload = RangeHandler.payload
    archive = Archive(f"{server}/corpus.tar.gz", sha256=hashlib.sha256(payload).hexdigest())
    (tmp_path / "corpus.tar.gz.part").write_bytes(payload[:300_000])
    path = download(archive, tmp_path)
    assert RangeHandler.ranges == [300_000]
    assert path.read_bytes() == payload and not (tmp_path / "corpus.tar.gz.part").exists()


def test_a_checksum_mismatch_deletes_the_download_and_says_so(tmp_path, server):
    archive = Archive(f"{server}/corpus.tar.gz", md5="0" * 32)
    with pytest.raises(DataError, match=r"corpus.tar.gz: md5 is [0-9a-f]{32}, expected 0{32}; .*run again"):
        download(archive, tmp_path)
    assert list(tmp_path.iterdir()) == []
    path = download(archive, tmp_path, checksum="sha256:" + hashlib.sha256(RangeHandler.payload).hexdigest())
    assert path.stat().st_size == len(RangeHandler.payload)
