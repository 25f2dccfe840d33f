"""`python inference.py exp.ckpt_dir=EXPORT input=PATH output_dir=DIR`: restore a corpus.

``input`` is an audio file, a folder (searched recursively) or a ``.txt`` list of paths (one a
line, relative to the list's folder; ``#`` starts a comment). Outputs mirror the input tree
under ``output_dir``, at the enhancer's rate, in WAV or FLAC. Instead of a restorekit export,
``enhancer=NAME enhancer.args.x=...`` runs any registered enhancer (a baseline).

A run never writes into its input folder, skips outputs that already exist (a killed run
resumes where it stopped; files are written atomically), sorts files by duration and sends
short ones to the enhancer in batches of similar length and long ones as overlapping chunks
(also batched), loads the next batch and writes the last one in ``io_workers`` threads while
the model computes, and under ``torchrun`` gives each process every WORLD_SIZE-th file. A file
that cannot be read or restored is reported and skipped; the run goes on. ``input=`` may also
name WebDataset tar shards (``restorekit.inference_shards``), and ``screen=[...]`` scores every
input and output (``restorekit.screening``). It ends with a summary (done / skipped / failed
with reasons, flagged when screening), printed and written to
``output_dir/inference_summary.json``; the exit status is 1 when a file failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig, OmegaConf

from restorekit import audio
from restorekit.config import apply_overrides, atomic_write_text, save_config
from restorekit.errors import ConfigError, DataError, RestorekitError, one_line

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
SUMMARY_NAME = "inference_summary.json"
GATHER_TIMEOUT = timedelta(days=7)  # how long a finished rank waits for the others (see gather)
DEFAULTS = {
    "exp": {"ckpt_dir": None, "device": "auto"},
    "enhancer": {"name": None, "args": {}},
    "input": "???",
    "output_dir": "???",
    "format": "wav",  # wav | flac
    "overwrite": False,
    # recordings (or chunks of a long one) handed to the enhancer together; null: 8 on CUDA, 1 on the
    # CPU, where a padded batch of 8 ran the full-size Miipher-2 1.85x slower than one file at a time
    # (benchmarks/README.md: the convolutions already fill the cores, padding and masks only add work)
    "batch_size": None,
    "chunk": {"seconds": 30.0, "overlap": 1.0},  # files longer than `seconds` go in chunks
    # a restorekit export's WaveFit passes through torch.compile: equal output, faster once compiled (the
    # first file pays the compile, about a minute on a CPU); for corpus runs (restorekit.models.compiling)
    "compile": False,
    "io_workers": 2,  # threads loading the next batch and writing the last while the model computes; 0: serial
    "transcripts": None,  # CSV name,text: the reference text of each file (screening's wer; a Miipher-1
    # export's text input, where `asr` also works: see restorekit.inference_text)
    "screen": [],  # metrics scoring every input and output: dnsmos, speaker_similarity, wer
    "screen_thresholds": {"dnsmos_drop": 0.0, "speaker_similarity_min": 0.8, "wer_rise": 0.0},
}


@dataclass
class Job:
    """One input file, where its restoration goes, and its name (relative path, no suffix)."""

    source: Path
    target: Path
    name: str = ""


@dataclass
class Record:
    """What happened to one file: status is done, skipped or failed (with a reason)."""

    input: str
    output: str
    status: str
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Summary:
    """Every file's record and, when screening, its row of scores (restorekit.screening)."""

    records: list[Record] = field(default_factory=list)
    screening: list[dict] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    def flagged(self) -> int:
        return sum(bool(row.get("flag")) for row in self.screening)

    def to_json(self) -> str:
        counts = {s: self.count(s) for s in ("done", "skipped", "failed")}
        if self.screening:
            counts["flagged"] = self.flagged()
        records = sorted(self.records, key=lambda r: r.input)
        return json.dumps({**counts, "files": [asdict(r) for r in records]}, indent=2)


# ---------------------------------------------------------------- configuration


