"""Writing output files (reports, figures, leaderboard pages): a write that fails — a full disk,
a path that is not writable — is one clear error naming the file, never a traceback."""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from oodbench.report.data import ReportError


def write_failure(path: Path, err: OSError) -> str:
    """The message for a failed write of ``path``."""
    why = err.strerror or str(err)
    hint = ("the disk is full: free space and run again" if err.errno == errno.ENOSPC
            else "choose another output path or fix its permissions")
    return f"cannot write {path}: {why} ({hint})"


@contextmanager
def writing(path: Path, error: type[Exception] = ReportError) -> Iterator[None]:
    """Turn an :class:`OSError` raised while writing ``path`` into ``error``."""
    try:
        yield
    except OSError as err:
        raise error(write_failure(Path(path), err)) from None


def write_text(path: Path, text: str, error: type[Exception] = ReportError) -> None:
    """Write ``text`` (UTF-8) to ``path``, creating its folder; failures as :func:`writing`."""
    path = Path(path)
    with writing(path, error):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
