"""User-facing errors.

Every exception here means "the user can fix this": a bad config, a missing file, unreadable
audio. Messages say what went wrong, where (config path or file), and how to fix it. The CLI
prints them in one line and exits with status 2; any other exception is a bug and keeps its
traceback.
"""
from __future__ import annotations


class RestorekitError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(RestorekitError):
    """A config file, config node or command-line override is wrong."""


class RegistryError(ConfigError):
    """A component name is unknown, or registered twice."""


class AudioError(RestorekitError):
    """An audio file is missing, unreadable, empty, non-finite or at an unusable rate."""


class DataError(RestorekitError):
    """A data set (folder, manifest, pairing) is missing, empty or inconsistent."""


class CheckpointError(RestorekitError):
    """A checkpoint or export is missing, incomplete or incompatible."""


class TrainingError(RestorekitError):
    """Training cannot go on: e.g. losses or gradients stayed non-finite for many steps."""


def one_line(exc: BaseException) -> str:
    """An exception's message with all whitespace runs (newlines too) collapsed to one space."""
    return " ".join(str(exc).split())