def parse_args(argv: Sequence[str]) -> DictConfig:
    """The inference config from ``key=value`` arguments over DEFAULTS."""
    cfg = OmegaConf.create(DEFAULTS)
    apply_overrides(cfg, [_normalise_arg(a) for a in argv])
    for key in ("input", "output_dir"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is not set; pass {key}=PATH (e.g. input=noisy/ output_dir=restored/)")
    if bool(cfg.exp.ckpt_dir) == bool(cfg.enhancer.name):
        raise ConfigError(
            "say what restores the audio: exactly one of exp.ckpt_dir=EXPORT_DIR (a restorekit "
            "export) or enhancer=NAME (a registered enhancer, see `python -m restorekit list enhancers`)"
        )
    if cfg.format not in ("wav", "flac"):
        raise ConfigError(f"format={cfg.format!r} is not supported; use format=wav or format=flac")
    if not isinstance(cfg.compile, bool):
        raise ConfigError(f"compile={cfg.compile!r} must be true or false")
    if cfg.compile and not cfg.exp.ckpt_dir:
        raise ConfigError("compile=true compiles a restorekit export's vocoder (exp.ckpt_dir=EXPORT_DIR); "
                          f"enhancer={cfg.enhancer.name} has nothing to compile; drop compile=true")
    if cfg.batch_size is None:
        from restorekit.enhancers.export import default_batch_size

        cfg.batch_size = default_batch_size(resolve_device(cfg))
    for key in ("batch_size", "io_workers"):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "batch_size" else 0):
            least = 1 if key == "batch_size" else 0
            raise ConfigError(f"{key}={value!r} must be a whole number >= {least} (e.g. {key}={DEFAULTS[key] or 8})")
    return cfg



def _normalise_arg(arg: str) -> str:
    # `enhancer=NAME` is shorthand for the node's name; enhancer.args.* are free-form.
    key = arg.split("=", 1)[0]
    if key == "enhancer":
        return "enhancer.name=" + arg.split("=", 1)[1]
    if key.startswith("enhancer.args."):
        return "+" + arg
    return arg


def build_enhancer(cfg: DictConfig):
    """The enhancer the config selects (a restorekit export when exp.ckpt_dir is set)."""
    from restorekit.enhancers import ENHANCERS

    if cfg.exp.ckpt_dir:  # enhancer.args.* (output_peak, silence_dbfs, chunk_seconds, ...) apply to it too
        node = cfg.enhancer.get("args")
        extra = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        # The run's batch_size is also the export's pieces per forward pass, unless enhancer.args says otherwise.
        args = {"batch_size": int(cfg.batch_size), **({"compile": True} if cfg.compile else {}), **extra,
                "path": str(cfg.exp.ckpt_dir), "device": resolve_device(cfg)}
        return ENHANCERS.build({"name": "restorekit", "args": args}, where="exp.ckpt_dir")
    return ENHANCERS.build(cfg.enhancer, where="enhancer")


def build_screener(cfg: DictConfig):
    """The screener ``screen=[...]`` asks for, or None when it is empty."""
    if not cfg.screen:
        return None
    from restorekit.screening import Screener

    return Screener(OmegaConf.to_container(cfg.screen, resolve=True),
                    OmegaConf.to_container(cfg.screen_thresholds, resolve=True), cfg.transcripts)


def resolve_device(cfg: DictConfig) -> str:
    """``auto``: this process's GPU under torchrun (LOCAL_RANK) when there is one, else cpu."""
    import torch

    if cfg.exp.device != "auto":
        device = str(cfg.exp.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"exp.device is '{device}' but no CUDA device is visible; use exp.device=cpu or auto")
        return device

    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- the file plan


