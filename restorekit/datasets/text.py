"""Transcripts: the text of each audio file of a corpus, by relative path (Miipher-1's text input).

``transcript_lookup(spec, root)`` builds the lookup a dataset's ``transcripts`` argument names:

- ``null``: no transcripts (items carry no ``text``).
- ``libritts_r``: ``<stem>.normalized.txt`` beside each audio file (LibriTTS / LibriTTS-R).
- ``vctk``: ``txt/<speaker>/<utterance>.txt`` (VCTK 0.92: ``root`` is ``wav48_silence_trimmed`` or
  the corpus folder holding it; the ``_mic1``/``_mic2`` suffix of an audio stem is dropped).
- ``demo``: the sentence the demo corpus synthesized for each file.
- ``csv:<path>``: a ``name,text`` CSV (a ``name,text`` header line is optional; quote texts that
  hold commas). ``name`` is the audio file's path relative to the root, with or without its
  suffix, or just its stem.
- a dict ``{source: libritts_r|vctk|demo|csv, path: <csv path>, failed_lists: [<txt paths>]}``:
  ``failed_lists`` (LibriTTS-R's published lists of failed restorations,
  ``libritts_r_failed_speech_restoration_examples/*.txt``: one file path or utterance id per
  line) names utterances to leave out of the dataset, whatever their source.
"""
from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.errors import ConfigError, DataError

SOURCES = ("libritts_r", "vctk", "demo", "csv")
_MIC_SUFFIXES = ("_mic1", "_mic2")
_SPEC_KEYS = {"source", "path", "failed_lists"}


def _stem(rel: str) -> str:
    """'a/b/84_121123_000007_000001.wav' -> '84_121123_000007_000001' (last suffix dropped)."""
    name = rel.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _no_suffix(rel: str) -> str:
    rel = rel.replace("\\", "/").removeprefix("./")
    head, _, name = rel.rpartition("/")
    name = name.rsplit(".", 1)[0] if "." in name else name
    return f"{head}/{name}" if head else name


class Transcripts:
    """Text of audio files under one root: ``text(rel)`` (None where there is none), ``has_text(rels)``,
    and ``excluded(rels)`` (utterances a failed-restoration list names)."""

    source = ""

    def __init__(self, root: Path, failed: set[str] | None = None) -> None:
        self.root = Path(root)
        self.failed = failed or set()

    def text(self, rel: str) -> str | None:
        raise NotImplementedError

    def has_text(self, rels: Iterable[str]) -> np.ndarray:
        return np.array([self.text(r) is not None for r in rels], dtype=bool)

    def excluded(self, rels: Iterable[str]) -> np.ndarray:
        return np.array([_stem(r) in self.failed for r in rels], dtype=bool)


class TableTranscripts(Transcripts):
    """Texts from a table keyed by relative path without suffix, or by stem (CSV, demo sentences)."""

    def __init__(self, root: Path, table: Mapping[str, str], source: str, failed: set[str] | None = None) -> None:
        super().__init__(root, failed)
        self.table, self.source = dict(table), source

    def text(self, rel: str) -> str | None:
        key = _no_suffix(rel)
        return self.table[key] if key in self.table else self.table.get(_stem(rel))


