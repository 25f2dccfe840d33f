"""WebDataset tar shards in and out: ``input=corpus/shard-{000000..000009}.tar output_dir=restored/``.

``input=`` names shards as one ``.tar``, a brace pattern, a folder whose top level holds
``.tar`` files, or a ``.txt`` list of them. Each shard is restored into ``output_dir`` under
its own name: every sample keeps its key, its audio members are replaced by the restoration
under the same extension (wav and flac 16-bit; ogg, opus and mp3 re-encoded as such) and all
other members (``.json``, ``.txt``, ...) are copied through byte for byte, in the same order,
with one exception: a ``.json`` header that is an object with a ``sample_rate`` (``make_shards``
writes path, duration and sample_rate) gets the restoration's rate there, so the header describes
the audio beside it; its other keys, their order, and any other JSON stay as they were. This is
the layout ``write_shards`` makes and ``webdataset_shards`` trains from.

A shard is written to ``.<name>.partial`` and renamed when whole, so a finished output shard
is skipped on a rerun and a partial one is done again. A sample whose audio cannot be decoded
or restored is left out of the output shard and recorded as failed; a shard that cannot be
read at all (truncated, not a tar) is recorded as failed and not written. A text-conditioned
export (Miipher-1) reads each sample's transcript from its ``.txt`` member, else from
``transcripts=`` (see ``restorekit.inference_text``).

Read and written with ``tarfile`` rather than webdataset's pipeline: members must be passed
through unchanged (names, order, bytes) and a truncated input must fail its shard, not end the
stream quietly; webdataset reads the output back in the tests.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig

from restorekit.audio import check_finite
from restorekit.errors import AudioError, ConfigError, DataError, RestorekitError, one_line
from restorekit.inference import (
    IoPool,
    Record,
    Summary,
    fit_full_scale_pair,
    read_list,
    refuse_output_inside_input,
    report_failure,
    restore_batch,
)

AUDIO_KEYS = ("flac", "wav", "ogg", "opus", "mp3")  # the extensions webdataset_shards decodes
# Extension -> soundfile (format, subtype) used to encode a restored member in its own format.
ENCODINGS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
             "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}
# webdataset's rule: the key is the member path up to the first dot of its file name.
KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


@dataclass
class ShardJob:
    """One input shard and the output shard it becomes."""

    source: Path
    target: Path


@dataclass
class Sample:
    """One key's members in shard order: ``(TarInfo, bytes)``; ``audio`` maps a member's index to
    its decoded ``(wave, sr)`` or the error that stopped decoding it."""

    key: str
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    audio: dict[int, tuple[np.ndarray, int] | AudioError] = field(default_factory=dict)
    restored: dict[int, tuple[np.ndarray, int, str]] = field(default_factory=dict)  # wave, sr, note
    encoded: dict[int, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------- which shards


def is_shard_input(spec: str) -> bool:
    """Whether ``input=`` names tar shards (a .tar, a brace pattern, a folder or .txt list of .tar)."""
    path = Path(spec)
    if path.suffix.lower() == ".tar" or ("{" in spec and ".tar" in spec):
        return True
    if path.is_dir():
        return any(path.glob("*.tar"))
    if path.suffix.lower() == ".txt" and path.is_file():
        return all(p.suffix.lower() == ".tar" for p in read_list(path))
    return False


def expand_shards(spec: str) -> list[Path]:
    """The shard paths ``spec`` names, in order; a DataError when one is missing."""
    import braceexpand

    path = Path(spec)
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
    elif path.suffix.lower() == ".txt":
        shards = read_list(path)
    else:
        shards = [Path(p) for p in braceexpand.braceexpand(spec)]
    missing = [p for p in shards if not p.is_file()]
    if missing:
        raise DataError(f"input: {len(missing)} shard(s) not found, e.g. {missing[0]}; check the pattern "
                        "(shards-{000..009}.tar) or the folder")
    return shards


def plan_shards(spec: str, output_dir: Path) -> list[ShardJob]:
    """One job per shard: ``output_dir/<shard name>``; refuses clashing names and overwriting inputs."""
    shards = expand_shards(spec)
    refuse_output_inside_input(Path(spec), output_dir)
    jobs, seen = [], {}
    for src in shards:
        target = output_dir / src.name
        if target in seen:
            raise ConfigError(f"shards {seen[target]} and {src} would both be written to {target}; "
                              "give shards distinct names or restore them into separate output folders")
        if target.resolve() == src.resolve():
            raise ConfigError(f"output shard {target} would overwrite input shard {src}; choose another output_dir")
        seen[target] = src
        jobs.append(ShardJob(src, target))
    return jobs


# ---------------------------------------------------------------- restoring a shard


def run_shards(jobs: list[ShardJob], enhancer, cfg: DictConfig, progress=None, screener=None) -> Summary:
    """Restore each shard (skipping finished ones); one record per audio member, or per skipped shard."""
    runner = ShardRunner(enhancer, cfg, screener)
    for job in jobs:
        if job.target.exists() and not cfg.overwrite:
            runner.summary.records.append(Record(str(job.source), str(job.target), "skipped", "output shard exists"))
        else:
            runner.restore(job)
        if progress is not None:
            progress.update(1)
    return runner.summary


class ShardRunner:
    """Streams one shard at a time: the next batch of samples is read and decoded, and the last
    one encoded and written, in ``io_workers`` threads while the model computes."""

    def __init__(self, enhancer, cfg: DictConfig, screener=None) -> None:
        self.enhancer, self.cfg, self.screener = enhancer, cfg, screener
        self.summary = Summary()
        self.texts = None  # transcripts= for a text-conditioned export, read when first needed

    def restore(self, job: ShardJob) -> None:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        partial = job.target.with_name(f".{job.target.name}.partial")  # a rerun overwrites a leftover one
        records: list[Record] = []
        rows: list[dict] = []
        try:
            with tarfile.open(job.source, "r|*") as src, tarfile.open(partial, "w") as dst:
                self._stream(job, src, dst, records, rows)
            os.replace(partial, job.target)
        except (tarfile.TarError, OSError, EOFError) as exc:
            partial.unlink(missing_ok=True)
            reason = f"shard not restored ({type(exc).__name__}: {one_line(exc)}); check that it is a whole tar file"
            self.summary.records.append(Record(str(job.source), str(job.target), "failed", reason))
            return
        self.summary.records.extend(records)
        self.summary.screening.extend(rows)

    def _stream(self, job: ShardJob, src: tarfile.TarFile, dst: tarfile.TarFile, records: list, rows: list) -> None:
        with IoPool(int(self.cfg.io_workers)) as pool:
            writing = None
            for batch in pool.ahead(self._batches(src)):
                self._restore(job, batch, records)
                if writing is not None:
                    writing.result()  # one writer at a time: members go out in input order
                writing = pool.submit(self._write, dst, batch)
                self._screen(job, batch, rows)
            if writing is not None:
                writing.result()

    def _batches(self, src: tarfile.TarFile) -> Iterator[list[Sample]]:
        """Consecutive samples, decoded, holding about ``batch_size`` audio members per batch."""
        batch: list[Sample] = []
        for sample in read_samples(src):
            batch.append(sample)
            if sum(len(s.audio) for s in batch) >= int(self.cfg.batch_size):
                yield batch
                batch = []
        if batch:
            yield batch

    def _restore(self, job: ShardJob, batch: list[Sample], records: list[Record]) -> None:
        todo = [(s, i) for s in batch for i, a in s.audio.items() if not isinstance(a, AudioError)]
        outputs = self._enhance(todo) if todo else []
        for (sample, index), out in zip(todo, outputs):
            failure = self._encode(sample, index, out)
            if failure is not None:
                sample.audio[index] = AudioError(failure)
        for sample in batch:
            for index in sample.audio:
                records.append(self._record(job, sample, index))

    def _enhance(self, todo: list[tuple[Sample, int]]) -> list[tuple[np.ndarray, int] | Exception]:
        if not getattr(self.enhancer, "text_conditioned", False):
            return restore_batch(self.enhancer, [s.audio[i] for s, i in todo], self.cfg)
        return [self._enhance_with_text(sample, *sample.audio[index]) for sample, index in todo]

    def _enhance_with_text(self, sample: Sample, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int] | Exception:
        """A text-conditioned export (Miipher-1): the sample's ``.txt`` member, else ``transcripts=``."""
        try:
            text = sample_text(sample) or self._transcripts().text(sample.key, wave, sr)
        except RestorekitError as exc:  # no transcript: this sample's failure, not the run's
            return exc
        return restore_batch(self.enhancer.with_text(text), [(wave, sr)], self.cfg)[0]

    def _transcripts(self):
        if self.texts is None:
            from restorekit.inference_text import TranscriptSource

            self.texts = TranscriptSource(self.cfg.get("transcripts"))
        return self.texts

    @staticmethod
    def _encode(sample: Sample, index: int, out: tuple[np.ndarray, int] | Exception) -> str | None:
        """Keep the restoration and its bytes in the member's format; the failure's reason if any."""
        if isinstance(out, Exception):
            return report_failure(out)
        wave, sr, note = fit_full_scale_pair(out)
        name = sample.members[index][0].name
        try:
            sample.encoded[index] = encode(wave, sr, member_ext(name))
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            return f"{name}: the restoration cannot be encoded as .{member_ext(name)} at {sr} Hz ({one_line(exc)})"
        sample.restored[index] = (wave, sr, note)
        return None

    def _record(self, job: ShardJob, sample: Sample, index: int) -> Record:
        name = sample.members[index][0].name
        where = (f"{job.source}:{name}", f"{job.target}:{name}")
        failure = sample.audio[index]
        if isinstance(failure, AudioError):
            return Record(*where, "failed", one_line(failure))
        if len(sample.restored) < len(sample.audio):
            return Record(*where, "failed", "another audio member of this sample failed; the sample is left out")
        return Record(*where, "done", sample.restored[index][2])

    def _write(self, dst: tarfile.TarFile, batch: list[Sample]) -> None:
        for sample in batch:
            if len(sample.restored) < len(sample.audio):
                continue  # a failed sample is left out whole: no unrestored audio in a restored shard
            for index, (info, data) in enumerate(sample.members):
                new = sample.encoded.get(index)
                if new is None and member_ext(info.name) == "json":
                    new = restated_header(data, {sr for _, sr, _ in sample.restored.values()})
                if new is not None:
                    data, info = new, copy.copy(info)
                    info.size = len(data)
                dst.addfile(info, io.BytesIO(data))

    def _screen(self, job: ShardJob, batch: list[Sample], rows: list) -> None:
        if self.screener is None:
            return
        for sample in batch:
            for index, (out, out_sr, _) in sample.restored.items():
                wave, sr = sample.audio[index]
                rows.append(self.screener.score(f"{job.source.name}:{sample.key}", wave, sr, out, out_sr,
                                                name=sample.key, transcript=sample_text(sample)))


