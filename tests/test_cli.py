"""The command line: list, one-line user errors with status 2, the entry-point scripts."""
from restorekit import cli
from restorekit.errors import DataError
from tests_helpers import run_py


def test_list_prints_every_kind(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in cli.KINDS:
        assert any(line.startswith(f"{kind} (") for line in out.splitlines()), kind
    assert "  console: Prints scalars" in out
    assert "      precision: int = 4" in out


def test_list_one_kind_and_one_component(capsys):
    assert cli.main(["list", "loggers", "wandb"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "loggers (1)"
    assert "wandb: Weights & Biases run" in out and "project: str = 'restorekit'" in out


def test_user_errors_print_one_line_and_exit_2(capsys):
    assert cli.main(["list", "modles"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown kind 'modles'. Did you mean 'models'? Kinds: " + ", ".join(cli.KINDS) + "\n"
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'. Did you mean 'train'?" in capsys.readouterr().err


def test_a_multi_line_user_error_prints_on_one_line(capsys, monkeypatch):
    """A user error whose message spans lines (e.g. quoting a library's report) prints as one line, status 2.

    Catches: printing ``str(exc)`` instead of ``one_line(exc)``.
    """
    def fails(args):
        raise DataError("input list x.txt:\n  line 3 names no file\n\tfix it")

    monkeypatch.setitem(cli.COMMANDS, "infer", fails)
    assert cli.main(["infer"]) == 2
    assert capsys.readouterr().err == "error: input list x.txt: line 3 names no file fix it\n"


def test_train_without_config_is_a_user_error(capsys):
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err.startswith("error: no config given: pass exp.config_path=")


def test_entry_point_scripts_exit_2_without_traceback(tmp_path):
    (tmp_path / "c.yaml").write_text("exp: {name: x}\ntrainer: {name: no_such_trainer}\n")
    proc = run_py(["train.py", f"exp.config_path={tmp_path / 'c.yaml'}", "exp.nmae=y"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: override 'exp.nmae=y': key 'exp.nmae' does not exist in the config. Did you mean 'exp.name'? "
        "Prefix it with '+' to add a new key (+exp.nmae=y)"
    ]
    proc = run_py(["-m", "restorekit", "list", "nothing"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_python_m_restorekit_list_runs_in_a_fresh_process():
    proc = run_py(["-m", "restorekit", "list", "optimizers"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("optimizers (")
