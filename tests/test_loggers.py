import io
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from restorekit.errors import ConfigError
from restorekit.loggers import build_loggers
from restorekit.loggers.console import ConsoleLogger
from restorekit.loggers.wandb_logger import resolve_mode
from tests_helpers import offline_env


def test_console_logger_formats_sorted_scalars():
    buf = io.StringIO()
    ConsoleLogger(stream=buf).log_scalars({"loss/mel_l1": 0.123456, "grad/norm": 2}, step=7)
    assert buf.getvalue() == "step 7 | grad/norm 2 | loss/mel_l1 0.1235\n"


def test_build_loggers_always_includes_console(tmp_path):
    multi = build_loggers("console", tmp_path)
    assert [type(lg).__name__ for lg in multi.loggers] == ["ConsoleLogger"]
    with pytest.raises(ConfigError, match=r"unknown loggers 'wandbb' at exp\.logger\.name\. Did you mean 'wandb'\?"):
        build_loggers({"name": "wandbb"}, tmp_path)


def test_wandb_mode_resolution(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled"
    assert resolve_mode("offline") == "offline"
    with pytest.raises(ConfigError, match="'sometimes' is not a wandb mode"):
        resolve_mode("sometimes")


SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from restorekit.loggers import build_loggers
    log = build_loggers({"name": "wandb", "args": {"project": "t", "name": "run1"}}, sys.argv[1])
    log.log_config({"exp": {"seed": 1}})
    for step in range(3):
        log.log_scalars({"loss/total": 1.0 / (step + 1)}, step)
    log.log_audio("audio/x", np.zeros(1600, dtype=np.float32), 16000, 2)
    log.log_image("spec/x", np.zeros((8, 8, 3), dtype=np.uint8), 2)
    print("RUN_DIR", log.loggers[1].run_dir)
    log.close()
    import psutil
    print("CHILDREN", len(psutil.Process().children(recursive=True)))
    """
)


def _session_procs(sid: int) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if os.getsid(p.info["pid"]) == sid:
                found.append(f"{p.info['pid']} {p.info['name']}")
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


@pytest.mark.slow
def test_wandb_offline_writes_run_folder_and_leaves_no_process(tmp_path):
    env = offline_env()
    env.pop("WANDB_API_KEY", None)
    env["WANDB_MODE"] = "offline"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    assert f"RUN_DIR {runs[0]}" in out
    assert "CHILDREN 0" in out  # close() stops wandb's service, not just interpreter exit
    assert list(runs[0].glob("*.wandb")), "the offline run has no .wandb history file"
    deadline = time.time() + 10
    while _session_procs(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _session_procs(proc.pid) == []
