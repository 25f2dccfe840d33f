"""The ``restorekit`` command: --version, per-command --help, the restore alias, user mistakes in one line."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import restorekit
from restorekit.cli import main
from restorekit.errors import ConfigError
from restorekit.models import MODELS
from tests_helpers import REPO, offline_env


def test_version_and_per_command_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"restorekit {restorekit.__version__}"
    for command in ("list", "train", "restore", "infer", "evaluate"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        expected = "restore" if command == "infer" else command
        assert out.startswith(f"usage: restorekit {expected}"), out[:80]


def test_restore_is_the_inference_command(tmp_path):
    src = tmp_path / "in" / "a.wav"
    src.parent.mkdir()
    sf.write(src, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    assert main(["restore", "enhancer=identity", f"input={src}", f"output_dir={tmp_path / 'out'}"]) == 0
    np.testing.assert_allclose(sf.read(tmp_path / "out" / "a.wav")[0], sf.read(src)[0], atol=1e-4)


def test_list_into_a_closed_pipe_ends_quietly():
    """Catches BrokenPipeError tracebacks from `restorekit list | head -1`."""
    proc = subprocess.Popen([sys.executable, "-m", "restorekit", "list"], cwd=REPO, env=offline_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"models (")
    proc.stdout.close()  # the reader is gone, as `head` would be
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_list_of_one_component_names_its_file_and_line(capsys):
    assert main(["list", "models", "wavefit"]) == 0
    out = capsys.readouterr().out
    assert "defined in restorekit.models.wavefit.WaveFit (" in out
    path, line = out.rsplit("(", 1)[1].rstrip().rstrip(")").rsplit(":", 1)
    assert path.endswith("restorekit/models/wavefit.py")
    assert "class WaveFit" in "".join(open(path).read().splitlines(True)[int(line) - 1: int(line) + 1])


def test_registry_builds_in_a_notebook_without_where():
    assert type(MODELS.build({"name": "mpd", "args": {"periods": [2]}})).__name__ == "MultiPeriodDiscriminator"
    with pytest.raises(ConfigError, match=r"^models.args.periodz: models 'mpd' has no argument 'periodz'"):
        MODELS.build({"name": "mpd", "args": {"periodz": [2]}})


def test_cuda_without_a_gpu_is_one_line_for_restore_too(tmp_path, capsys):
    """Catches exp.device=cuda reaching torch (a RuntimeError traceback) when no GPU is visible."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    src = tmp_path / "a.wav"
    sf.write(src, np.zeros(1600, np.float32), 16000)
    export = tmp_path / "export"  # never reached: the device is checked first
    export.mkdir()
    (export / "config.yaml").write_text("models: {}\n")
    assert main(["restore", f"exp.ckpt_dir={export}", "exp.device=cuda", f"input={src}",
                 f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: exp.device is 'cuda' but no CUDA device is visible; use exp.device=cpu or auto"]


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.args.max_steps=five", r"trainer.args.max_steps must be an int, got 'five' \(str\)"),
    ("models.vocoder.args.iterations=three", r"models.vocoder.args.iterations must be an int, got 'three' \(str\)"),
    ("models.vocoder.args.iteratons=3", r"Did you mean 'models.vocoder.args.iterations'\?"),
])
def test_user_mistakes_on_the_command_line_are_one_line_and_exit_2(override, message):
    """Catches wrong-typed values reaching a constructor (a TypeError/ValueError traceback) and
    nested typos without the full path suggested."""
    proc = subprocess.run([sys.executable, "train.py", "exp.config_path=configs/quickstart/stage2.yaml", "exp.device=cpu",
                           f"exp.output_dir={REPO}/outputs/never_written", override],
                          cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
    assert not (REPO / "outputs" / "never_written").exists()


def test_list_of_a_trainer_prints_every_setting_with_its_default(capsys):
    from dataclasses import fields

    from restorekit.trainers.vocoder import VocoderArgs

    assert main(["list", "trainers", "miipher2_vocoder_pretrain"]) == 0
    out = capsys.readouterr().out
    assert "settings (trainer.args):" in out
    for f in fields(VocoderArgs):
        assert f"      {f.name}: {f.type} = " in out, f.name
    assert "      target_peak: float | None = 0.9" in out and "      max_steps: int = 1000" in out


def test_a_typo_in_a_role_this_stage_does_not_build_fails_at_start(capsys, tmp_path):
    """Stage 1 builds only the cleaner; a typo in models.vocoder used to surface two stages later.
    Catches the models section not being validated as a whole."""
    out = tmp_path / "never"
    assert main(["train", f"exp.config_path={REPO}/configs/quickstart/stage1.yaml", "exp.device=cpu",
                 f"exp.output_dir={out}", "+models.vocoder.args.iteratons=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: models.vocoder.args.iteratons: models 'wavefit' has no argument 'iteratons'. Did you mean 'iterations'?")
    assert not out.exists()
    assert main(["train", f"exp.config_path={REPO}/configs/quickstart/stage1.yaml", "exp.device=cpu", f"exp.output_dir={out}",
                 "models.discriminators.args.members.0.args.periods=[2, 3]",
                 "+models.discriminators.args.members.1.args.depht=2"]) == 2
    assert "models.discriminators.args.members[1].args.depht: models 'ms_stft' has no argument" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_one_line_for_train_too(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible here")
    assert main(["train", f"exp.config_path={REPO}/configs/quickstart/stage1.yaml", "exp.device=cuda",
                 f"exp.output_dir={tmp_path / 'never'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: exp.device is 'cuda' but no CUDA device is visible; use exp.device=cpu or auto"]
    assert not (tmp_path / "never").exists()
