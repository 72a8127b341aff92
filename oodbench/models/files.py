"""Checkpoint files: path resolution, sha256 (cached per process), verification and download."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from oodbench.models.errors import ModelLoadError, spec_error
from oodbench.models.spec import ModelSpec

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
"""A sha256 pin, once stripped and lower-cased: 64 hex digits (``sha256sum`` output)."""
_sha_cache: dict[tuple[str, int, int, int, int], str] = {}
_sha_lock = threading.Lock()


def resolve_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] = ".") -> Path:
    """``~`` expanded; a relative path is taken relative to ``base_dir`` (the suite's folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir).expanduser() / p


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, cached in-process by (absolute path, size, mtime, ctime, inode), so
    asking again for an unchanged file is a ``stat`` call; rewriting or replacing the file
    invalidates the entry."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    digest = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _sha_lock:
        _sha_cache[key] = value
    return value


def expected_sha256(spec: ModelSpec) -> str | None:
    """``spec.sha256`` lower-cased, checked to be 64 hex digits."""
    if spec.sha256 is None:
        return None
    value = spec.sha256.strip().lower()
    if not SHA256_RE.match(value):
        raise spec_error(spec.name, "sha256", f"{spec.sha256!r} is not a sha256 (64 hex digits)",
                         "give the full digest, e.g. the output of `sha256sum FILE`")
    return value


def verify_sha256(spec: ModelSpec, path: Path) -> None:
    """Raise :class:`ModelLoadError` if ``spec.sha256`` is set and ``path`` does not match it."""
    expected = expected_sha256(spec)
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise spec_error(
            spec.name, "sha256",
            f"{path} has sha256 {actual}, the model entry expects {expected}",
            "the file is corrupt or a different checkpoint: download it again (delete it so that "
            "`url` fetches it anew) or, if this is the intended file, update `sha256`")


def require_file(spec: ModelSpec, path: Path, field: str = "path") -> Path:
    """The checkpoint at ``path``, downloaded from ``spec.url`` if missing, sha256-verified."""
    if not path.exists():
        if not spec.url:
            raise spec_error(
                spec.name, field, f"file {path} does not exist",
                f"correct `{field}` (relative paths are resolved against the suite's folder), "
                "put the file there, or add `url:` (and `sha256:`) to download it")
        download(spec, path)
    if not path.is_file():
        raise spec_error(spec.name, field, f"{path} is not a file", f"point `{field}` at a file")
    verify_sha256(spec, path)
    return path


def download(spec: ModelSpec, path: Path) -> None:
    """Fetch ``spec.url`` to ``path``; on a sha256 mismatch the download is deleted again."""
    import torch.hub

    expected = expected_sha256(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec.url, str(path), progress=True)
    except Exception as err:  # network errors come in many types (URLError, HTTPError, OSError…)
        raise spec_error(spec.name, "url", f"downloading {spec.url} to {path} failed ({err})",
                         "check the URL and the network, or download the file by hand to that "
                         "path") from err
    if expected is not None and file_sha256(path) != expected:
        actual = file_sha256(path)
        path.unlink()
        raise spec_error(spec.name, "sha256",
                         f"the file downloaded from {spec.url} has sha256 {actual}, expected "
                         f"{expected}; the download was deleted",
                         "check `url` and `sha256` in the model entry")


__all__ = ["resolve_path", "file_sha256", "verify_sha256", "require_file", "download",
           "ModelLoadError"]
