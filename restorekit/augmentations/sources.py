"""Files that degradations draw from (noise recordings, room impulse responses).

A source is a folder (searched recursively for audio files, or indexed by the
``metadata.csv`` at its root when there is one) or a ``metadata.csv`` file itself (format in
docs/contracts.md; read here with the csv module because augmentations sit below datasets).
Decoded files are cached per sample rate, so each file is read and resampled once per
process; an unreadable file is skipped with a warning and counted, and only when none is
left is that an error.
"""
from __future__ import annotations

import csv
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from restorekit.errors import AudioError, ConfigError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
Reader = Callable[[Path, int], np.ndarray]


def list_audio(dirs: Sequence[str] | str, op: str, what: str) -> list[Path]:
    """Every audio file in ``dirs`` (folders or metadata.csv files), sorted, or DataError."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    if not dirs:
        raise ConfigError(f"augmentation '{op}': args.dirs is empty; list the {what} folders or metadata.csv files")
    files: list[Path] = []
    for d in dirs:
        found = _one_source(Path(str(d)).expanduser(), op, what)
        if not found:
            raise DataError(
                f"augmentation '{op}': no {what} audio files ({', '.join(AUDIO_SUFFIXES)}) in {d}; "
                "point args.dirs at a folder that holds them"
            )
        files.extend(found)
    return files


def _one_source(path: Path, op: str, what: str) -> list[Path]:
    if path.is_file() and path.suffix == ".csv":
        return read_metadata(path, op)
    if not path.is_dir():
        raise DataError(
            f"augmentation '{op}': {what} folder {path} does not exist; "
            "fix args.dirs (a folder of audio files or a metadata.csv)"
        )
    if (path / "metadata.csv").is_file():
        return read_metadata(path / "metadata.csv", op)
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_metadata(csv_path: Path, op: str) -> list[Path]:
    """The audio paths a metadata.csv lists, resolved against the csv's folder."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(
                f"augmentation '{op}': {csv_path} has no 'path' column; "
                "rebuild it with scripts/make_metadata_csv.py"
            )
        return [csv_path.parent / row["path"] for row in reader if row.get("path")]


class AudioPool:
    """Files to draw from, decoded lazily and cached per (file, rate) up to ``cache_mb``."""

    def __init__(self, files: list[Path], reader: Reader, op: str, what: str, cache_mb: float = 1024) -> None:
        self.files = list(files)
        self.reader = reader
        self.op, self.what = op, what
        self.bad: list[Path] = []  # skipped files, so a caller (or a test) can count them
        self.cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.cache_bytes, self.max_bytes = 0, int(cache_mb * 2**20)

    def pick(self, rng: np.random.Generator, sr: int) -> tuple[Path, np.ndarray]:
        """A random readable file, decoded at ``sr``; unreadable ones are dropped for good."""
        while self.files:
            i = int(rng.integers(len(self.files)))
            try:
                return self.files[i], self._get(i, sr)
            except AudioError as exc:
                self._drop(i, exc)
        raise DataError(
            f"augmentation '{self.op}': none of the {self.what} files could be read "
            f"({len(self.bad)} skipped, first: {self.bad[0] if self.bad else '-'}); fix or replace them"
        )

    def _drop(self, i: int, exc: Exception) -> None:
        path = self.files.pop(i)
        self.bad.append(path)
        self.cache = OrderedDict(((j - (j > i), s), w) for (j, s), w in self.cache.items() if j != i)
        warnings.warn(
            f"augmentation '{self.op}': skipping unreadable {self.what} file {path} ({exc}); "
            f"{len(self.bad)} skipped so far, {len(self.files)} left",
            stacklevel=3,
        )

    def _get(self, i: int, sr: int) -> np.ndarray:
        key = (i, sr)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        wave = self.reader(self.files[i], sr)
        self.cache[key] = wave
        self.cache_bytes += wave.nbytes
        # least recently used first; a file larger than cache_mb is returned but not kept
        while self.cache_bytes > self.max_bytes:
            self.cache_bytes -= self.cache.popitem(last=False)[1].nbytes
        return wave
