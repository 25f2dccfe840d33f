"""Corpus recipes: download (resumable, checksum-verified), extract, index with metadata.csv.

Used by ``scripts/prepare_<corpus>.py``. Each recipe names its archives per subset and the
folders to index after extraction (found by name anywhere under the output folder, so a
corpus that nests them differently still works). Already-extracted archives are skipped.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from restorekit.datasets.manifest import DEFAULT_SPEAKER_PATTERN, write_metadata
from restorekit.errors import DataError, one_line

CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One downloadable file; ``sha256``/``md5`` verify it when known (or given with --checksum)."""

    url: str
    sha256: str | None = None
    md5: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Recipe:
    """A corpus: archives per subset, the folder names to index per subset, how speakers are named."""

    name: str
    archives: dict[str, tuple[Archive, ...]]
    index: dict[str, tuple[str, ...]]
    default_subsets: tuple[str, ...]
    speaker_pattern: str = DEFAULT_SPEAKER_PATTERN
    notes: str = ""


def download(archive: Archive, dest_dir: Path, checksum: str | None = None) -> Path:
    """Fetch ``archive`` into ``dest_dir``, resuming a partial ``.part`` file with an HTTP Range request."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / archive.filename
    if final.is_file():
        return final
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(archive.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            resumed = have and resp.status == 206  # a server that ignores Range sends it all again
            with open(part, "ab" if resumed else "wb") as fh:
                shutil.copyfileobj(resp, fh, CHUNK)
    except OSError as exc:
        raise DataError(f"download of {archive.url} failed ({exc}); run again to resume from "
                        f"{part.stat().st_size if part.exists() else 0} bytes, or place {archive.filename} "
                        f"in {dest_dir} yourself") from exc
    verify(part, archive, checksum, final.name)
    part.replace(final)
    return final


def verify(path: Path, archive: Archive, checksum: str | None = None, shown: str | None = None) -> str:
    """Check the file against ``checksum`` ('sha256:HEX' / 'md5:HEX') or the recipe's; returns its sha256."""
    kind, expected = _expected(archive, checksum)
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for d in digests.values():
                d.update(block)
    if expected and digests[kind].hexdigest() != expected.lower():
        path.unlink()
        raise DataError(f"{shown or path.name}: {kind} is {digests[kind].hexdigest()}, expected {expected}; the "
                        "download is corrupt or the file changed upstream and was deleted; run again to re-download")
    return digests["sha256"].hexdigest()


def _expected(archive: Archive, checksum: str | None) -> tuple[str, str | None]:
    if checksum:
        kind, _, value = checksum.partition(":")
        if kind not in ("sha256", "md5") or not value:
            raise DataError(f"checksum {checksum!r} must look like sha256:HEX or md5:HEX")
        return kind, value
    return ("sha256", archive.sha256) if archive.sha256 else ("md5", archive.md5)


def extract(path: Path, out_dir: Path) -> None:
    """Unpack a tar (any compression) or zip into ``out_dir`` once; a marker file records success."""
    marker = out_dir / f".extracted-{path.name}"
    if marker.is_file():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(path):
            _extract_zip(path, out_dir)
        else:
            with tarfile.open(path) as tar:
                tar.extractall(out_dir, filter="data")  # refuses absolute paths and ../ escapes
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        reason = one_line(exc)
        raise DataError(f"{path}: cannot be extracted ({reason}); delete it and run again to re-download") from exc
    marker.write_text("ok\n")


def _extract_zip(path: Path, out_dir: Path) -> None:
    root = out_dir.resolve()
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            if not (root / member).resolve().is_relative_to(root):
                raise DataError(f"{path}: member {member!r} would be written outside {out_dir}; not extracting")
        zf.extractall(out_dir)