# ---------------------------------------------------------------- members


def read_samples(src: tarfile.TarFile) -> Iterator[Sample]:
    """The shard's samples in order (members of one key are consecutive, as webdataset writes them),
    audio members decoded; a member without an extension forms a sample of its own."""
    sample: Sample | None = None
    for info in src:
        if not info.isfile():
            continue
        data = src.extractfile(info).read()
        match = KEY_EXT.match(info.name)
        key = match.group(1) if match else info.name
        if sample is None or key != sample.key:
            if sample is not None:
                yield sample
            sample = Sample(key)
        if match and match.group(2).lower() in AUDIO_KEYS:
            sample.audio[len(sample.members)] = decode(data, info.name)
        sample.members.append((info, data))
    if sample is not None:
        yield sample


def restated_header(data: bytes, rates: set[int]) -> bytes | None:
    """A ``.json`` header's bytes with ``sample_rate`` set to the restored audio's rate, or None (keep the
    bytes) when it is not a JSON object with that key, already says it, or the sample's restored audio
    has no single rate."""
    try:
        header = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict) or "sample_rate" not in header or len(rates) != 1:
        return None
    rate = next(iter(rates))
    if header["sample_rate"] == rate:
        return None
    return json.dumps({**header, "sample_rate": int(rate)}).encode()


def member_ext(name: str) -> str:
    match = KEY_EXT.match(name)
    return match.group(2).lower() if match else ""


def sample_text(sample: Sample) -> str | None:
    """The sample's ``.txt`` member (its transcript, where the corpus has one), else None."""
    for info, data in sample.members:
        if member_ext(info.name) == "txt":
            return data.decode("utf-8", errors="replace").strip()
    return None


def decode(data: bytes, name: str) -> tuple[np.ndarray, int] | AudioError:
    """A member's audio as mono float32 at its own rate, or the AudioError saying why not."""
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        # error_string: libsndfile's own words, without the BytesIO object's repr around them
        return AudioError(f"{name}: cannot be decoded as audio ({getattr(exc, 'error_string', None) or one_line(exc)})")
    if wave.size == 0:
        return AudioError(f"{name}: contains no samples")
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    try:
        check_finite(wave, name)
    except AudioError as exc:
        return exc
    return np.ascontiguousarray(wave, dtype=np.float32), int(sr)


def encode(wave: np.ndarray, sr: int, ext: str) -> bytes:
    """Mono audio encoded as a member of extension ``ext`` (16-bit for wav and flac)."""
    fmt, subtype = ENCODINGS[ext]
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()