def find_inputs(spec: Path) -> tuple[list[Path], Path]:
    """Input files and the root their relative paths are taken from."""
    if not spec.exists():
        raise DataError(f"input {spec} does not exist; pass an audio file, a folder, a .txt list or .tar shards")
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataError(f"input folder {spec} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return files, spec
    if spec.suffix.lower() == ".txt":
        files = read_list(spec)
        return files, Path(os.path.commonpath([str(p.parent) for p in files]))
    return [spec], spec.parent


def read_list(spec: Path) -> list[Path]:
    """The paths a ``.txt`` list names (one a line, relative to the list, ``#`` comments)."""
    lines = [ln.split("#", 1)[0].strip() for ln in spec.read_text(encoding="utf-8").splitlines()]
    files = [(spec.parent / ln).resolve() for ln in lines if ln]
    if not files:
        raise DataError(f"input list {spec} names no files; write one audio path per line")
    return files


def plan(spec: Path, output_dir: Path, fmt: str) -> list[Job]:
    """One job per input file; outputs mirror the tree below the input root."""
    files, root = find_inputs(spec)
    refuse_output_inside_input(spec, output_dir)
    jobs = [Job(f, output_dir / f.relative_to(root).with_suffix(f".{fmt}"),
                f.relative_to(root).with_suffix("").as_posix()) for f in files]
    _refuse_duplicate_targets(jobs)
    sources = {j.source.resolve() for j in jobs}
    clash = next((j for j in jobs if j.target.resolve() in sources), None)
    if clash is not None:
        raise ConfigError(
            f"output {clash.target} would overwrite input {clash.source}; choose an output_dir "
            "outside the input's folder"
        )
    return jobs


def _refuse_duplicate_targets(jobs: list[Job]) -> None:
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise ConfigError(
                f"inputs {seen[job.target]} and {job.source} would both be written to {job.target}; "
                "rename one of them or restore them from separate .txt lists"
            )
        seen[job.target] = job.source


def refuse_output_inside_input(spec: Path, output_dir: Path) -> None:
    """Writing into the input folder would mix outputs with inputs (and restore them next run)."""
    if not spec.is_dir():
        return
    inp, out = spec.resolve(), output_dir.resolve()
    if out == inp or inp in out.parents:
        raise ConfigError(
            f"output_dir {output_dir} is inside the input folder {spec}; outputs would mix with "
            "inputs and be restored again on the next run. Choose an output_dir outside it"
        )


def shard(jobs: list) -> tuple[list, int, int]:
    """This process's share under torchrun: every WORLD_SIZE-th job (file or tar shard) from RANK on."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return jobs[rank::world], rank, world


def duration(path: Path) -> float:
    """Seconds in ``path`` from its header (soundfile.info, no decoding); 0 when unreadable
    (the file then fails, with its reason, when it is loaded)."""
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - any unreadable header: the load reports why
        return 0.0


def bucket(jobs: list[Job], batch_size: int, chunk_seconds: float) -> list[list[Job]]:
    """Jobs sorted by duration; short ones in batches of ``batch_size`` similar lengths (little
    padding, at most ``batch_size x chunk_seconds`` of audio), each long one alone (its chunks
    are batched when it is restored)."""
    timed = sorted(((duration(j.source), i) for i, j in enumerate(jobs)))  # index: ties keep input order
    short = [jobs[i] for d, i in timed if d <= chunk_seconds]
    batches = [short[k:k + batch_size] for k in range(0, len(short), batch_size)]
    return batches + [[jobs[i]] for d, i in timed if d > chunk_seconds]


# ---------------------------------------------------------------- threads for I/O


class IoPool:
    """Runs loading and writing in ``workers`` threads beside the model (0: inline, serially).

    Threads suffice: decoding (libsndfile), resampling (soxr) and file writes release the GIL.
    Results and exceptions (KeyboardInterrupt too) come back through futures, in the caller's thread.
    """

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="restorekit-io") if workers > 0 else None

    def __enter__(self) -> IoPool:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: Callable, *args) -> Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed back through the future, as a thread would
            future.set_exception(exc)
        return future

    def ahead(self, items: Iterable) -> Iterator:
        """``items``, each next one produced in a thread while the caller works on this one."""
        if self.pool is None:  # serial: produce each item only when the caller asks for it
            yield from items
            return
        it, end = iter(items), object()
        pending = self.submit(next, it, end)
        while (item := pending.result()) is not end:
            pending = self.submit(next, it, end)
            yield item


# ---------------------------------------------------------------- processing


Restored = tuple[np.ndarray, int]


def restore_batch(enhancer, items: list[Restored], cfg: DictConfig) -> list[Restored | Exception]:
    """Each ``(wave, sr)`` restored, or the exception that stopped it: the batch at once, and when
    that fails each item again alone, so one bad file never sinks its batch."""
    chunk = cfg.chunk
    failure = None
    try:
        return enhance_recordings(enhancer, items, float(chunk.seconds), float(chunk.overlap), int(cfg.batch_size))
    except Exception as exc:  # noqa: BLE001 - one bad file must not end the run
        failure = exc
    # Retried outside the `except`: inside it every later file's traceback would chain to this error.
    if len(items) == 1:
        return [failure]
    return [restore_batch(enhancer, [item], cfg)[0] for item in items]


def report_failure(exc: Exception) -> str:
    """The reason recorded for a file the enhancer failed on; a bug also prints its traceback."""
    if not isinstance(exc, RestorekitError):
        traceback.print_exception(exc, file=sys.stderr)
    return f"{type(exc).__name__}: {one_line(exc)}"


class Runner:
    """Restores jobs batch by batch (short files bucketed by duration, a long file's chunks), with
    the next batch loaded and the last one written in ``io_workers`` threads meanwhile."""

    def __init__(self, enhancer, cfg: DictConfig, progress=None, screener=None) -> None:
        self.enhancer = enhancer
        self.cfg = cfg
        self.progress = progress
        self.screener = screener
        self.summary = Summary()
        self.texts = None  # a text-conditioned export (Miipher-1) reads each file's transcript
        if getattr(enhancer, "text_conditioned", False):
            from restorekit.inference_text import TranscriptSource

            self.texts = TranscriptSource(cfg.get("transcripts"))

    def run(self, jobs: list[Job]) -> Summary:
        todo = []
        for job in jobs:
            if job.target.exists() and not self.cfg.overwrite:
                self._record(job, "skipped", "output exists")
            else:
                todo.append(job)
        batches = bucket(todo, int(self.cfg.batch_size), float(self.cfg.chunk.seconds))
        with IoPool(int(self.cfg.io_workers)) as io:
            writes: list[Future] = []
            for loaded, unreadable in io.ahead(self._load(batch) for batch in batches):
                results = self._restore(loaded, unreadable)
                self._finish(writes)  # the previous batch's files, written while this one computed
                writes = [io.submit(self._write, *result) for result in results]
                self._screen(loaded, results)
            self._finish(writes)
        return self.summary

    def _load(self, batch: list[Job]) -> tuple[list[tuple[Job, np.ndarray, int]], list[tuple[Job, Exception]]]:
        """The batch's files loaded, and those that could not be (recorded by the caller's thread)."""
        loaded, unreadable = [], []
        for job in batch:
            try:
                loaded.append((job, *audio.load(job.source)))
            except RestorekitError as exc:
                unreadable.append((job, exc))
        return loaded, unreadable

    def _restore(self, loaded: list[tuple[Job, np.ndarray, int]], unreadable: list[tuple[Job, Exception]]
                 ) -> list[tuple[Job, np.ndarray, int, str, float]]:
        """``(job, output, rate, note, seconds per file)`` for every file restored; failures recorded."""
        for job, exc in unreadable:
            self._record(job, "failed", one_line(exc))
        start = time.perf_counter()
        outputs = self._enhance(loaded) if loaded else []
        per_file = (time.perf_counter() - start) / max(len(loaded), 1)
        results = []
        for (job, _, _), out in zip(loaded, outputs):
            if isinstance(out, Exception):
                self._record(job, "failed", report_failure(out))
            else:
                results.append((job, *fit_full_scale_pair(out), per_file))
        return results

    def _enhance(self, loaded: list[tuple[Job, np.ndarray, int]]) -> list[Restored | Exception]:
        if self.texts is None:
            return restore_batch(self.enhancer, [(w, s) for _, w, s in loaded], self.cfg)
        return [self._enhance_with_text(job, w, s) for job, w, s in loaded]

    def _enhance_with_text(self, job: Job, wave: np.ndarray, sr: int) -> Restored | Exception:
        """One file with its own transcript; a missing one is this file's failure, not the run's."""
        try:
            text = self.texts.text(job.name, wave, sr)
        except RestorekitError as exc:
            return exc
        return restore_batch(self.enhancer.with_text(text), [(wave, sr)], self.cfg)[0]

    def _write(self, job: Job, out: np.ndarray, out_sr: int, note: str, seconds: float) -> tuple:
        """Runs in an I/O thread: returns what ``_record`` is then called with, in the caller's thread."""
        try:
            audio.save(job.target, out, out_sr, overwrite=bool(self.cfg.overwrite))
        except RestorekitError as exc:
            return job, "failed", one_line(exc), seconds
        return job, "done", note, seconds

    def _finish(self, writes: list[Future]) -> None:
        for future in writes:
            self._record(*future.result())

    def _screen(self, loaded: list, results: list) -> None:
        if self.screener is None:
            return
        inputs = {id(job): (wave, sr) for job, wave, sr in loaded}
        for job, out, out_sr, _, _ in results:
            self.summary.screening.append(self.screener.score(job.name, *inputs[id(job)], out, out_sr))

    def _record(self, job: Job, status: str, reason: str = "", seconds: float = 0.0) -> None:
        self.summary.records.append(Record(str(job.source), str(job.target), status, reason, round(seconds, 3)))
        if self.progress is not None:
            self.progress.update(1)


def fit_full_scale_pair(restored: Restored) -> tuple[np.ndarray, int, str]:
    """``(output within full scale, rate, note)`` for one restored recording."""
    out, note = fit_full_scale(restored[0])
    return out, int(restored[1]), note


# ---------------------------------------------------------------- entry point and summary


def main(argv: Sequence[str]) -> int:
    """Restore what ``input=`` names into ``output_dir=``; 0 when no file failed, else 1."""
    from restorekit.inference_shards import is_shard_input, plan_shards, run_shards

    cfg = parse_args(argv)
    output_dir = Path(cfg.output_dir)
    shards = is_shard_input(str(cfg.input))
    jobs = plan_shards(str(cfg.input), output_dir) if shards else plan(Path(cfg.input), output_dir, str(cfg.format))
    jobs, rank, world = shard(jobs)
    enhancer, screener = build_enhancer(cfg), build_screener(cfg)
    if rank == 0:
        save_config(cfg, output_dir, name="inference_config.yaml")
    with progress_bar(len(jobs), rank, world, "shard" if shards else "file") as bar:
        if shards:
            summary = run_shards(jobs, enhancer, cfg, bar, screener)
        else:
            summary = Runner(enhancer, cfg, bar, screener).run(jobs)
    if world > 1:  # each rank's own line, before the gather (a rank that dies later still said it)
        print(f"[rank {rank}/{world}] " + counts_line(summary), flush=True)
    summary = gather(summary, world)
    if rank == 0:
        report(summary, output_dir)
    return 1 if summary.count("failed") else 0


def progress_bar(total: int, rank: int, world: int, unit: str):
    """This rank's bar (one line per rank under torchrun); disable=None: nothing in logs and pipes."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"restoring [{rank}/{world}]", unit=unit, disable=None, position=rank)


def gather(summary: Summary, world: int) -> Summary:
    """Every process's records and screening rows on rank 0 (torch.distributed, gloo) under torchrun."""
    if world == 1 or "MASTER_ADDR" not in os.environ:
        return summary
    import torch.distributed as dist

    # Ranks meet only here, and on a corpus one may finish hours before the last: torch's default
    # 30-minute timeout would end the early ones (and torchrun the whole run) while others still work.
    dist.init_process_group(backend="gloo", timeout=GATHER_TIMEOUT)
    try:
        parts: list[Summary | None] = [None] * world
        dist.all_gather_object(parts, summary)
    finally:
        dist.destroy_process_group()
    records = sorted((r for part in parts for r in part.records), key=lambda r: r.input)
    return Summary(records, [row for part in parts for row in part.screening])


def counts_line(summary: Summary) -> str:
    flagged = f", {summary.flagged()} flagged" if summary.screening else ""
    return (f"{summary.count('done')} done, {summary.count('skipped')} skipped, "
            f"{summary.count('failed')} failed{flagged}")


def report(summary: Summary, output_dir: Path) -> Path:
    """Print done / skipped / failed (with reasons) and write them as JSON to output_dir; with
    screening, merge this run's rows into ``output_dir/screening.csv``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_text(output_dir / SUMMARY_NAME, summary.to_json())
    where = f"summary in {path}"
    if summary.screening:
        from restorekit.screening import write_screening

        where += f", screening in {write_screening(summary.screening, output_dir)}"
    print(f"inference: {counts_line(summary)}; {where}")
    for r in sorted(summary.records, key=lambda r: r.input):
        if r.status == "failed":
            print(f"  failed {r.input}: {r.reason}")
    return path


def enhance_recordings(enhancer, items: list[tuple[np.ndarray, int]], chunk_seconds: float,
                       overlap_seconds: float, batch_size: int = 1) -> list[tuple[np.ndarray, int]]:
    """``(wave, sr)`` recordings restored in input order: those longer than ``chunk_seconds`` in
    overlapping chunks, ``batch_size`` chunks per ``enhance_batch`` call (unless the enhancer bounds
    its own memory), the rest in one ``enhance_batch`` call. The command line and
    ``restorekit.load`` both restore through this."""

    def is_long(wave: np.ndarray, sr: int) -> bool:
        return len(wave) > chunk_seconds * sr and not enhancer.chunks_internally

    short_items = [(w, s) for w, s in items if not is_long(w, s)]
    short = iter(enhancer.enhance_batch(short_items) if short_items else [])
    return [enhance_chunks_batched(enhancer, w, s, chunk_seconds, overlap_seconds, batch_size) if is_long(w, s)
            else next(short) for w, s in items]


def enhance_chunks_batched(enhancer, wave: np.ndarray, sr: int, chunk_seconds: float, overlap_seconds: float,
                           batch_size: int) -> tuple[np.ndarray, int]:
    """A long recording's chunks restored ``batch_size`` at a time, then joined (level-matched and
    cross-faded) exactly as ``enhance_in_chunks`` joins them one by one; the model holds at most
    ``batch_size`` chunks at once."""
    from restorekit.enhancers.chunking import chunk_bounds, enhance_in_chunks

    bounds = chunk_bounds(len(wave), sr, chunk_seconds, overlap_seconds)
    pieces: list[tuple[np.ndarray, int]] = []
    for k in range(0, len(bounds), batch_size):
        pieces += enhancer.enhance_batch([(wave[a:b], sr) for a, b in bounds[k:k + batch_size]])
    restored = iter(pieces)  # enhance_in_chunks asks for the chunks in the same order
    return enhance_in_chunks(lambda w, s: next(restored), wave, sr, chunk_seconds, overlap_seconds)


def fit_full_scale(out: np.ndarray, ceiling: float = 0.99) -> tuple[np.ndarray, str]:
    """Scale a file whose peak exceeds full scale down to ``ceiling``, with a note saying so.

    PCM cannot hold samples beyond +-1; hard clipping would add distortion that metrics (and
    listeners) punish, and wrapping is worse, so the whole file is scaled instead.
    """
    p = audio.peak(out)
    if p <= 1.0:
        return out, ""
    return (out * np.float32(ceiling / p)).astype(np.float32), f"peak {p:.2f} scaled to {ceiling} to avoid clipping"
