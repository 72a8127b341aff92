"""Safe file names from user-chosen names (models, suites, attacks, figures).

Names come from suite files and leaderboard submissions, so they may hold ``/``, ``..``, spaces
or control characters; joined to a folder as they are, ``../../x`` writes outside it. One rule
turns any of them into a single path component, so every product file stays in its folder.
"""

from __future__ import annotations

import re


def slugify(name: str, fallback: str = "model") -> str:
    """A file-name-safe form of ``name``: letters, digits, ``.``, ``_`` and ``-`` only, never
    starting or ending with ``.`` or ``-`` (so never ``..``); ``fallback`` when nothing is left."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return slug or fallback


__all__ = ["slugify"]