def find_folder(out_dir: Path, name: str) -> Path:
    """The folder called ``name`` under ``out_dir`` (shallowest first)."""
    direct = out_dir / name
    if direct.is_dir():
        return direct
    found = sorted((p for p in out_dir.rglob(name) if p.is_dir()), key=lambda p: len(p.parts))
    if not found:
        raise DataError(f"no folder named {name!r} under {out_dir} after extraction; the archive layout "
                        "is not what this recipe expects")
    return found[0]


def prepare(recipe: Recipe, out_dir: Path, subsets: Sequence[str], archives_dir: Path | None = None,
            offline: bool = False, checksums: dict[str, str] | None = None, workers: int | None = None) -> list[Path]:
    """Download (unless ``offline``), extract and index the subsets; returns the indexed folders."""
    archives_dir = archives_dir or out_dir / "archives"
    unknown = [s for s in subsets if s not in recipe.archives]
    if unknown:
        raise DataError(f"{recipe.name}: unknown subset(s) {', '.join(unknown)}; choose from {', '.join(recipe.archives)}")
    indexed = []
    for subset in subsets:
        for archive in recipe.archives[subset]:
            path = _fetch(archive, archives_dir, offline, (checksums or {}).get(archive.filename))
            extract(path, out_dir)
        for name in recipe.index[subset]:
            folder = find_folder(out_dir, name)
            report = write_metadata(folder, update=True, workers=workers, speaker_pattern=recipe.speaker_pattern)
            print(report.summary())
            indexed.append(folder)
    return indexed


def _fetch(archive: Archive, archives_dir: Path, offline: bool, checksum: str | None) -> Path:
    local = archives_dir / archive.filename
    if local.is_file():
        if checksum or archive.sha256 or archive.md5:
            verify(local, archive, checksum)
        return local
    if offline:
        raise DataError(f"{local} not found and --offline was given; download {archive.url} there first")
    print(f"downloading {archive.url} -> {local}", file=sys.stderr)
    path = download(archive, archives_dir, checksum)
    print(f"{path.name}: sha256 {verify(path, archive, checksum)}", file=sys.stderr)
    return path


