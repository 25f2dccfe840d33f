"""`python inference.py exp.ckpt_dir=EXPORT input=PATH output_dir=DIR`: restore a corpus.

``input`` is an audio file, a folder (searched recursively) or a ``.txt`` list of paths (one a
line, relative to the list's folder; ``#`` starts a comment). Outputs mirror the input tree
under ``output_dir``, at the enhancer's rate, in WAV or FLAC. Instead of a restorekit export,
``enhancer=NAME enhancer.args.x=...`` runs any registered enhancer (a baseline).

A run never writes into its input folder, skips outputs that already exist (a killed run
resumes where it stopped; files are written atomically), sends short files to the enhancer in
batches and long ones in overlapping chunks, and under ``torchrun`` gives each process every
WORLD_SIZE-th file. A file that cannot be read or restored is reported and skipped; the run
goes on. It ends with a summary (done / skipped / failed with reasons), printed and written
to ``output_dir/inference_summary.json``; the exit status is 1 when a file failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from restorekit import audio
from restorekit.config import apply_overrides, atomic_write_text, save_config
from restorekit.errors import ConfigError, DataError, RestorekitError, one_line

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
SUMMARY_NAME = "inference_summary.json"
DEFAULTS = {
    "exp": {"ckpt_dir": None, "device": "auto"},
    "enhancer": {"name": None, "args": {}},
    "input": "???",
    "output_dir": "???",
    "format": "wav",  # wav | flac
    "overwrite": False,
    "batch_size": 8,  # short files handed to the enhancer together
    "chunk": {"seconds": 30.0, "overlap": 1.0},  # files longer than `seconds` go in chunks
}


@dataclass
class Job:
    """One input file and where its restoration goes."""

    source: Path
    target: Path


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
    records: list[Record] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    def to_json(self) -> str:
        counts = {s: self.count(s) for s in ("done", "skipped", "failed")}
        return json.dumps({**counts, "files": [asdict(r) for r in self.records]}, indent=2)


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
        args = {**extra, "path": str(cfg.exp.ckpt_dir), "device": resolve_device(cfg)}
        return ENHANCERS.build({"name": "restorekit", "args": args}, where="exp.ckpt_dir")
    return ENHANCERS.build(cfg.enhancer, where="enhancer")


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
        raise DataError(f"input {spec} does not exist; pass an audio file, a folder or a .txt list")
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataError(f"input folder {spec} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return files, spec
    if spec.suffix.lower() == ".txt":
        files = _read_list(spec)
        return files, Path(os.path.commonpath([str(p.parent) for p in files]))
    return [spec], spec.parent


def _read_list(spec: Path) -> list[Path]:
    lines = [ln.split("#", 1)[0].strip() for ln in spec.read_text(encoding="utf-8").splitlines()]
    files = [(spec.parent / ln).resolve() for ln in lines if ln]
    if not files:
        raise DataError(f"input list {spec} names no files; write one audio path per line")
    return files


def plan(spec: Path, output_dir: Path, fmt: str) -> list[Job]:
    """One job per input file; outputs mirror the tree below the input root."""
    files, root = find_inputs(spec)
    refuse_output_inside_input(spec, output_dir)
    jobs = [Job(f, output_dir / f.relative_to(root).with_suffix(f".{fmt}")) for f in files]
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


def shard(jobs: list[Job]) -> tuple[list[Job], int, int]:
    """This process's share under torchrun: every WORLD_SIZE-th job from RANK on."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return jobs[rank::world], rank, world


# ---------------------------------------------------------------- processing


