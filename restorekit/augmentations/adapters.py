"""Adapters: any audiomentations transform (``audiomentations``) or pedalboard plugin
(``pedalboard``) as a restorekit degradation, chosen by class name in config.

Both keep the degradation contract (float32, same length and rate, all randomness from the
``rng`` they are given). audiomentations draws its parameters from Python's ``random`` and
numpy's global RNG, so each call seeds both from ``rng`` and puts their previous states back
afterwards: the same item seed gives the same output, and nothing else's randomness moves.
pedalboard plugins have no randomness of their own; the adapter draws ``[low, high]`` plugin
arguments from ``rng``.
"""
from __future__ import annotations

import inspect
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.augmentations import AUGMENTATIONS
from restorekit.augmentations.base import Augmentation, as_range, draw
from restorekit.errors import ConfigError
from restorekit.registry import suggest

# Not effects: containers of other plugins, and hosts for third-party plugin binaries.
PEDALBOARD_EXCLUDED = ("Plugin", "Pedalboard", "Chain", "Mix", "PluginContainer", "ExternalPlugin",
                       "VST3Plugin", "AudioUnitPlugin")
MAX_LOGGED_ARRAY = 16  # longer arrays in params are logged by shape, not by value


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed ``random`` and ``numpy.random`` with ``seed`` for the block; restore both afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def plain(value: Any) -> Any:
    """Parameters as plain, loggable Python: numpy scalars to numbers, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= MAX_LOGGED_ARRAY else f"array{value.shape}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _unknown(op: str, arg: str, kind: str, name: Any, names: list[str], where_listed: str) -> ConfigError:
    hint = suggest(str(name), names)
    return ConfigError(
        f"augmentation '{op}': args.{arg}: unknown {kind} {name!r}.{hint} Available: {', '.join(names)} "
        f"({where_listed})"
    )


def _same_length(out: np.ndarray, wave: np.ndarray, op: str, what: str) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32).reshape(-1)
    if out.shape != wave.shape:
        raise ConfigError(
            f"augmentation '{op}': {what} turned {len(wave)} samples into {len(out)}; degradations must "
            "keep the length so degraded and clean audio line up: pick one that keeps it (or its option "
            "for that, e.g. TimeStretch leave_length_unchanged: true)"
        )
    return out


# --- audiomentations -------------------------------------------------------------------------


def audiomentations_transforms() -> dict[str, type]:
    """Every waveform transform audiomentations exports, by class name."""
    import audiomentations
    from audiomentations.core.transforms_interface import BaseWaveformTransform

    return {
        name: obj for name, obj in vars(audiomentations).items()
        if isinstance(obj, type) and issubclass(obj, BaseWaveformTransform) and obj is not BaseWaveformTransform
    }


def _transform_class(name: Any) -> type:
    import audiomentations

    transforms = audiomentations_transforms()
    if name not in transforms:
        raise _unknown("audiomentations", "transform", "audiomentations transform", name, sorted(transforms),
                       f"audiomentations {audiomentations.__version__}; docs: https://iver56.github.io/audiomentations/")
    return transforms[name]


def _check_transform_args(cls: type, args: dict[str, Any]) -> None:
    params = {k: p for k, p in inspect.signature(cls).parameters.items() if k not in ("self", "p")}
    accepted = ", ".join(f"{k}={p.default!r}" if p.default is not p.empty else k for k, p in params.items())
    if "p" in args:
        raise ConfigError(
            f"augmentation 'audiomentations' ({cls.__name__}): args.p is not passed on: the chain op's "
            "own p (next to name) says how often it runs, and the transform always applies (p=1.0). "
            "Move p out of args"
        )
    for key in args:
        if key not in params:
            raise ConfigError(
                f"augmentation 'audiomentations' ({cls.__name__}): args.{key} is not an argument of "
                f"{cls.__name__}.{suggest(key, list(params))} Accepted: {accepted or '(none)'}"
            )
    missing = [k for k, p in params.items() if p.default is p.empty and k not in args]
    if missing:
        raise ConfigError(
            f"augmentation 'audiomentations' ({cls.__name__}): args.{missing[0]} is required by "
            f"{cls.__name__} but missing. Accepted: {accepted}"
        )


@AUGMENTATIONS.register("audiomentations")
class Audiomentations(Augmentation):
    """Any audiomentations waveform transform by class name: args {transform: TanhDistortion, <its own args>}.

    The transform's own arguments (e.g. ``min_distortion``) are passed to it as written; its
    ``p`` is forced to 1.0, because the chain op's ``p`` already says how often it runs.
    Python's ``random`` and numpy's global RNG, which audiomentations draws from, are seeded
    from the op's ``rng`` for each call and restored after it. The transform must keep the
    length (a ConfigError says so otherwise). Params: ``transform`` and the parameters the
    transform drew (audiomentations' ``transform.parameters``).
    """

    requires = ("audiomentations",)

    def __init__(self, transform: str, **transform_args: Any) -> None:
        cls = _transform_class(transform)
        _check_transform_args(cls, transform_args)
        try:
            self.transform = cls(**transform_args, p=1.0)
        except (AssertionError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"augmentation 'audiomentations' ({transform}): the transform rejected args "
                f"{transform_args!r}: {exc or type(exc).__name__}; see its documentation for the allowed values"
            ) from exc
        self.name = transform

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        with seeded_global_rngs(int(rng.integers(2**32))):
            out = self.transform(wave.copy(), sr)
        drawn = {k: v for k, v in self.transform.parameters.items() if k != "should_apply"}
        out = _same_length(out, wave, "audiomentations", self.name)
        return out, {"transform": self.name, **plain(drawn)}


# --- pedalboard ------------------------------------------------------------------------------


def pedalboard_plugins() -> dict[str, type]:
    """Every built-in pedalboard effect plugin, by class name (no containers, no VST/AU hosts)."""
    import pedalboard

    return {
        name: obj for name, obj in vars(pedalboard).items()
        if isinstance(obj, type) and issubclass(obj, pedalboard.Plugin)
        and not name.startswith("_") and name not in PEDALBOARD_EXCLUDED
    }


def _plugin_class(name: Any) -> type:
    import pedalboard

    plugins = pedalboard_plugins()
    if name not in plugins:
        raise _unknown("pedalboard", "plugin", "pedalboard plugin", name, sorted(plugins),
                       f"pedalboard {pedalboard.__version__}; docs: https://spotify.github.io/pedalboard/reference/pedalboard.html")
    return plugins[name]


def plugin_arguments(cls: type) -> list[str]:
    """A pybind11 plugin's constructor arguments, read from its signature line (no inspect.signature)."""
    import re

    doc = (cls.__init__.__doc__ or "").strip().splitlines()
    head = doc[0] if doc else ""
    return [a for a in re.findall(r"(?:\(|, )(\w+): ", head) if a != "self"]


def _enum_member(cls: type, value: str) -> Any:
    """A string naming an enum member of the plugin (e.g. LadderFilter mode 'HPF12'), or the string itself."""
    import pedalboard

    for owner in (cls, pedalboard.Resample):  # Resample.Quality is shared by GSMFullRateCompressor
        for attr in vars(owner).values():
            members = getattr(attr, "__members__", None)
            if isinstance(attr, type) and isinstance(members, Mapping) and value in members:
                return members[value]
    return value


def _is_range(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


@AUGMENTATIONS.register("pedalboard")
class Pedalboard(Augmentation):
    """Any pedalboard plugin by class name: args {plugin: Chorus, <plugin args: values or [low, high] ranges>}.

    A plugin argument given as ``[low, high]`` is drawn uniformly (a float) per sample from
    the op's ``rng``; a number, boolean or string is passed as is (a string naming an enum
    member, e.g. LadderFilter ``mode: HPF12``, is converted). A fresh plugin is made per call,
    so no state (a reverb tail, a delay line) leaks from one sample into the next. Arguments
    are checked at build time by making the plugin at both ends of every range. pedalboard
    compensates the latency that plugins report; codecs' own delays are not re-aligned here
    (use ``codec`` for that). Params: ``plugin`` and the values used.
    """

    def __init__(self, plugin: str, **plugin_args: Any) -> None:
        cls = _plugin_class(plugin)
        accepted = plugin_arguments(cls)
        for key in plugin_args:
            if key not in accepted:
                raise ConfigError(
                    f"augmentation 'pedalboard' ({plugin}): args.{key} is not an argument of "
                    f"pedalboard.{plugin}.{suggest(key, accepted)} Accepted: {', '.join(accepted) or '(none)'}"
                )
        self.plugin = plugin
        self.ranges = {k: as_range(v, "pedalboard", k) for k, v in plugin_args.items() if _is_range(v)}
        self.fixed = {k: v for k, v in plugin_args.items() if k not in self.ranges}
        for end in (0, 1):
            self._make({k: r[end] for k, r in self.ranges.items()})

    def _make(self, drawn: dict[str, float]) -> Any:
        cls = _plugin_class(self.plugin)
        fixed = {k: _enum_member(cls, v) if isinstance(v, str) else v for k, v in self.fixed.items()}
        try:
            return cls(**fixed, **drawn)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(
                f"augmentation 'pedalboard' ({self.plugin}): pedalboard.{self.plugin} rejected "
                f"{ {**self.fixed, **drawn} }: {' '.join(str(exc).split())}"
            ) from exc

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        drawn = {k: draw(rng, r) for k, r in self.ranges.items()}
        out = self._make(drawn)(wave, sr)
        out = _same_length(out, wave, "pedalboard", self.plugin)
        return out, {"plugin": self.plugin, **plain(self.fixed), **drawn}
