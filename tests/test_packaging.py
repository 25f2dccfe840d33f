"""The install that `make test` builds: dependency lists agree, no torchaudio/torchcodec."""
import importlib.metadata as md
import re

import pytest
import tomllib

from tests_helpers import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_requirements_txt_lists_the_same_runtime_dependencies_as_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert sorted(reqs) == sorted(pyproject)


@pytest.mark.parametrize("banned", ["torchaudio", "torchcodec"])
def test_banned_packages_are_not_installed(banned):
    with pytest.raises(md.PackageNotFoundError):
        md.distribution(banned)


@pytest.mark.parametrize("banned", ["torchaudio", "torchcodec"])
def test_no_installed_distribution_requires_a_banned_package(banned):
    offenders = []
    for dist in md.distributions():
        for req in dist.requires or []:
            if _name(req) == banned and "extra ==" not in req:
                offenders.append(f"{dist.metadata['Name']} -> {req}")
    assert offenders == []


def test_torch_is_the_pinned_cpu_build():
    assert md.version("torch").split("+")[0] == "2.13.0"
