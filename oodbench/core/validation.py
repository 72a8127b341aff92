"""Field types shared by every user-written file (suites, model entries, attack specs).

A value that YAML accepts is not necessarily one oodbench can use: ``n: true`` is the integer 1
to pydantic, ``step_size: .inf`` is "greater than 0", ``steps: 1e15`` never finishes and an empty
``name`` makes an unlabelled table row. These types refuse such values while the file is
validated, so the message names the file, the line and the field, instead of the run failing —
or silently doing something else — later.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import yaml
from pydantic import AfterValidator, BeforeValidator, Field

from oodbench.core.yaml_location import format_loc
from oodbench.core.registry import UnknownNameError

MAX_SEED = 2**63 - 1
"""Seeds are stored in SQLite (signed 64-bit) and fed to torch/numpy generators."""
MAX_COUNT = 10_000_000
"""Most points one probe may ask for (``n``): 10^7 32×32×3 images are already 120 GB."""
MAX_BATCH_SIZE = 1 << 20
MAX_STEPS = 100_000
"""Most attack iterations (the papers use ≤ 1,000); more is a typo, not an experiment."""
MAX_RESTARTS = 1_000


def _not_bool(value: Any) -> Any:
    """YAML ``true`` would otherwise pass as the number 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


def _printable(value: str) -> str:
    """Names and paths end up in file names, SQLite and terminals: a NUL byte or an escape
    sequence there is a copy-paste accident, and a NUL makes every file call fail."""
    bad = sorted({c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ValueError(f"contains control character(s) {codes}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _json_compatible(value: dict[str, Any]) -> dict[str, Any]:
    """Options end up in cache keys and the results store as JSON: no NaN/inf, bytes or dates."""
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"options must be plain YAML values (numbers, strings, lists, "
                         f"mappings; no NaN/inf, binary or dates): {err}") from None
    except RecursionError:
        raise ValueError("options are nested too deeply") from None
    return value


Text = Annotated[str, AfterValidator(_printable)]
"""A string without control characters (paths, URLs, names)."""
Label = Annotated[str, AfterValidator(_printable), AfterValidator(_not_blank)]
"""A name shown in tables and used as a key (and file name): non-empty, printable."""
PathText = Annotated[str, AfterValidator(_printable), AfterValidator(_not_blank)]
"""A path a user names (a results store, a data root): printable and not empty — an empty path
would silently mean the working directory or the suite's folder."""
JsonDict = Annotated[dict[str, Any], AfterValidator(_json_compatible)]
Seed = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=MAX_SEED)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_COUNT)]
BatchSize = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_BATCH_SIZE)]
Steps = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_STEPS)]
Restarts = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_RESTARTS)]
FiniteFloat = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)]


def _named(text: str, path: Path) -> io.StringIO:
    """A stream PyYAML's messages name by the file (instead of ``"<unicode string>"``)."""
    stream = io.StringIO(text)
    stream.name = str(path)  # type: ignore[misc]
    return stream


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _repeated_key(root: Optional[yaml.Node]) -> Optional[tuple[tuple[Any, ...], int, int]]:
    """(location, line, line of the first) of the first key a mapping gives twice, else None.
    PyYAML keeps the last value silently, so a repeated ``eps:`` would run another experiment
    than the one the reader of the file sees first. (Iterative: the tree may be deep.)"""
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    while stack:
        node, loc = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in seen:
                    return loc + (key.value,), line, seen[(key.tag, key.value)]
                seen[(key.tag, key.value)] = line
                stack.append((value, loc + (key.value,)))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, loc + (i,)) for i, item in enumerate(node.value)]
    return None


def read_yaml(path: Path, error: Callable[[str], Exception],
              kind: str = "YAML file") -> tuple[Any, Optional[yaml.Node]]:
    """The data and the node tree (for line numbers) of a YAML file a user wrote.

    Every way such a file can be unreadable becomes ``error("PATH:LINE: …")``: bytes that are not
    UTF-8 (the line of the first bad byte), YAML syntax errors, nesting so deep that the parser
    would overflow Python's recursion limit, and a key given twice in one mapping (YAML loaders
    keep the last one silently). Only a regular file is read: a directory or a device
    (``/dev/zero`` never ends) is refused before any byte is read.
    """
    if not path.exists():
        raise error(f"{path}: no such {kind}")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file but a device, pipe or socket"
        raise error(f"{path}: not a {kind} ({what}); give the path of a .yaml file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                    f"{err.start}); save the file as UTF-8") from None
    try:
        node = yaml.compose(_named(text, path))
        repeated = _repeated_key(node)
        if repeated is not None:
            loc, line, first = repeated
            raise error(f"{path}:{line}: field `{format_loc(loc)}`: given twice (first on line "
                        f"{first}); YAML would silently keep this one: remove one of them")
        return yaml.safe_load(_named(text, path)), node
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "1"
        raise error(f"{path}:{line}: not valid YAML: {err}") from None
    except RecursionError:
        raise error(f"{path}:1: nested too deeply to read (more levels than Python's recursion "
                    "limit); a suite is a few levels deep") from None


def cube_radius(norm: str, dim: int | None) -> float | None:
    """The radius from which an lp ball around any point of [0,1]^dim contains the whole cube
    (Linf: 1, L2: √dim, L1: dim), or None when it depends on an unknown ``dim``."""
    if norm == "Linf":
        return 1.0
    if dim is None:
        return None
    return math.sqrt(dim) if norm == "L2" else float(dim)


__all__ = ["MAX_SEED", "MAX_COUNT", "MAX_BATCH_SIZE", "MAX_STEPS", "MAX_RESTARTS", "Label", "Text",
           "JsonDict", "Seed", "Count", "BatchSize", "Steps", "Restarts", "FiniteFloat",
           "PositiveFloat", "PathText", "cube_radius", "format_loc", "read_yaml"]


def check_registered(registry: Any, name: str) -> str:
    """``name`` when ``registry`` holds it; else a ``ValueError`` carrying the registry's
    "did you mean" message, which pydantic reports at the field (so the error names file:line)."""
    try:
        registry.entry(name)
    except UnknownNameError as err:
        raise ValueError(str(err)) from None
    return name
