"""Fuzzing `oodbench validate` with broken suites (issue 13 item 3, issue 20 item 6).

Hypothesis mutates a valid suite — a value replaced by a wrong type, an out-of-range, huge or
non-finite number, an empty string or a deeply nested value; an unknown key added; a key
removed; a value wrapped in or unwrapped from a list; or the file's bytes damaged (non-UTF-8
bytes, truncation, a line repeated so that a key is given twice). Since issue 20 the values
and keys include the suites that used to validate but mean nothing: empty lists (``metrics:
[]``), unknown option, objective and split names, tiny ``eps``, non-positive ``num_classes``,
odd ``image_size``, dropped ``path``/``arch``. Every result must be either accepted (exit 0, "ok") or refused by the
``OodbenchError`` handler of the CLI: exit 2, an ``error:`` message that names the file and a
line, and the field whenever the file could be parsed — never a traceback.

The examples are derandomized so the fast tier is stable; set ``OODBENCH_FUZZ_EXAMPLES`` (and
``OODBENCH_FUZZ_RANDOM=1``) to fuzz longer and with fresh examples.
"""

from __future__ import annotations

import copy
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oodbench.cli import main

from conftest import VALID_SUITE  # noqa: E402  (tests/ is on sys.path under pytest)

EXAMPLES = int(os.environ.get("OODBENCH_FUZZ_EXAMPLES", "300"))

# Errors about the file as a whole (before any field exists) name the file and a line only.
FILE_LEVEL = ("not UTF-8 text", "not valid YAML", "nested too deeply",
              "a suite must be a YAML mapping")

BAD_VALUES = st.one_of(
    st.sampled_from([None, True, False, "", " ", "\t", "x", [], {}, [None], {"k": None},
                     0, -1, 1, 2**31, 2**63, 2**64, 10**30, -10**30,
                     0.0, -0.0, 1e-300, 1e9, 1e308, -1e308,
                     float("nan"), float("inf"), float("-inf"),
                     "cuda:99", "quantum", "../../etc/passwd", "é" * 3, "a" * 5000,
                     "validation", "max-conf", 7, 1e-7, {"bogus": 1}]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(-20, 20), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 60).map(lambda depth: _nested(depth)),
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in the suite: mapping keys and list indices, the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def broken_suites(draw: st.DrawFn) -> bytes:
    suite: Any = copy.deepcopy(VALID_SUITE)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(suite)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "replace", "replace", "add-key", "drop",
                                     "wrap", "unwrap"]))
        if not path:  # the root: replace it only (a list, a scalar …)
            suite = draw(BAD_VALUES) if kind == "replace" else suite
            continue
        parent, key = _get(suite, path[:-1]), path[-1]
        if kind == "replace":
            parent[key] = draw(BAD_VALUES)
        elif kind == "add-key" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["extra", "nme", "n", "eps", "1", "", "bogus", "objective",
                                              "split", "num_classes", "image_size", "options",
                                              "output"]))] = draw(BAD_VALUES)
        elif kind == "drop":
            del parent[key]
        elif kind == "wrap":
            parent[key] = [parent[key]]
        elif kind == "unwrap" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key][0]
    try:
        data = yaml.safe_dump(suite, sort_keys=False, allow_unicode=True).encode("utf-8")
    except RecursionError:  # too deep for the dumper itself: write the nesting as flow text
        data = b"name: x\ndescription: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    damage = draw(st.sampled_from(["none"] * 6 + ["bytes", "truncate", "repeat-line"]))
    if damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80\x80", b"\xed\xa0\x80"])) + data[at:]
    elif damage == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "repeat-line":  # a key given twice (or a list item: both are YAML)
        lines = data.split(b"\n")
        at = draw(st.integers(0, len(lines) - 1))
        data = b"\n".join(lines[:at + 1] + lines[at:])
    return data


def test_fuzzed_suites_are_accepted_or_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "fuzzed-suite.yaml"
    runner = CliRunner()
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              derandomize=not os.environ.get("OODBENCH_FUZZ_RANDOM"),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(broken_suites())
    def check(data: bytes) -> None:
        path.write_bytes(data)
        res = runner.invoke(main, ["validate", str(path)])
        assert "Traceback" not in res.output, res.output
        if res.exit_code == 0:
            assert ": ok — " in res.output
            outcomes["accepted"] += 1
            return
        assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
        assert isinstance(res.exception, SystemExit)  # from the OodbenchError handler
        assert res.output.startswith("error: "), res.output
        located = re.findall(rf"{re.escape(str(path))}:(\d+): (.*)", res.output)
        assert located, res.output  # every message names the file and a line …
        for line, text in located:
            assert 1 <= int(line) <= data.count(b"\n") + 1, res.output
            # … and the field, unless the file as a whole could not be read
            assert text.startswith("field `") or any(p in text for p in FILE_LEVEL), res.output
        outcomes["refused"] += 1
        outcomes["refused: a key given twice"] += "given twice" in res.output

    check()
    total = outcomes["refused"] + outcomes["accepted"]
    print(f"\nfuzzed {total} suites: {outcomes['refused']} refused clearly "
          f"({outcomes['refused: a key given twice']} for a key given twice), "
          f"{outcomes['accepted']} accepted")
    assert total >= min(EXAMPLES, 300) * 0.9  # hypothesis ran (almost) every example asked
    assert outcomes["refused"] > total / 2 and outcomes["accepted"] > 0  # mutations bite, not all