def main(recipe: Recipe, argv: Sequence[str] | None = None) -> int:
    """Command line shared by every scripts/prepare_<corpus>.py."""
    parser = argparse.ArgumentParser(description=f"Download, extract and index {recipe.name}. {recipe.notes}")
    parser.add_argument("--out-dir", required=True, help="where the corpus is extracted and indexed")
    parser.add_argument("--subsets", nargs="+", default=list(recipe.default_subsets),
                        help=f"any of: {', '.join(recipe.archives)} (default: {' '.join(recipe.default_subsets)})")
    parser.add_argument("--archives-dir", default=None, help="where archives are kept (default OUT/archives)")
    parser.add_argument("--offline", action="store_true", help="use archives already in --archives-dir only")
    parser.add_argument("--checksum", action="append", default=[], metavar="FILE=sha256:HEX",
                        help="expected checksum of an archive (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="parallel header readers when indexing")
    args = parser.parse_args(argv)
    try:
        checksums = dict(_split_checksum(c) for c in args.checksum)
        out = Path(args.out_dir).expanduser()
        folders = prepare(recipe, out, args.subsets, Path(args.archives_dir) if args.archives_dir else None,
                          args.offline, checksums, args.workers)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("indexed: " + " ".join(str(f) for f in folders))
    return 0


def _split_checksum(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise DataError(f"--checksum {item!r} must look like FILE=sha256:HEX")
    return name, value


OPENSLR = "https://www.openslr.org/resources/141"
LIBRITTS_R_SUBSETS = ("dev_clean", "dev_other", "test_clean", "test_other", "train_clean_100",
                      "train_clean_360", "train_other_500")
LIBRITTS_R = Recipe(
    name="LibriTTS-R",
    # failed_lists: the published lists of utterances whose restoration failed (nothing to index);
    # give their .txt files to a dataset's transcripts.failed_lists to leave them out.
    archives={**{s: (Archive(f"{OPENSLR}/{s}.tar.gz"),) for s in LIBRITTS_R_SUBSETS},
              "failed_lists": (Archive(f"{OPENSLR}/libritts_r_failed_speech_restoration_examples.tar.gz"),)},
    index={**{s: (s.replace("_", "-"),) for s in LIBRITTS_R_SUBSETS}, "failed_lists": ()},
    default_subsets=("dev_clean",),
    notes="24 kHz, CC BY 4.0 (openslr.org/141). Subset failed_lists: the lists of failed restorations "
          "(libritts_r_failed_speech_restoration_examples/*.txt) for transcripts.failed_lists.",
)
VCTK = Recipe(
    name="VCTK 0.92",
    archives={"all": (Archive("https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip"),)},
    index={"all": ("wav48_silence_trimmed",)},
    default_subsets=("all",),
    notes="48 kHz FLAC, two microphones per utterance (mic1/mic2), CC BY 4.0.",
)
_VB = "https://datashare.ed.ac.uk/bitstream/handle/10283/2791"
VOICEBANK_DEMAND = Recipe(
    name="VoiceBank-DEMAND",
    archives={
        "train": (Archive(f"{_VB}/clean_trainset_28spk_wav.zip"), Archive(f"{_VB}/noisy_trainset_28spk_wav.zip")),
        "train56": (Archive(f"{_VB}/clean_trainset_56spk_wav.zip"), Archive(f"{_VB}/noisy_trainset_56spk_wav.zip")),
        "test": (Archive(f"{_VB}/clean_testset_wav.zip"), Archive(f"{_VB}/noisy_testset_wav.zip")),
    },
    index={"train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
           "train56": ("clean_trainset_56spk_wav", "noisy_trainset_56spk_wav"),
           "test": ("clean_testset_wav", "noisy_testset_wav")},
    default_subsets=("test",),
    speaker_pattern=r"^(?P<speaker>p\d+)_",
    notes="48 kHz pairs for paired_folders (degraded_dir=noisy_*, clean_dir=clean_*; set sample_rate, e.g. 16000, "
          "to resample on load), CC BY 4.0. VCTK-DEMAND is another name for this corpus (Valentini-Botinhao et al.); "
          "train is the 28-speaker training set, train56 the 56-speaker one.",
)
_DNS = "https://dns4public.blob.core.windows.net/dns4archive/datasets_fullband"
DNS_NOISE = Recipe(
    name="DNS Challenge noise and impulse responses",
    archives={"noise": (Archive(f"{_DNS}/datasets_fullband.noise_fullband.tar.bz2"),),
              "rir": (Archive(f"{_DNS}/datasets_fullband.impulse_responses_000.tar.bz2"),)},
    index={"noise": ("noise_fullband",), "rir": ("impulse_responses",)},
    default_subsets=("noise", "rir"),
    speaker_pattern="",
    notes="48 kHz noises (AudioSet, Freesound, DEMAND) and real/simulated RIRs; see the DNS Challenge licences.",
)
# DAPS (Mysore 2015): one archive of ~15 GiB holding 15 aligned versions of the same read speech (20 speakers x 5
# scripts): clean/ (studio), produced/ (professionally produced), cleanraw/ and 12 device_room/ folders.
# The md5 is the one Zenodo lists for daps.tar.gz, as quoted by two independent public download scripts.
DAPS = Recipe(
    name="DAPS",
    archives={"all": (Archive("https://zenodo.org/records/4660670/files/daps.tar.gz",
                              md5="303c130b7ce2e02b59c7ca5cd595a89c"),)},
    index={"all": ("clean", "produced")},
    default_subsets=("all",),
    speaker_pattern=r"^(?P<speaker>[fm]\d+)_",
    notes="44.1 kHz 16-bit WAV (f1_script1_clean.wav ...), CC BY-NC 4.0 (zenodo.org/records/4660670). For 48 kHz "
          "targets (FINALLY stage 3) set the dataset's sample_rate: 48000: soxr resamples on load (no content "
          "above 22.05 kHz).",
)
