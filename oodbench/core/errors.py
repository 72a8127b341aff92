"""The one root of every error a user can cause, so the CLI can tell them from bugs.

Anything wrong with what a user gave oodbench — a suite, a checkpoint, a data root, a results
store, a leaderboard, a model card, a model whose outputs are unusable — is raised as a subclass
of :class:`OodbenchError`. The CLI prints those as one clear message (no traceback) and exits
non-zero; any other exception is a bug in oodbench or a plugin and keeps its traceback.

Each subclass also derives from the builtin type it had before the root existed (``ValueError``,
``KeyError``, ``FileNotFoundError`` …), so existing ``except`` clauses keep working. The errors
that more than one layer raises or catches live here; the others stay beside their code.
"""

from __future__ import annotations


class OodbenchError(Exception):
    """Base of every error a user can cause; the message says what is wrong and how to fix it."""


class MissingFileError(OodbenchError, FileNotFoundError):
    """A file the user named (leaderboard, results store, checkpoint to submit) does not exist."""


class DatasetError(OodbenchError, ValueError):
    """A data set that cannot be loaded as asked (bad options, unusable files); the message
    names the data set."""


class ReportError(OodbenchError, ValueError):
    """A report that cannot be made as asked (no such run, layout without data, bad card)."""


class ZooError(OodbenchError, ValueError):
    """A card that cannot be used (bad field, missing or mismatching weights, unknown name)."""


__all__ = ["DatasetError", "MissingFileError", "OodbenchError", "ReportError", "ZooError"]
