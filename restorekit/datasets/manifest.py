"""Corpus index: ``metadata.csv`` at an audio root, written by a parallel scan, read fast.

Columns (docs/contracts.md): ``path`` (relative, POSIX), ``duration`` (s), ``sample_rate``
(Hz), ``channels``, ``speaker`` (may be empty), then the extra columns ``size`` (bytes) and
``mtime_ns`` that ``--update`` uses to rescan only new or changed files.

Command line (also ``scripts/make_metadata_csv.py``)::

    python -m restorekit.datasets.manifest --root-dir DIR [--update] [--workers N]

Reading is built for corpora of millions of files: :func:`read_manifest` parses the file with
the csv module into numpy columns and never stats the audio, so a dataset starts in seconds.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from restorekit.errors import DataError, one_line

MANIFEST_NAME = "metadata.csv"
COLUMNS = ("path", "duration", "sample_rate", "channels", "speaker", "size", "mtime_ns")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
# A folder named like the start of the file name is the speaker: LibriTTS(-R)
# ``train-clean-100/19/198/19_198_000000_000000.wav`` and VCTK ``p225/p225_001_mic1.flac``.
DEFAULT_SPEAKER_PATTERN = r"(?:^|/)(?P<speaker>[^/_]+)/(?:[^/]+/)*(?P=speaker)_[^/]*$"


@dataclass
class ScanReport:
    """What a scan did: rows written, files (re)read, reused, unreadable, and stale rows dropped."""

    path: Path
    rows: int = 0
    scanned: int = 0
    reused: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.path}: {self.rows} files indexed ({self.scanned} read, {self.reused} unchanged), "
            f"{len(self.unreadable)} unreadable skipped, {len(self.stale)} stale rows dropped"
        )


def find_audio(root: Path) -> list[str]:
    """Relative POSIX paths of every audio file under ``root`` (hidden files skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(AUDIO_SUFFIXES):
                found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
    return sorted(found)


def speaker_of(rel_path: str, pattern: re.Pattern[str] | None) -> str:
    """The ``speaker`` group of ``pattern`` in ``rel_path``, or '' when it does not match."""
    if pattern is None:
        return ""
    m = pattern.search(rel_path)
    return m.group("speaker") if m and "speaker" in m.groupdict() else ""


def _probe(root: Path, rel: str) -> tuple[str, list[str] | None, str]:
    """(rel, row without speaker, error): the header of one file, never raising."""
    full = root / rel
    try:
        st = full.stat()
        inf = sf.info(str(full))
        if inf.frames <= 0 or inf.samplerate <= 0:
            return rel, None, "contains no samples"
        return rel, [rel, f"{inf.frames / inf.samplerate:.6f}", str(inf.samplerate), str(inf.channels),
                     "", str(st.st_size), str(st.st_mtime_ns)], ""
    except Exception as exc:  # libsndfile/OS errors of any kind: reported, never fatal
        return rel, None, one_line(exc) or type(exc).__name__


def _old_rows(manifest: Path) -> dict[str, list[str]]:
    """Existing rows by path (for --update); rows missing the size/mtime columns count as changed."""
    if not manifest.is_file():
        return {}
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if tuple(header[: len(COLUMNS)]) != COLUMNS:
            return {}
        return {row[0]: row for row in reader if len(row) >= len(COLUMNS)}


def _unchanged(root: Path, rel: str, old: list[str] | None) -> bool:
    if old is None:
        return False
    try:
        st = (root / rel).stat()
    except OSError:
        return False
    return old[5] == str(st.st_size) and old[6] == str(st.st_mtime_ns)


def write_metadata(
    root: str | Path,
    update: bool = False,
    workers: int | None = None,
    speaker_pattern: str | None = DEFAULT_SPEAKER_PATTERN,
    progress: bool = False,
) -> ScanReport:
    """Scan ``root`` for audio and write ``root/metadata.csv`` atomically.

    Unreadable files are skipped and listed in the report. With ``update`` an existing
    manifest's rows are reused for files whose size and mtime are unchanged; rows for files
    that are gone are dropped and reported as stale.
    """
    root = _check_root(root)
    out = root / MANIFEST_NAME
    report = ScanReport(out)
    old = _old_rows(out) if update else {}
    files = find_audio(root)
    on_disk = set(files)
    report.stale = sorted(p for p in old if p not in on_disk)
    todo = [rel for rel in files if not _unchanged(root, rel, old.get(rel))]
    pending = set(todo)
    rows = {rel: old[rel] for rel in files if rel not in pending}
    report.reused = len(rows)
    rows.update(_scan(root, todo, workers, report, progress))
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    ordered = [rows[rel] for rel in files if rel in rows]
    for row in ordered:
        row[4] = speaker_of(row[0], pattern)
    _write_rows(out, ordered)
    report.rows = len(ordered)
    return report


def _scan(root: Path, todo: list[str], workers: int | None, report: ScanReport, progress: bool) -> dict:
    # Threads, not processes: libsndfile releases the GIL while it reads headers, and the work
    # is dominated by file-system latency (network file systems especially).
    workers = workers or min(32, (os.cpu_count() or 1) * 4)
    rows: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda rel: _probe(root, rel), todo)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(todo), desc=f"scanning {root}", unit="file")
        for rel, row, err in results:
            if row is None:
                report.unreadable.append((rel, err))
            else:
                rows[rel] = row
    report.scanned = len(rows)
    return rows


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"audio root {root} does not exist or is not a folder; check the path")
    return root.resolve()


