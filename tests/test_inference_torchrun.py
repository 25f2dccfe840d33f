"""A 2-process torchrun restoration killed mid-run, then rerun: the rerun restores only what is missing."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.inference import main
from tests_helpers import REPO, offline_env

# Runs on every rank: the real command line, except that rank 1 kills itself (SIGKILL: no cleanup,
# as an out-of-memory kill or a lost node) when KILL_AFTER files are recorded done.
DYING_INFERENCE = """
import os, signal, sys
from restorekit import inference

_record, done = inference.Runner._record, []


def record(self, job, status, reason="", seconds=0.0):
    _record(self, job, status, reason, seconds)
    done.append(status == "done")
    if os.environ.get("KILL_AFTER") and os.environ["RANK"] == "1" and sum(done) == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)


inference.Runner._record = record
sys.exit(inference.main(sys.argv[1:]))
"""


def torchrun(script: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2", str(script), *args],
        cwd=REPO, env=offline_env(OMP_NUM_THREADS="1", **env), capture_output=True, text=True, timeout=240,
        check=False,
    )


@pytest.mark.slow  # one torchrun launch of two processes: ~27 s wall on the loaded shared cores, mostly imports
def test_a_killed_torchrun_restoration_reruns_only_the_missing_files(tmp_path: Path, monkeypatch, capsys) -> None:
    """Eight files over two ranks (rank 1: f1 f3 f5 f7); rank 1 is killed after writing two, which
    ends the run (torchrun stops rank 0 too). Each rank's rerun (here in this process, as RANK r of
    WORLD_SIZE 2: a second launch would double the test's time, and the gather is tested below and
    in test_inference.py) writes exactly its files then missing and leaves the others untouched;
    rank 0's summary lists its four files, skipped where the first run wrote them.

    Catches: outputs not skipped on resume (everything restored again), a half-written output
    taken as done, the file split changing between runs.
    """
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(8):
        sf.write(inputs / f"f{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(2000)).astype(np.float32), 8000)
    (tmp_path / "dying_inference.py").write_text(DYING_INFERENCE)
    out = tmp_path / "out"
    # batch_size=1, io_workers=0: rank 1 has restored its third file but not written it when it dies.
    args = ["enhancer=identity", f"input={inputs}", f"output_dir={out}", "batch_size=1", "io_workers=0"]
    first = torchrun(tmp_path / "dying_inference.py", args, KILL_AFTER="2")
    assert first.returncode != 0 and not (out / "inference_summary.json").exists()
    assert re.search(r"exitcode\s*:\s*-9", first.stderr)  # rank 1's SIGKILL ended the run
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    assert {"f1.wav", "f3.wav"} <= set(written) and not {"f5.wav", "f7.wav"} & set(written)
    assert not list(out.glob(".*"))  # no temporaries left by the killed rank

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(args) == 0
    assert "[rank 1/2] 2 done, 2 skipped, 0 failed" in capsys.readouterr().out  # f5 and f7 only
    assert {"f5.wav", "f7.wav"} <= {p.name for p in out.glob("*.wav")}
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 0
    status = {Path(f["input"]).name: f["status"] for f in json.loads((out / "inference_summary.json").read_text())["files"]}
    assert sorted(status) == ["f0.wav", "f2.wav", "f4.wav", "f6.wav"]
    assert {n for n, s in status.items() if s == "skipped"} == {n for n in written if n in status}
    assert sorted(p.name for p in out.glob("*.wav")) == [f"f{i}.wav" for i in range(8)]
    assert {n: (out / n).stat().st_mtime_ns for n in written} == written  # not rewritten


def test_a_rank_that_finishes_early_waits_days_not_minutes_at_the_gather(monkeypatch) -> None:
    """The one meeting of the ranks (gather) waits at least a day, and merges every rank's records.

    Catches: torch's default 30-minute timeout, which on a corpus ends a rank that finished first
    (and with it the whole torchrun) while the others are still restoring.
    """
    from datetime import timedelta

    import torch.distributed as dist

    from restorekit.inference import Record, Summary, gather

    seen: dict = {}
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    other = Summary([Record("a.wav", "out/a.wav", "done")], [{"file": "a", "flag": 1}])
    monkeypatch.setattr(dist, "all_gather_object", lambda parts, mine: parts.__setitem__(slice(None), [mine, other]))
    merged = gather(Summary([Record("b.wav", "out/b.wav", "skipped")]), world=2)
    assert seen["backend"] == "gloo" and seen["timeout"] >= timedelta(days=1)
    assert [r.input for r in merged.records] == ["a.wav", "b.wav"] and merged.flagged() == 1
