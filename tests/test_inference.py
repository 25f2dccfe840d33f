"""inference: trees, corrupt files, resumption, refusal, long files, torchrun sharding."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from restorekit.errors import AudioError, ConfigError, DataError
from restorekit.inference import main, parse_args
from tests_helpers import REPO, offline_env, run_py

SR_LONG = 8_000  # the 20-minute file: low rate keeps the test to seconds


def noise(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    shape = (int(sr * seconds), channels) if channels > 1 else (int(sr * seconds),)
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.wav (16 kHz), in/music/stereo.flac (44.1 kHz stereo), in/music/bad.wav, in/long/talk.wav (20 min)."""
    root = tmp_path / "in"
    (root / "music").mkdir(parents=True)
    (root / "long").mkdir()
    sf.write(root / "a.wav", noise(16_000, 1.0), 16_000)
    sf.write(root / "music" / "stereo.flac", noise(44_100, 1.5, channels=2), 44_100)
    (root / "music" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    sf.write(root / "long" / "talk.wav", noise(SR_LONG, 20 * 60, seed=1), SR_LONG, subtype="PCM_16")
    return root


def summary_of(out: Path) -> dict:
    return json.loads((out / "inference_summary.json").read_text())


def test_tree_with_corrupt_stereo_and_long_file_completes_and_reruns_skip(tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    status = main(["enhancer=identity", f"input={tree}", f"output_dir={out}", "format=flac"])
    assert status == 1  # a file failed, the others were restored
    printed = capsys.readouterr().out
    assert "inference: 3 done, 0 skipped, 1 failed" in printed
    assert "bad.wav: " in printed and "cannot be decoded as audio" in printed
    summary = summary_of(out)
    failed = [f for f in summary["files"] if f["status"] == "failed"]
    assert [Path(f["input"]).name for f in failed] == ["bad.wav"]

    stereo, sr = sf.read(out / "music" / "stereo.flac")
    assert sr == 44_100 and stereo.ndim == 1 and len(stereo) == int(44_100 * 1.5)
    expected = sf.read(tree / "music" / "stereo.flac", dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(stereo, expected, atol=2e-4)  # identity: the mono mix, 16-bit
    long_out, long_sr = sf.read(out / "long" / "talk.flac", dtype="float32")
    long_in = sf.read(tree / "long" / "talk.wav", dtype="float32")[0]
    assert long_sr == SR_LONG and len(long_out) == 20 * 60 * SR_LONG
    np.testing.assert_allclose(long_out, long_in, atol=2e-4)  # chunk joins are seamless
    assert sf.info(out / "a.flac").format == "FLAC"

    status = main(["enhancer=identity", f"input={tree}", f"output_dir={out}", "format=flac"])
    rerun = summary_of(out)
    assert (rerun["done"], rerun["skipped"], rerun["failed"]) == (0, 3, 1)
    assert "inference: 0 done, 3 skipped, 1 failed" in capsys.readouterr().out


def test_output_inside_or_equal_to_the_input_is_refused(tree: Path) -> None:
    for out in (tree / "restored", tree):
        with pytest.raises(ConfigError, match="is inside the input folder .*Choose an output_dir outside it"):
            main(["enhancer=identity", f"input={tree}", f"output_dir={out}"])
    assert not (tree / "restored").exists()


def test_single_file_and_list_inputs(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    assert main(["enhancer=spectral_gating", f"input={tree / 'a.wav'}", f"output_dir={out}"]) == 0
    assert sf.info(out / "a.wav").frames == 16_000
    listing = tree / "files.txt"
    listing.write_text("# two files\na.wav\nmusic/stereo.flac\n\n")
    out = tmp_path / "listed"
    assert main(["enhancer=identity", f"input={listing}", f"output_dir={out}"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == ["a.wav", "music/stereo.wav"]
    with pytest.raises(ConfigError, match="would overwrite input"):
        main(["enhancer=identity", f"input={tree / 'a.wav'}", f"output_dir={tree}"])


def test_output_beyond_full_scale_is_scaled_not_clipped(tmp_path: Path) -> None:
    src = tmp_path / "loud" / "hot.wav"
    src.parent.mkdir()
    wave = np.sin(2 * np.pi * 220 * np.arange(16_000) / 16_000).astype(np.float32) * 1.5
    sf.write(src, wave, 16_000, subtype="FLOAT")  # float WAV holds samples beyond +-1
    out = tmp_path / "out"
    assert main(["enhancer=identity", f"input={src.parent}", f"output_dir={out}", "format=flac"]) == 0
    got, _ = sf.read(out / "hot.flac", dtype="float32")
    assert np.max(np.abs(got)) == pytest.approx(0.99, abs=1e-3)
    np.testing.assert_allclose(got, wave * (0.99 / 1.5), atol=1e-3)  # same shape, no clipped tops
    (record,) = summary_of(out)["files"]
    assert record["status"] == "done" and record["reason"] == "peak 1.50 scaled to 0.99 to avoid clipping"


def test_arguments_are_checked_with_helpful_messages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of exp.ckpt_dir=EXPORT_DIR .* or enhancer=NAME"):
        parse_args([f"input={tmp_path}", f"output_dir={tmp_path / 'o'}"])
    with pytest.raises(ConfigError, match="output_dir is not set; pass output_dir=PATH"):
        parse_args(["enhancer=identity", f"input={tmp_path}"])
    with pytest.raises(ConfigError, match="format='mp3' is not supported; use format=wav or format=flac"):
        parse_args(["enhancer=identity", "input=x", "output_dir=y", "format=mp3"])
    with pytest.raises(ConfigError, match="key 'overwrit' does not exist.*Did you mean 'overwrite'"):
        parse_args(["enhancer=identity", "input=x", "output_dir=y", "overwrit=true"])
    with pytest.raises(DataError, match="holds no audio files"):
        main(["enhancer=identity", f"input={tmp_path}", f"output_dir={tmp_path.parent / 'o'}"])
    cfg = parse_args(["enhancer=webrtc_ns", "enhancer.args.level=3", "input=x", "output_dir=y"])
    assert cfg.enhancer.name == "webrtc_ns" and cfg.enhancer.args.level == 3


def test_cli_entry_point_reports_errors_in_one_line(tmp_path: Path) -> None:
    """A misspelt enhancer over a valid input folder: exactly one line on stderr, nothing on stdout, status 2.

    Catches: the CLI letting the error through (a traceback and status 1). (Messages with a
    newline are folded to one line: test_cli.py::test_a_multi_line_user_error_prints_on_one_line.)
    """
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", noise(8_000, 0.1), 8_000)
    args = ["inference.py", "enhancer=identiy", f"input={tmp_path}/in", f"output_dir={tmp_path}/o"]
    result = run_py(args, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [(
        "error: unknown enhancers 'identiy' at enhancer.name. Did you mean 'identity'? Registered enhancers: "
        "deepfilternet3, identity, mimi_resynthesis, restorekit, rnnoise, spectral_gating, webrtc_ns"
    )]
    assert not (tmp_path / "o").exists()


SHARD_LOGGER = """
import os, sys
from restorekit import inference

_record = inference.Runner._record


def record(self, job, status, reason="", seconds=0.0):
    with open(os.path.join(os.environ["SHARD_LOG_DIR"], "rank" + os.environ["RANK"]), "a") as fh:
        fh.write(job.source.name + " " + status + "\\n")
    return _record(self, job, status, reason, seconds)


inference.Runner._record = record
sys.exit(inference.main(sys.argv[1:]))
"""


def test_torchrun_shards_files_across_two_processes(tmp_path: Path) -> None:
    """Two processes split f0-f4 as every other file (rank 0: f0 f2 f4; rank 1: f1 f3); rank 0 reports.

    Each process logs the files it handled (a wrapper around ``Runner._record``). Catches: rank 0
    taking every file (the other idle; the outputs and summary alone look the same), contiguous
    blocks instead of every WORLD_SIZE-th file, and a summary not gathered from both ranks.
    """
    inputs, logs = tmp_path / "in", tmp_path / "logs"
    inputs.mkdir()
    logs.mkdir()
    for i in range(5):
        sf.write(inputs / f"f{i}.wav", noise(8_000, 0.25, seed=i), 8_000)
    (tmp_path / "logged_inference.py").write_text(SHARD_LOGGER)
    out = tmp_path / "out"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2",
         str(tmp_path / "logged_inference.py"), "enhancer=identity", f"input={inputs}", f"output_dir={out}"],
        cwd=REPO, env=offline_env(OMP_NUM_THREADS="1", SHARD_LOG_DIR=str(logs)), capture_output=True,
        text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (logs / "rank0").read_text().split("\n") == ["f0.wav done", "f2.wav done", "f4.wav done", ""]
    assert (logs / "rank1").read_text().split("\n") == ["f1.wav done", "f3.wav done", ""]
    assert sorted(p.name for p in out.glob("*.wav")) == [f"f{i}.wav" for i in range(5)]
    summary = summary_of(out)
    assert summary["done"] == 5  # rank 0 gathered both shards
    assert [Path(f["input"]).name for f in summary["files"]] == [f"f{i}.wav" for i in range(5)]
    assert result.stdout.count("inference: 5 done") == 1  # only rank 0 reports


def test_two_inputs_that_map_to_one_output_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """in/a.wav and in/a.flac would both become out/a.wav: a ConfigError naming both, nothing written.

    Catches: dropping the duplicate-target check (the second file then fails on, or silently
    replaces, the first one's output).
    """
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "a.wav", noise(8_000, 0.1), 8_000)
    sf.write(inputs / "a.flac", noise(8_000, 0.1, seed=1), 8_000)
    out = tmp_path / "out"
    clash = r"inputs .*in/a\.flac and .*in/a\.wav would both be written to .*out/a\.wav; rename one of them"
    with pytest.raises(ConfigError, match=clash):
        main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"])
    assert not out.exists()


def _two_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """in/f0.wav and in/f1.wav (8 kHz noise, 0.25 s) and the output folder's path."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        sf.write(inputs / f"f{i}.wav", noise(8_000, 0.25, seed=i), 8_000)
    return inputs, tmp_path / "out"


def _writer_failing_on(name: str, error: BaseException):
    """soundfile.write, except that for ``name`` it leaves half a file at the path it is given and raises."""
    write = sf.write

    def failing(file, data, samplerate, **kwargs):
        if Path(file).name.startswith(f".{Path(name).stem}.") or Path(file).name == name:
            Path(file).write_bytes(b"RIFF\x00\x00half a wave file")
            raise error
        return write(file, data, samplerate, **kwargs)

    return failing


def test_an_interrupted_write_leaves_no_partial_output_and_the_rerun_restores_the_file(tmp_path, monkeypatch):
    """Killed while writing f1: f0 is whole, f1 does not exist (no temporary either); a rerun does f1 only.

    Catches: writing outputs under their final name (a half-written f1.wav would then be
    skipped as done by the rerun) and temporaries left beside the outputs.
    """
    inputs, out = _two_inputs(tmp_path)
    monkeypatch.setattr("restorekit.audio.sf.write", _writer_failing_on("f1.wav", KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"])
    assert sorted(p.name for p in out.iterdir()) == ["f0.wav", "inference_config.yaml"]
    monkeypatch.undo()
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"]) == 0
    assert [(Path(f["input"]).name, f["status"]) for f in summary_of(out)["files"]] == [
        ("f0.wav", "skipped"), ("f1.wav", "done")]
    restored = sf.read(out / "f1.wav", dtype="float32")[0]
    np.testing.assert_allclose(restored, sf.read(inputs / "f1.wav", dtype="float32")[0], atol=2e-4)


def test_a_failed_write_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """A full disk while writing f0: f0 failed (reason: the file and the OS error), f1 still done.

    Catches: audio.save letting an OSError through (the whole run ends with a traceback).
    """
    inputs, out = _two_inputs(tmp_path)
    disk_full = OSError(28, "No space left on device")
    monkeypatch.setattr("restorekit.audio.sf.write", _writer_failing_on("f0.wav", disk_full))
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"]) == 1
    f0, f1 = summary_of(out)["files"]
    assert (f0["status"], f1["status"]) == ("failed", "done")
    assert f0["reason"] == (f"{out / 'f0.wav'}: could not be written ([Errno 28] No space left on device); "
                            "check the free space and write permission there")
    assert sorted(p.name for p in out.glob("*.wav")) == ["f1.wav"]


def test_overwrite_true_replaces_existing_outputs(tmp_path: Path) -> None:
    """After the input changes, overwrite=true writes the new restoration over the old output.

    Catches: overwrite ignored when planning (the file is skipped as done) or when saving (the
    write fails on the existing file).
    """
    inputs, out = _two_inputs(tmp_path)
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"]) == 0
    new = noise(8_000, 0.25, seed=7)
    sf.write(inputs / "f0.wav", new, 8_000)
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}", "overwrite=true"]) == 0
    summary = summary_of(out)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    np.testing.assert_allclose(sf.read(out / "f0.wav", dtype="float32")[0], new, atol=2e-4)


class _Picky:
    """Identity, except at 11025 Hz (refused: AudioError) and at 22050 Hz (crashes: a bug's RuntimeError)."""

    chunks_internally = False

    def __call__(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        if sr == 11_025:
            raise AudioError("picky refuses 11025 Hz")
        if sr == 22_050:
            raise RuntimeError("boom")
        return wave, sr

    def enhance_batch(self, items):
        return [self(w, s) for w, s in items]


def test_empty_and_nan_inputs_and_enhancer_failures_are_recorded_and_the_rest_restored(
    tmp_path, monkeypatch, capsys
):
    """One batch of five: an empty file, one with NaN, one the enhancer refuses, one it crashes on,
    and a good one. The four fail with their reasons (a crash also prints its traceback), the good
    one is restored, and the exit status is 1.

    Catches: a failing batch not retried file by file (the good file is lost with it), enhancer
    exceptions other than restorekit's ending the run, unreadable inputs ending the run, and a
    crash's traceback chained to another file's error (retrying inside the batch's ``except``).
    """
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "a_empty.wav", np.zeros(0, np.float32), 8_000)
    sf.write(inputs / "b_nan.wav", np.array([0.1, 0.2, 0.1, np.nan, 0.0], np.float32), 8_000, subtype="FLOAT")
    sf.write(inputs / "c_refused.wav", noise(11_025, 0.1), 11_025)
    sf.write(inputs / "d_crash.wav", noise(22_050, 0.1), 22_050)
    sf.write(inputs / "e_good.wav", noise(8_000, 0.1), 8_000)
    monkeypatch.setattr("restorekit.inference.build_enhancer", lambda cfg: _Picky())
    out = tmp_path / "out"
    assert main(["enhancer=identity", f"input={inputs}", f"output_dir={out}"]) == 1
    reasons = {Path(f["input"]).name: (f["status"], f["reason"]) for f in summary_of(out)["files"]}
    assert reasons == {
        "a_empty.wav": ("failed", f"{inputs}/a_empty.wav: contains no samples; remove it or re-export it"),
        "b_nan.wav": ("failed", (f"{inputs}/b_nan.wav: contains 1 NaN/Inf samples (first at sample 3); "
                                 "the file is corrupt, re-export it")),
        "c_refused.wav": ("failed", "AudioError: picky refuses 11025 Hz"),
        "d_crash.wav": ("failed", "RuntimeError: boom"),
        "e_good.wav": ("done", ""),
    }
    assert sorted(p.name for p in out.glob("*.wav")) == ["e_good.wav"]
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err  # a bug keeps its traceback,
    assert "picky refuses" not in err  # and only its own


def test_the_run_config_is_written_beside_the_outputs(tmp_path: Path) -> None:
    """output_dir/inference_config.yaml holds the resolved run: enhancer, input, output, format, chunking.

    Catches: the config not written, or written before the command-line overrides are applied.
    """
    inputs, out = _two_inputs(tmp_path)
    main(["enhancer=identity", f"input={inputs}", f"output_dir={out}", "format=flac", "chunk.seconds=12"])
    cfg = OmegaConf.load(out / "inference_config.yaml")
    assert (cfg.enhancer.name, cfg.format) == ("identity", "flac")
    assert (cfg.input, cfg.output_dir) == (str(inputs), str(out))
    assert (cfg.chunk.seconds, cfg.chunk.overlap, cfg.overwrite, cfg.batch_size) == (12, 1.0, False, 1)  # batch_size null: 1 on the CPU