def _write_rows(out: Path, rows: Iterable[Sequence[str]]) -> None:
    """The table at ``out``, whole or not at all (a previous file stays); DataError if the disk refuses."""
    try:
        _write_atomically(out, rows)
    except OSError as exc:  # a read-only corpus or a full disk: the user's to fix, not a bug
        raise DataError(
            f"{out}: could not be written ({one_line(exc)}); the index is kept at the audio root: make "
            f"{out.parent} writable or free space there, then rerun "
            f"scripts/make_metadata_csv.py --root-dir {out.parent}"
        ) from exc


def _write_atomically(out: Path, rows: Iterable[Sequence[str]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Manifest:
    """One audio root's index as columns: paths, durations (s) and sample rates (Hz).

    Paths live in one UTF-8 byte buffer with offsets rather than a million Python strings:
    DataLoader workers are forked, and touching Python objects (refcounts) copies their pages
    into every worker (pytorch/pytorch#13246); numpy buffers stay shared.
    """

    def __init__(self, root: Path, blob: np.ndarray, starts: np.ndarray, ends: np.ndarray, durations: np.ndarray,
                 sample_rates: np.ndarray) -> None:
        self.root, self._blob, self._starts, self._ends = root, blob, starts, ends
        self.durations, self.sample_rates = durations, sample_rates

    @classmethod
    def from_paths(cls, root: Path, paths: Sequence[str], durations: np.ndarray, rates: np.ndarray) -> Manifest:
        encoded = [p.encode("utf-8") for p in paths]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        return cls(root, np.frombuffer(b"".join(encoded), dtype=np.uint8), ends - lengths, ends, durations, rates)

    def __len__(self) -> int:
        return len(self._ends)

    def path(self, i: int) -> str:
        return self._blob[int(self._starts[i]): int(self._ends[i])].tobytes().decode("utf-8")


def read_manifest(root: str | Path, build_missing: bool = True) -> Manifest:
    """The manifest of ``root``, written first (a full scan) if ``build_missing`` and absent."""
    root = _check_root(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        if not build_missing:
            raise DataError(f"{path} not found; build it with: python scripts/make_metadata_csv.py --root-dir {root}")
        report = write_metadata(root)
        print(report.summary(), file=sys.stderr)
    data = path.read_bytes()
    _check_header(path, data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r").split(","))
    return _parse_fast(root, data) or _parse_csv(root, path)


def _parse_fast(root: Path, data: bytes) -> Manifest | None:
    """Vectorised parse of a plain file (no quotes, one field count): ~20x faster than the csv module.

    Written by hand: neither numpy nor the csv module parses a million mixed-type rows in well
    under a second, and pandas is not a dependency. Returns None (use the csv module) whenever
    the file is not plain, so quoted paths and odd files still read correctly.
    """
    if b'"' in data or b"\r" in data:
        return None
    a = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(a == 10)
    if len(newlines) == 0:
        return None
    ncommas = data[: newlines[0]].count(b",")
    stops = newlines[1:] if data.endswith(b"\n") else np.append(newlines[1:], len(data))
    starts = np.append(newlines[0] + 1, newlines[1:][: len(stops) - 1] + 1)
    commas = np.flatnonzero(a[newlines[0]:] == 44) + newlines[0]
    if ncommas < 4 or len(commas) != len(stops) * ncommas:
        return None
    c = commas.reshape(len(stops), ncommas)
    if len(stops) and not ((c[:, 0] > starts).all() and (c[:, -1] < stops).all()):
        return None  # a blank line or a row with the wrong field count
    durations = _numbers(a, c[:, 0] + 1, c[:, 1] + 1)
    rates = _numbers(a, c[:, 1] + 1, c[:, 2] + 1)
    if durations is None or rates is None:
        return None
    # The paths stay where they are in the file's bytes: only their offsets are kept.
    return Manifest(root, a, starts, c[:, 0].copy(), durations, rates.astype(np.int64))


def _gather(a: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte ranges [starts, stops) of ``a`` concatenated, and their end offsets."""
    lengths = stops - starts
    ends = np.cumsum(lengths)
    idx = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)
    return a[idx], ends


def _numbers(a: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray | None:
    # Each range ends with its comma, so the gathered bytes are "1.5,2.25,..." for numpy's parser.
    text, _ = _gather(a, starts, stops)
    if not len(starts):
        return np.zeros(0)
    values = np.fromstring(text.tobytes(), dtype=np.float64, sep=",")
    return values if len(values) == len(starts) else None


def _parse_csv(root: Path, path: Path) -> Manifest:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        cols = list(zip(*reader))
    if not cols:
        return Manifest.from_paths(root, [], np.zeros(0), np.zeros(0, dtype=np.int64))
    try:
        durations = np.asarray(cols[1], dtype=np.float64)
        rates = np.asarray(cols[2], dtype=np.float64).astype(np.int64)
    except (ValueError, IndexError) as exc:
        raise DataError(
            f"{path}: a duration or sample_rate value is not a number ({exc}); "
            f"rebuild it with scripts/make_metadata_csv.py --root-dir {root}"
        ) from exc
    return Manifest.from_paths(root, cols[0], durations, rates)


def _check_header(path: Path, header: list[str] | None) -> None:
    if header is None or tuple(header[:4]) != COLUMNS[:4]:
        raise DataError(
            f"{path}: not a restorekit metadata.csv (header {header!r}, expected it to start with "
            f"{', '.join(COLUMNS[:5])}); rebuild it with scripts/make_metadata_csv.py --root-dir {path.parent}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write or update DIR/metadata.csv; prints a summary and unreadable files."""
    parser = argparse.ArgumentParser(description="Index the audio under a folder into DIR/metadata.csv.")
    parser.add_argument("--root-dir", required=True, help="audio root to scan recursively")
    parser.add_argument("--update", action="store_true", help="rescan only new or changed files")
    parser.add_argument("--workers", type=int, default=None, help="parallel header readers")
    parser.add_argument("--speaker-pattern", default=DEFAULT_SPEAKER_PATTERN,
                        help="regex with a (?P<speaker>...) group, searched in each relative path; '' for none")
    args = parser.parse_args(argv)
    try:
        report = write_metadata(args.root_dir, args.update, args.workers, args.speaker_pattern or None,
                                progress=sys.stderr.isatty())
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rel, err in report.unreadable:
        print(f"unreadable, skipped: {rel}: {err}", file=sys.stderr)
    for rel in report.stale:
        print(f"stale row dropped (file is gone): {rel}", file=sys.stderr)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
