"""inference: trees, corrupt files, resumption, refusal, long files, torchrun sharding."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from restorekit.errors import ConfigError, DataError
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
    result = run_py(["inference.py", "enhancer=identiy", f"input={tmp_path}", f"output_dir={tmp_path}/o"], timeout=120)
    assert result.returncode == 2
    assert "holds no audio files" in result.stderr or "Did you mean 'identity'" in result.stderr


def test_torchrun_shards_files_across_two_processes(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(5):
        sf.write(inputs / f"f{i}.wav", noise(8_000, 0.25, seed=i), 8_000)
    out = tmp_path / "out"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2",
         "inference.py", "enhancer=identity", f"input={inputs}", f"output_dir={out}"],
        cwd=REPO, env=offline_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.wav")) == [f"f{i}.wav" for i in range(5)]
    summary = summary_of(out)
    assert summary["done"] == 5 and len(summary["files"]) == 5  # rank 0 gathered both shards
    assert result.stdout.count("inference: 5 done") == 1  # only rank 0 reports
