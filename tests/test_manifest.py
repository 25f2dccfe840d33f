"""metadata.csv: scan, round trip, --update, unreadable files, bad roots, the command line."""
from __future__ import annotations

import csv
import os
import time

import numpy as np
import pytest
import soundfile as sf

from restorekit.datasets.manifest import COLUMNS, main, read_manifest, write_metadata
from restorekit.errors import DataError
from tests_helpers import run_py


def write_wav(path, sr=16000, seconds=0.5, channels=1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr, subtype=subtype)
    return path


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    write_wav(root / "p225" / "p225_001.wav", sr=24000, seconds=1.0)
    write_wav(root / "p225" / "p225_002.flac", sr=48000, seconds=0.25, channels=2)
    write_wav(root / "19" / "198" / "19_198_000001.wav", sr=8000, seconds=0.75)
    write_wav(root / "loose.wav", sr=16000, seconds=0.5)
    return root


def rows(root):
    with open(root / "metadata.csv", newline="") as fh:
        return list(csv.reader(fh))


def test_round_trip_writes_the_contract_columns_and_reads_back(corpus):
    report = write_metadata(corpus, workers=2)
    table = rows(corpus)
    assert tuple(table[0]) == COLUMNS
    by_path = {r[0]: r for r in table[1:]}
    assert sorted(by_path) == ["19/198/19_198_000001.wav", "loose.wav", "p225/p225_001.wav", "p225/p225_002.flac"]
    assert by_path["p225/p225_002.flac"][1:5] == ["0.250000", "48000", "2", "p225"]
    assert by_path["19/198/19_198_000001.wav"][2:5] == ["8000", "1", "19"]
    assert by_path["loose.wav"][4] == ""
    assert report.rows == 4 and report.scanned == 4 and report.unreadable == []
    m = read_manifest(corpus)
    assert [m.path(i) for i in range(len(m))] == [r[0] for r in table[1:]]
    np.testing.assert_allclose(m.durations, [0.75, 0.5, 1.0, 0.25])
    assert m.sample_rates.tolist() == [8000, 16000, 24000, 48000]
    assert sorted(os.listdir(corpus)) == ["19", "loose.wav", "metadata.csv", "p225"]  # no temp files left


def test_unreadable_files_are_reported_and_skipped_not_fatal(corpus, capsys):
    (corpus / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    assert main(["--root-dir", str(corpus)]) == 0
    out = capsys.readouterr()
    assert "unreadable, skipped: broken.wav" in out.err
    assert "4 files indexed" in out.out and "1 unreadable skipped" in out.out
    assert "broken.wav" not in [r[0] for r in rows(corpus)]


def test_update_rescans_only_new_or_changed_files_and_drops_stale_rows(corpus):
    write_metadata(corpus)
    (corpus / "loose.wav").unlink()
    write_wav(corpus / "p226" / "p226_001.wav", seconds=0.5)
    changed = corpus / "p225" / "p225_001.wav"
    write_wav(changed, sr=24000, seconds=2.0)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    report = write_metadata(corpus, update=True)
    assert (report.scanned, report.reused, report.stale) == (2, 2, ["loose.wav"])
    by_path = {r[0]: r for r in rows(corpus)[1:]}
    assert by_path["p225/p225_001.wav"][1] == "2.000000"
    assert by_path["p226/p226_001.wav"][4] == "p226"
    assert "loose.wav" not in by_path


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"audio root .*nowhere does not exist or is not a folder; check the path"):
        write_metadata(tmp_path / "nowhere")


def test_empty_root_gives_an_empty_manifest(tmp_path):
    report = write_metadata(tmp_path)
    assert report.rows == 0 and rows(tmp_path) == [list(COLUMNS)]
    assert len(read_manifest(tmp_path)) == 0


def test_foreign_csv_is_rejected_with_how_to_rebuild(tmp_path):
    (tmp_path / "metadata.csv").write_text("file,length\na.wav,1\n")
    with pytest.raises(DataError, match=r"not a restorekit metadata.csv .*rebuild it with scripts/make_metadata_csv.py"):
        read_manifest(tmp_path)


def test_missing_manifest_is_built_on_first_read_or_refused(corpus):
    with pytest.raises(DataError, match=r"metadata.csv not found; build it with: python scripts/make_metadata_csv.py"):
        read_manifest(corpus, build_missing=False)
    assert len(read_manifest(corpus)) == 4 and (corpus / "metadata.csv").is_file()


def test_script_and_module_entry_points_write_the_manifest(corpus):
    res = run_py(["scripts/make_metadata_csv.py", "--root-dir", str(corpus), "--speaker-pattern", ""], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "4 files indexed" in res.stdout and all(r[4] == "" for r in rows(corpus)[1:])


def test_command_line_reports_a_missing_folder_with_status_2(tmp_path, capsys):
    assert main(["--root-dir", str(tmp_path / "missing")]) == 2
    assert "error: audio root" in capsys.readouterr().err


def test_fast_reader_and_csv_fallback_agree_on_plain_and_quoted_paths(corpus):
    write_wav(corpus / "spk, odd" / "a,b.wav")  # a comma in the path: the csv writer quotes it
    write_metadata(corpus)
    quoted = read_manifest(corpus)
    assert "spk, odd/a,b.wav" in [quoted.path(i) for i in range(len(quoted))]
    (corpus / "spk, odd" / "a,b.wav").unlink()
    write_metadata(corpus)
    plain, table = read_manifest(corpus), rows(corpus)[1:]
    assert [plain.path(i) for i in range(len(plain))] == [r[0] for r in table]
    np.testing.assert_array_equal(plain.durations, [float(r[1]) for r in table])
    assert plain.sample_rates.tolist() == [int(r[2]) for r in table]


class _FullDisk:
    """A csv writer that writes the header and the first row, then finds the disk full."""

    real_writer = csv.writer

    def __init__(self, fh, **kwargs):
        self.inner = _FullDisk.real_writer(fh, **kwargs)

    def writerow(self, row):
        self.inner.writerow(row)

    def writerows(self, rows):
        self.inner.writerow(next(iter(rows)))
        raise OSError(28, "No space left on device")


def test_a_failed_rewrite_keeps_the_previous_metadata_csv_and_leaves_no_temporary(corpus, monkeypatch):
    """--update after a new file arrives, and the disk fills half-way through the table.

    The previous metadata.csv is kept byte for byte, no temporary is left, and the error is a
    DataError naming the file, the cause and the fix. Catches: writing the table in place (a
    truncated index), a temporary left at the audio root (listed by the next scan), and an
    OSError traceback instead of a user-facing error.
    """
    write_metadata(corpus, workers=1)
    before = (corpus / "metadata.csv").read_bytes()
    write_wav(corpus / "p226" / "p226_001.wav")
    monkeypatch.setattr("restorekit.datasets.manifest.csv.writer", _FullDisk)
    why = (r"metadata\.csv: could not be written \(\[Errno 28\] No space left on device\); the index is kept "
           r"at the audio root: make .*corpus writable or free space there, then rerun scripts/make_metadata_csv\.py")
    with pytest.raises(DataError, match=why):
        write_metadata(corpus, update=True, workers=1)
    assert (corpus / "metadata.csv").read_bytes() == before
    assert sorted(os.listdir(corpus)) == ["19", "loose.wav", "metadata.csv", "p225", "p226"]
