"""The root of every error a user can cause (see :mod:`oodbench.core.errors`, where it lives).

This module keeps the import path ``oodbench.errors`` that most of the package uses.
"""

from __future__ import annotations

from oodbench.core.errors import MissingFileError, OodbenchError

__all__ = ["OodbenchError", "MissingFileError"]
