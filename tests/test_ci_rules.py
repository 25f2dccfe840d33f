"""CI rules: in CI (CI=true) a missing part of the test environment fails the run instead of
skipping tests; locally the same tests skip. Also what scripts/install_system_deps.sh and the
Makefile do when system packages the tests use cannot be installed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TESTS = '''
import pytest

@pytest.mark.real_data
def test_uses_the_recordings():
    pass

@pytest.fixture
def browser():
    pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_system_deps.sh)")

def test_drives_a_browser(browser):
    pass

def test_optional():
    pytest.skip("an optional package is absent")
'''


def run_sample(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> pytest.RunResult:
    """The sample tests under a copy of tests/conftest.py, with no real recordings, CI set to ``ci``."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    real_data: uses the real recordings\n")
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    monkeypatch.setenv("RESTOREKIT_REAL_DATA", str(pytester.path / "no_recordings"))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-rA")


def test_in_ci_missing_recordings_or_browser_fail_the_run(pytester, monkeypatch):
    """Both skips happen while setting the test up, so pytest reports them as errors; either way
    the run fails. Mutation caught: the conftest's makereport hook left out (CI would skip them
    silently)."""
    result = run_sample(pytester, monkeypatch, "true")
    result.assert_outcomes(errors=2, skipped=1)
    result.stdout.re_match_lines([
        r"SKIPPED \[1\] test_sample.py:\d+: an optional package is absent",
        (r"ERROR test_sample.py::test_uses_the_recordings - CI=true, so this test must run, not skip: "
         r"real recordings not found at .*no_recordings"),
        (r"ERROR test_sample.py::test_drives_a_browser - CI=true, so this test must run, not skip: "
         r"Debian's chromium .*scripts/install_system_deps.sh"),
    ], consecutive=False)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_the_same_tests_skip_cleanly(pytester, monkeypatch, ci):
    result = run_sample(pytester, monkeypatch, ci)
    result.assert_outcomes(skipped=3)
    assert result.ret == pytest.ExitCode.OK


def fake_system(tmp_path: Path, uid: int, apt_installs: bool) -> dict[str, str]:
    """An environment for install_system_deps.sh: an empty root (nothing installed), an ``id`` that
    says ``uid``, and an ``apt-get`` that logs its arguments and then installs into that root
    (``apt_installs``) or fails."""
    root, stubs = tmp_path / "root", tmp_path / "stubs"
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    stubs.mkdir(exist_ok=True)
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    install = ('touch "$RESTOREKIT_SYSROOT/usr/bin/chromium" "$RESTOREKIT_SYSROOT/usr/bin/chromedriver"\n'
               'chmod +x "$RESTOREKIT_SYSROOT"/usr/bin/*\n') if apt_installs else "exit 100\n"
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/apt.log"\n'
                                   f'[ "$1" = install ] || exit 0\n{install}')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return {**env, "RESTOREKIT_SYSROOT": str(root), "PATH": f"{stubs}:{env.get('PATH', '/usr/bin:/bin')}"}


def install_deps(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "install_system_deps.sh")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_install_system_deps_fails_when_it_cannot_install(tmp_path):
    """Mutation caught: the script ending with ``exit 0`` whatever happened (as it did)."""
    not_root = install_deps(fake_system(tmp_path / "a", uid=1000, apt_installs=True))
    assert not_root.returncode == 1
    assert "missing, and installing needs root and apt-get; install them yourself" in not_root.stderr
    assert "chromium" in not_root.stderr and "chromium-driver" in not_root.stderr
    apt_fails = install_deps(fake_system(tmp_path / "b", uid=0, apt_installs=False))
    assert apt_fails.returncode == 1 and "error: apt-get could not install" in apt_fails.stderr


def test_install_system_deps_installs_what_is_missing_and_then_succeeds(tmp_path):
    env = fake_system(tmp_path, uid=0, apt_installs=True)
    first = install_deps(env)
    assert first.returncode == 0, first.stderr
    install = (tmp_path / "apt.log").read_text().splitlines()[-1].split()
    assert install[:3] == ["install", "-y", "-qq"] and sorted(install[3:]) == ["chromium", "chromium-driver"]
    assert install_deps(env).returncode == 0  # present now: nothing to do
    assert len((tmp_path / "apt.log").read_text().splitlines()) == 2  # update + install, once


@pytest.mark.parametrize("ci, code", [("true", 2), (None, 0)])
def test_make_system_deps_is_fatal_only_in_ci(tmp_path, ci, code):
    """make exits 2 when a recipe fails. Mutation caught: the Makefile ignoring the script's status."""
    env = fake_system(tmp_path, uid=1000, apt_installs=False)
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run(["make", "--no-print-directory", "system-deps"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == code, proc.stderr
    expected = "the tests need these system packages" if ci else "warning: the tests that need the missing"
    assert expected in proc.stderr
