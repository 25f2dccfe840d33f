"""inference at corpus scale: duration buckets, batched chunks of long files, I/O threads beside the model.

The enhancers here are tiny numpy functions that log each ``enhance_batch`` call: what the
runner hands the model is the behaviour under test (h6's tests cover batched == single inside
the restorers).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.enhancers.chunking import enhance_in_chunks
from restorekit.errors import ConfigError
from restorekit.inference import enhance_chunks_batched, main, parse_args

SR = 8_000


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


class Normaliser:
    """Each recording scaled to RMS 0.05 (so a chunk's output depends on its own content) and every
    ``enhance_batch`` call's lengths in seconds logged."""

    chunks_internally = False
    sample_rate = None

    def __init__(self) -> None:
        self.calls: list[list[float]] = []

    def __call__(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        return (wave * np.float32(0.05 / np.sqrt(np.mean(wave**2)))).astype(np.float32), sr

    def enhance_batch(self, items):
        self.calls.append([round(len(w) / s, 3) for w, s in items])
        return [self(w, s) for w, s in items]


def corpus(root: Path, seconds: dict[str, float]) -> Path:
    root.mkdir(parents=True)
    for i, (name, secs) in enumerate(seconds.items()):
        sf.write(root / name, noise(secs, i), SR, subtype="FLOAT")
    return root


def run(inputs: Path, out: Path, monkeypatch, enhancer, *args: str) -> dict:
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: enhancer)
    main(["enhancer=identity", f"input={inputs}", f"output_dir={out}", *args])
    return json.loads((out / "inference_summary.json").read_text())


def test_files_are_batched_by_duration_and_long_ones_go_as_batched_chunks(tmp_path, monkeypatch) -> None:
    """Five files of 3, 0.5, 25, 2 and 1 s, batch_size 2, chunks of 10 s (1 s overlap): the model
    sees [0.5, 1], [2, 3], then the 25 s file's chunks [10, 10], [7]; never more than 2 items of
    at most 10 s. The summary lists the files in input order.

    Catches: files batched in input order (padding a 0.5 s file to 3 s), a long file sent whole
    or chunk by chunk, and batches larger than batch_size.
    """
    inputs = corpus(tmp_path / "in", {"a.wav": 3, "b.wav": 0.5, "c.wav": 25, "d.wav": 2, "e.wav": 1})
    enhancer = Normaliser()
    summary = run(inputs, tmp_path / "out", monkeypatch, enhancer, "batch_size=2", "chunk.seconds=10")
    assert enhancer.calls == [[0.5, 1.0], [2.0, 3.0], [10.0, 10.0], [7.0]]
    assert [(Path(f["input"]).name, f["status"]) for f in summary["files"]] == [
        (n, "done") for n in ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav")]
    out = sf.read(tmp_path / "out" / "b.wav", dtype="float32")[0]
    assert np.sqrt(np.mean(out**2)) == pytest.approx(0.05, rel=1e-3)  # the enhancer's output was written


def test_batched_chunks_join_exactly_as_one_chunk_at_a_time() -> None:
    """A 25 s recording in 10 s chunks, 3 per call: the same samples as enhance_in_chunks, which
    restores them one by one (each chunk normalised to its own level, so the order matters).

    Catches: chunks handed back out of order or misaligned with their bounds.
    """
    wave = noise(25, 0) * np.linspace(0.2, 1.0, int(25 * SR), dtype=np.float32)  # a level that drifts
    one_by_one, sr = enhance_in_chunks(Normaliser(), wave, SR, 10.0, 1.0)
    enhancer = Normaliser()
    batched, sr_b = enhance_chunks_batched(enhancer, wave, SR, 10.0, 1.0, batch_size=3)
    assert enhancer.calls == [[10.0, 10.0, 7.0]] and sr_b == sr
    np.testing.assert_array_equal(batched, one_by_one)


def test_outputs_are_identical_with_io_threads_serial_and_batch_size_1(tmp_path, monkeypatch) -> None:
    """io_workers=3 and batch_size=4 write the same bytes as the serial path (io_workers=0, batch_size=1).

    Catches: outputs swapped between files of one batch or written for the wrong job by a thread.
    """
    seconds = {f"f{i}.wav": s for i, s in enumerate((0.5, 1.25, 0.75, 2.0, 0.25, 12.0))}
    inputs = corpus(tmp_path / "in", seconds)
    run(inputs, tmp_path / "serial", monkeypatch, Normaliser(), "io_workers=0", "batch_size=1", "chunk.seconds=5")
    run(inputs, tmp_path / "threads", monkeypatch, Normaliser(), "io_workers=3", "batch_size=4", "chunk.seconds=5")
    for name in seconds:
        assert (tmp_path / "threads" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name


class Waiter(Normaliser):
    """While restoring its first batch, waits (up to ``patience`` s) for the next batch's file to be
    loaded, and says whether it was."""

    def __init__(self, loaded_next: threading.Event, patience: float) -> None:
        super().__init__()
        self.loaded_next, self.patience, self.overlapped = loaded_next, patience, None

    def enhance_batch(self, items):
        if self.overlapped is None:
            self.overlapped = self.loaded_next.wait(self.patience)
        return super().enhance_batch(items)


@pytest.mark.parametrize(("io_workers", "patience", "overlapped"), [(2, 10.0, True), (0, 0.3, False)])
def test_the_next_batch_loads_while_the_model_computes(tmp_path, monkeypatch, io_workers, patience, overlapped):
    """With io_workers=2 the second batch's file is loaded during the first batch's compute; serially
    (io_workers=0) it is not.

    Catches: a prefetch that waits for the compute (no overlap) or io_workers ignored.
    """
    from restorekit import audio

    inputs = corpus(tmp_path / "in", {"a.wav": 0.5, "b.wav": 1.0})
    loaded_next, load = threading.Event(), audio.load

    def watching_load(path, *args, **kwargs):
        if Path(path).name == "b.wav":
            loaded_next.set()
        return load(path, *args, **kwargs)

    monkeypatch.setattr("restorekit.inference.audio.load", watching_load)
    enhancer = Waiter(loaded_next, patience)
    summary = run(inputs, tmp_path / "out", monkeypatch, enhancer, f"io_workers={io_workers}", "batch_size=1")
    assert enhancer.overlapped is overlapped
    assert summary["done"] == 2 and enhancer.calls == [[0.5], [1.0]]


def test_batch_size_and_io_workers_are_checked() -> None:
    base = ["enhancer=identity", "input=x", "output_dir=y"]
    with pytest.raises(ConfigError, match=r"batch_size=0 must be a whole number >= 1 \(e.g. batch_size=8\)"):
        parse_args([*base, "batch_size=0"])
    with pytest.raises(ConfigError, match=r"io_workers=-1 must be a whole number >= 0 \(e.g. io_workers=2\)"):
        parse_args([*base, "io_workers=-1"])
    assert parse_args(base).io_workers == 2


def test_batch_size_defaults_to_1_on_the_cpu_and_8_on_a_gpu(monkeypatch) -> None:
    """Batching only pays on a GPU: on the CPU the full-size Miipher-2 ran 1.85x slower at batch 8."""
    from restorekit.enhancers.export import default_batch_size

    base = ["enhancer=identity", "input=x", "output_dir=y"]
    assert parse_args([*base, "exp.device=cpu"]).batch_size == 1
    assert parse_args([*base, "exp.device=cpu", "batch_size=8"]).batch_size == 8  # asked for: kept
    assert (default_batch_size("cuda:0"), default_batch_size("cuda"), default_batch_size("cpu")) == (8, 8, 1)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # exp.device=auto on a GPU machine
    assert parse_args(base).batch_size == 8


def test_an_export_gets_the_runs_batch_size_unless_its_args_say_otherwise(monkeypatch) -> None:
    """batch_size=4 reaches the restorekit enhancer (pieces per forward pass); enhancer.args.batch_size wins.

    Catches: an export batching its chunks 8 at a time whatever the run asks (memory not bounded by
    the run's batch_size).
    """
    from restorekit.enhancers import ENHANCERS
    from restorekit.inference import build_enhancer

    built = []
    monkeypatch.setattr(ENHANCERS, "build", lambda node, where="": built.append(dict(node["args"])))
    base = ["exp.ckpt_dir=export", "exp.device=cpu", "input=x", "output_dir=y"]
    build_enhancer(parse_args([*base, "batch_size=4"]))
    build_enhancer(parse_args([*base, "batch_size=4", "enhancer.args.batch_size=2"]))
    assert [(b["batch_size"], b["path"], b["device"]) for b in built] == [(4, "export", "cpu"), (2, "export", "cpu")]