class LibriTTSTranscripts(Transcripts):
    """``<stem>.normalized.txt`` beside each audio file, read when an item asks for it."""

    source = "libritts_r"

    def _path(self, rel: str) -> Path:
        return self.root / (_no_suffix(rel) + ".normalized.txt")

    def text(self, rel: str) -> str | None:
        path = self._path(rel)
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None

    def has_text(self, rels: Iterable[str]) -> np.ndarray:
        # One listing per folder, not one stat per file: a corpus of 10^5 files checks in seconds.
        listings: dict[Path, set[str]] = {}
        out = []
        for rel in rels:
            path = self._path(rel)
            if path.parent not in listings:
                listings[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
            out.append(path.name in listings[path.parent])
        return np.array(out, dtype=bool)


class VCTKTranscripts(Transcripts):
    """``txt/<speaker>/<utterance>.txt``, found beside the audio folder or inside the root."""

    source = "vctk"

    def __init__(self, root: Path, failed: set[str] | None = None) -> None:
        super().__init__(root, failed)
        found = [d for d in (self.root / "txt", self.root.parent / "txt") if d.is_dir()]
        if not found:
            raise DataError(f"transcripts vctk: no txt folder in {self.root} or beside it ({self.root.parent}); "
                            "VCTK keeps its transcripts in txt/<speaker>/<utterance>.txt next to wav48*/")
        self.txt_dir = found[0]

    def text(self, rel: str) -> str | None:
        stem = _stem(rel)
        for mic in _MIC_SUFFIXES:
            stem = stem.removesuffix(mic)
        path = self.txt_dir / stem.split("_", 1)[0] / f"{stem}.txt"
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def transcript_lookup(spec: Any, root: str | Path, where: str = "transcripts") -> Transcripts | None:
    """The transcript lookup ``spec`` names for audio files under ``root`` (None for ``null``)."""
    if spec is None:
        return None
    source, path, failed_lists = _parse_spec(spec, where)
    failed = read_failed_lists(failed_lists, where)
    root = Path(root)
    if source == "libritts_r":
        return LibriTTSTranscripts(root, failed)
    if source == "vctk":
        return VCTKTranscripts(root, failed)
    if source == "demo":
        from restorekit.datasets.demo import utterances  # demo imports the datasets that import this

        return TableTranscripts(root, {stem: text for _, _, stem, text in utterances()}, "demo", failed)
    return TableTranscripts(root, read_transcript_csv(path, where), "csv", failed)


def _parse_spec(spec: Any, where: str) -> tuple[str, str | None, list[str]]:
    if isinstance(spec, str):
        source, _, path = spec.partition(":")
        spec = {"source": source, **({"path": path} if path else {})}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be null, one of {', '.join(SOURCES)}, 'csv:<path>' or a dict "
                          f"{{source, path, failed_lists}}; got {spec!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    source, path = spec.get("source"), spec.get("path")
    if unknown or source not in SOURCES:
        raise ConfigError(f"{where}: source must be one of {', '.join(SOURCES)} (got {source!r})"
                          + (f" and the keys are {', '.join(sorted(_SPEC_KEYS))} (unknown: {', '.join(unknown)})"
                             if unknown else ""))
    if (source == "csv") != bool(path):
        raise ConfigError(f"{where}: " + ("source csv needs path: the name,text CSV (or write 'csv:<path>')"
                                          if source == "csv" else f"path applies to source csv only, not {source}"))
    return source, path, list(spec.get("failed_lists") or [])


def read_failed_lists(paths: list[str], where: str = "transcripts") -> set[str]:
    """Utterance ids (file stems) named in LibriTTS-R's failed-restoration lists (a path or id per line)."""
    failed: set[str] = set()
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise DataError(f"{where}.failed_lists: {path} does not exist; give the .txt files of "
                            "libritts_r_failed_speech_restoration_examples")
        failed.update(_stem(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return failed


def read_transcript_csv(path: str | Path, where: str = "transcripts") -> dict[str, str]:
    """``name,text`` rows as {name without audio suffix: text}; DataError naming the line of a bad row."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{where}: transcript CSV {path} does not exist; write one with a name,text row per file")
    table: dict[str, str] = {}
    lines: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for row in reader:
            line = reader.line_num
            if line == 1 and [c.strip().lower() for c in row] == ["name", "text"]:
                continue
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{where}: {path} line {line}: expected 2 fields name,text with both set, got "
                                f"{len(row)} field(s) {row!r}; quote a text that holds commas (\"a, b\")")
            key = _no_suffix(row[0].strip())
            if key in table:
                raise DataError(f"{where}: {path} line {line}: {row[0].strip()!r} is listed again (first on line "
                                f"{lines[key]}); keep one transcript per file")
            table[key], lines[key] = row[1].strip(), line
    return table


MISSING_TEXT = ("error", "skip")
LIST_AT_MOST = 5


class ItemText:
    """What a dataset's ``transcripts``/``phonemes``/``language``/``missing_text`` arguments add to items.

    ``keep(root, rels)`` filters a corpus once (failed-restoration lists out; files without a
    transcript an error naming them, or left out with ``missing_text: skip``); ``fields(root,
    rel)`` gives ``text`` (str) and, with ``phonemes``, ``phonemes`` (LongTensor (L,), ids in
    ``restorekit.text.PHONEME_SYMBOLS``, eSpeak NG IPA of the text in ``language``).
    """

    def __init__(self, spec: Any, phonemes: bool, language: str, missing_text: str, where: str) -> None:
        if missing_text not in MISSING_TEXT:
            raise ConfigError(f"{where}.missing_text must be one of {', '.join(MISSING_TEXT)} (what to do with a "
                              f"file that has no transcript), got {missing_text!r}")
        if phonemes and spec is None:
            raise ConfigError(f"{where}.phonemes: true needs transcripts (the text to phonemize); set transcripts "
                              f"to one of {', '.join(SOURCES)}, 'csv:<path>', or phonemes: false")
        if spec is not None:
            _parse_spec(spec, f"{where}.transcripts")  # a bad spec fails at build, before any root is read
        self.spec, self.phonemes, self.language, self.missing_text = spec, bool(phonemes), language, missing_text
        self.where = where
        self.lookups: dict[Path, Transcripts] = {}

    @property
    def active(self) -> bool:
        return self.spec is not None

    def _lookup(self, root: Path) -> Transcripts:
        if root not in self.lookups:
            self.lookups[root] = transcript_lookup(self.spec, root, f"{self.where}.transcripts")
        return self.lookups[root]

    def keep(self, root: Path, rels: list[str]) -> np.ndarray:
        """Which of ``rels`` (paths under ``root``) to keep: not in a failed list, with a transcript."""
        if not self.active:
            return np.ones(len(rels), dtype=bool)
        lookup = self._lookup(root)
        keep, has = ~lookup.excluded(rels), lookup.has_text(rels)
        missing = [r for r, lacks in zip(rels, keep & ~has) if lacks]
        if missing and self.missing_text == "error":
            more = f" and {len(missing) - LIST_AT_MOST} more" if len(missing) > LIST_AT_MOST else ""
            raise DataError(f"{self.where}: no {lookup.source} transcript for {len(missing)} file(s) under {root}: "
                            f"{', '.join(missing[:LIST_AT_MOST])}{more}; add their transcripts, or set "
                            "missing_text: skip to leave them out")
        if missing:
            print(f"warning: {self.where}: leaving out {len(missing)} file(s) under {root} without a "
                  f"{lookup.source} transcript (missing_text: skip)", file=sys.stderr)
        return keep & has

    def fields(self, root: Path, rel: str) -> dict[str, Any]:
        """``text`` and (with ``phonemes``) ``phonemes`` of one file; {} when transcripts are off."""
        if not self.active:
            return {}
        text = self._lookup(root).text(rel)
        if text is None:  # removed from disk since the dataset was built
            raise DataError(f"{self.where}: the transcript of {root / rel} is gone; restore it or rebuild the dataset")
        out: dict[str, Any] = {"text": text}
        if self.phonemes:
            import torch

            from restorekit.text import phoneme_ids, phonemize

            ids = phoneme_ids(phonemize([text], self.language)[0])
            out["phonemes"] = torch.tensor(ids, dtype=torch.long)
        return out
