"""What a weights file really is, from its first bytes, before a loader misreads it.

A failed download is the commonest broken checkpoint: Google Drive and many hosts answer a
request for a big file with an HTML page ("can't scan this file for viruses"), which is then
saved as ``model.pt``. torch.load reports that as an unpickling error, which oodbench used to
blame on ``trust_code``; the user must instead be told the file is not a checkpoint at all.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # pickle protocol ≥ 2 (legacy torch.save) starts with PROTO
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--")
REDOWNLOAD_FIX = ("point `path` at the checkpoint itself; if it was downloaded, download it again "
                  "(Google Drive and other hosts serve an HTML page instead of a big file: use "
                  "the direct-download link) and pin its `sha256`")


def torch_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` / ``torch.jit.save`` file, or None if it may be.

    torch.save writes a zip archive (PyTorch ≥ 1.6) or, in the legacy format, a pickle; anything
    else — an empty file, an HTML page, random bytes, a zip cut short — is refused by its bytes.
    """
    head = _head(path)
    problem = _common_problem(path, head)
    if problem is not None:
        return problem
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return (f"is a truncated or damaged zip archive ({path.stat().st_size} bytes; "
                    "torch.save writes complete zip archives)")
        return None
    if head[:1] == bytes([_PICKLE_PROTO]):
        return None
    if _is_safetensors(path, head):
        return "is a safetensors file, not a torch.save checkpoint (use `adapter: safetensors`)"
    return f"is not a PyTorch checkpoint (it starts with bytes {head[:8].hex(' ')})"


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a safetensors file (8-byte header length, then a JSON header)."""
    head = _head(path)
    problem = _common_problem(path, head)
    if problem is not None:
        return problem
    if _is_safetensors(path, head):
        return None
    if head.startswith(_ZIP_MAGIC) or head[:1] == bytes([_PICKLE_PROTO]):
        return "is a torch.save checkpoint, not safetensors (use `adapter: checkpoint`)"
    return f"is not a safetensors file (it starts with bytes {head[:8].hex(' ')})"


def _head(path: Path, size: int = 1024) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _common_problem(path: Path, head: bytes) -> str | None:
    if not head:
        return "is empty (0 bytes): an interrupted download or copy"
    lowered = head.lstrip().lower()
    if any(lowered.startswith(m) for m in _HTML_MARKERS) or b"<html" in lowered:
        return "is an HTML page, not a PyTorch checkpoint: the download fetched a web page"
    return None


def _is_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    if not 2 <= length <= path.stat().st_size - 8 or head[8:9] != b"{":
        return False
    if length + 8 <= len(head):
        try:
            json.loads(head[8:8 + length])
        except ValueError:
            return False
    return True


__all__ = ["REDOWNLOAD_FIX", "torch_file_problem", "safetensors_problem"]
