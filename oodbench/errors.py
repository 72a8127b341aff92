"""The one root of every error a user can cause, so the CLI can tell them from bugs.

Anything wrong with what a user gave oodbench — a suite, a checkpoint, a data root, a results
store, a leaderboard, a model card, a model whose outputs are unusable — is raised as a subclass
of :class:`OodbenchError`. The CLI prints those as one clear message (no traceback) and exits
non-zero; any other exception is a bug in oodbench or a plugin and keeps its traceback.

Each subclass also derives from the builtin type it had before the root existed (``ValueError``,
``KeyError``, ``FileNotFoundError`` …), so existing ``except`` clauses keep working.
"""

from __future__ import annotations


class OodbenchError(Exception):
    """Base of every error a user can cause; the message says what is wrong and how to fix it."""


class MissingFileError(OodbenchError, FileNotFoundError):
    """A file the user named (leaderboard, results store, checkpoint to submit) does not exist."""


__all__ = ["OodbenchError", "MissingFileError"]