class Runner:
    """Restores jobs one batch (short files) or one chunked file (long ones) at a time."""

    def __init__(self, enhancer, cfg: DictConfig, progress=None) -> None:
        self.enhancer = enhancer
        self.cfg = cfg
        self.progress = progress
        self.summary = Summary()

    def run(self, jobs: list[Job]) -> Summary:
        todo = []
        for job in jobs:
            if job.target.exists() and not self.cfg.overwrite:
                self._record(job, "skipped", "output exists")
            else:
                todo.append(job)
        for batch in self._batches(todo):
            self._run_batch(batch)
        return self.summary

    def _batches(self, jobs: list[Job]) -> Iterator[list[tuple[Job, np.ndarray, int]]]:
        """Loaded short files in groups of batch_size; a long file alone; unreadable ones recorded."""
        batch: list[tuple[Job, np.ndarray, int]] = []
        for job in jobs:
            try:
                wave, sr = audio.load(job.source)
            except RestorekitError as exc:
                self._record(job, "failed", one_line(exc))
                continue
            if self._is_long(wave, sr):
                yield [(job, wave, sr)]
                continue
            batch.append((job, wave, sr))
            if len(batch) >= int(self.cfg.batch_size):
                yield batch
                batch = []
        if batch:
            yield batch

    def _is_long(self, wave: np.ndarray, sr: int) -> bool:
        return len(wave) > float(self.cfg.chunk.seconds) * sr

    def _run_batch(self, batch: list[tuple[Job, np.ndarray, int]]) -> None:
        start = time.perf_counter()
        outputs, failure = self._try_enhance(batch)
        if failure is None:
            per_file = (time.perf_counter() - start) / len(batch)
            for (job, _, _), (out, out_sr) in zip(batch, outputs):
                self._write(job, out, out_sr, per_file)
        elif len(batch) > 1:  # one bad file must not sink its batch: each goes again alone
            for item in batch:
                self._run_batch([item])
        else:
            self._fail(batch[0][0], failure)

    def _try_enhance(self, batch: list[tuple[Job, np.ndarray, int]]) -> tuple[list | None, Exception | None]:
        # The failure is returned, not handled here: retrying inside this `except` would chain
        # every later file's traceback to this batch's error.
        try:
            return self._enhance(batch), None
        except Exception as exc:  # one bad file must not end the run
            return None, exc

    def _fail(self, job: Job, exc: Exception) -> None:
        if not isinstance(exc, RestorekitError):  # a bug: keep its traceback visible
            traceback.print_exception(exc, file=sys.stderr)
        self._record(job, "failed", f"{type(exc).__name__}: {one_line(exc)}")

    def _enhance(self, batch: list[tuple[Job, np.ndarray, int]]) -> list[tuple[np.ndarray, int]]:
        chunk = self.cfg.chunk
        return enhance_recordings(self.enhancer, [(w, s) for _, w, s in batch], float(chunk.seconds),
                                  float(chunk.overlap))

    def _write(self, job: Job, out: np.ndarray, out_sr: int, seconds: float) -> None:
        out, note = fit_full_scale(out)
        try:
            audio.save(job.target, out, out_sr, overwrite=bool(self.cfg.overwrite))
        except RestorekitError as exc:
            return self._record(job, "failed", one_line(exc), seconds)
        self._record(job, "done", note, seconds)

    def _record(self, job: Job, status: str, reason: str = "", seconds: float = 0.0) -> None:
        self.summary.records.append(Record(str(job.source), str(job.target), status, reason, round(seconds, 3)))
        if self.progress is not None:
            self.progress.update(1)


# ---------------------------------------------------------------- entry point and summary


def main(argv: Sequence[str]) -> int:
    """Restore what ``input=`` names into ``output_dir=``; 0 when no file failed, else 1."""
    from tqdm import tqdm

    cfg = parse_args(argv)
    output_dir = Path(cfg.output_dir)
    jobs, rank, world = shard(plan(Path(cfg.input), output_dir, str(cfg.format)))
    enhancer = build_enhancer(cfg)
    if rank == 0:
        save_config(cfg, output_dir, name="inference_config.yaml")
    # disable=None: a bar on a terminal, nothing in logs and pipes.
    with tqdm(total=len(jobs), desc=f"restoring [{rank}/{world}]", unit="file", disable=None, position=rank) as bar:
        summary = Runner(enhancer, cfg, bar).run(jobs)
    summary = gather(summary, world)
    if rank == 0:
        report(summary, output_dir)
    return 1 if summary.count("failed") else 0


def gather(summary: Summary, world: int) -> Summary:
    """Every process's records on rank 0 (torch.distributed, gloo) when run under torchrun."""
    if world == 1 or "MASTER_ADDR" not in os.environ:
        return summary
    import torch.distributed as dist

    dist.init_process_group(backend="gloo")
    try:
        parts: list[list[Record]] = [[] for _ in range(world)]
        dist.all_gather_object(parts, summary.records)
    finally:
        dist.destroy_process_group()
    return Summary(sorted((r for part in parts for r in part), key=lambda r: r.input))


def report(summary: Summary, output_dir: Path) -> Path:
    """Print done / skipped / failed (with reasons) and write them as JSON to output_dir."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_text(output_dir / SUMMARY_NAME, summary.to_json())
    print(
        f"inference: {summary.count('done')} done, {summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed; summary in {path}"
    )
    for r in summary.records:
        if r.status == "failed":
            print(f"  failed {r.input}: {r.reason}")
    return path


def enhance_recordings(enhancer, items: list[tuple[np.ndarray, int]], chunk_seconds: float,
                       overlap_seconds: float) -> list[tuple[np.ndarray, int]]:
    """``(wave, sr)`` recordings restored in input order: those longer than ``chunk_seconds`` one
    at a time in overlapping chunks (unless the enhancer bounds its own memory), the rest in one
    ``enhance_batch`` call. The command line and ``restorekit.load`` both restore through this."""
    from restorekit.enhancers.chunking import enhance_in_chunks

    def is_long(wave: np.ndarray, sr: int) -> bool:
        return len(wave) > chunk_seconds * sr and not enhancer.chunks_internally

    short = iter(enhancer.enhance_batch([(w, s) for w, s in items if not is_long(w, s)]))
    return [enhance_in_chunks(enhancer, w, s, chunk_seconds, overlap_seconds) if is_long(w, s) else next(short)
            for w, s in items]


def fit_full_scale(out: np.ndarray, ceiling: float = 0.99) -> tuple[np.ndarray, str]:
    """Scale a file whose peak exceeds full scale down to ``ceiling``, with a note saying so.

    PCM cannot hold samples beyond +-1; hard clipping would add distortion that metrics (and
    listeners) punish, and wrapping is worse, so the whole file is scaled instead.
    """
    p = audio.peak(out)
    if p <= 1.0:
        return out, ""
    return (out * np.float32(ceiling / p)).astype(np.float32), f"peak {p:.2f} scaled to {ceiling} to avoid clipping"

