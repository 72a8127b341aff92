"""Regression tests for issue 13 item 3 and issue 14 defect 9: every broken suite measured on
main (a traceback, or silently accepted) is now refused by `oodbench validate` with one
``error:`` message naming the file, the line and the field, exit code 2, no traceback."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner

from oodbench.cli import main
from oodbench.core.errors import OodbenchError
from oodbench.pipeline.suite import SuiteError, load_suite

from conftest import VALID_SUITE  # noqa: E402  (tests/ is on sys.path under pytest)

BASE = VALID_SUITE


def mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    suite = copy.deepcopy(BASE)
    change(suite)
    return suite


def _attack(suite: dict[str, Any]) -> dict[str, Any]:
    return suite["probes"][1]["attack"]


# (case, mutation, field named in the message, words the message must contain)
CASES = [
    ("device quantum", lambda s: s.update(device="quantum"), "device", "not a device"),
    ("seed 2^64", lambda s: s.update(seed=2**64), "seed", "less than or equal"),
    ("seed negative", lambda s: s.update(seed=-1), "seed", "greater than or equal"),
    ("unknown dataset option", lambda s: s["in_distribution"]["options"].update(colour=1),
     "in_distribution.options", "unknown option(s) colour"),
    ("classes [99]", lambda s: s["in_distribution"]["options"].update(classes=[99]),
     "in_distribution.options", "digits 0–9"),
    ("classes [-1]", lambda s: s["in_distribution"]["options"].update(classes=[-1]),
     "in_distribution.options", "digits 0–9"),
    ("classes not a list", lambda s: s["in_distribution"]["options"].update(classes=3),
     "in_distribution.options", "digits 0–9"),
    ("std [0]", lambda s: s["models"][0].update(normalize={"mean": [0.5], "std": [0]}),
     "models[0].normalize.std[0]", "greater than 0"),
    ("normalize empty", lambda s: s["models"][0].update(normalize={"mean": [], "std": []}),
     "models[0].normalize.mean", "at least 1"),
    ("normalize channels", lambda s: s["models"][0].update(
        normalize={"mean": [0.5] * 3, "std": [0.2] * 3}), "models[0].normalize", "1 channel"),
    ("probe n 10^30", lambda s: s["probes"][0].update(n=10**30), "probes[0].n", "less than"),
    ("n: true", lambda s: s["probes"][0].update(n=True), "probes[0].n", "boolean"),
    ("eps 1e9", lambda s: _attack(s).update(threat={"norm": "Linf", "eps": 1e9}),
     "probes[1].attack.threat.eps", "whole image cube"),
    ("L2 eps over the cube", lambda s: _attack(s).update(threat={"norm": "L2", "eps": 8.0}),
     "probes[1].attack.threat.eps", "whole image cube"),
    ("eps nan", lambda s: _attack(s).update(threat={"norm": "Linf", "eps": float("nan")}),
     "probes[1].attack.threat.eps", ""),
    ("step size inf", lambda s: _attack(s).update(step_size=float("inf")),
     "probes[1].attack.step_size", "finite"),
    ("steps 10^15", lambda s: _attack(s).update(steps=10**15), "probes[1].attack.steps",
     "less than or equal to 100000"),
    ("restarts 10^9", lambda s: _attack(s).update(restarts=10**9), "probes[1].attack.restarts",
     "less than or equal to 1000"),
    ("batch_size 10^12", lambda s: s.update(batch_size=10**12), "batch_size", "less than"),
    ("empty name", lambda s: s.update(name=""), "name", "must not be empty"),
    ("blank model name", lambda s: s["models"][0].update(name="  "), "models[0].name",
     "must not be empty"),
    ("empty probe name", lambda s: s["probes"][0].update(name=""), "probes[0].name",
     "must not be empty"),
    ("nan in options", lambda s: s["probes"][0].update(options={"x": float("nan")}),
     "probes[0].options", "NaN"),
    # issue 20 item 6: suites that validated but meant nothing
    ("metrics []", lambda s: s.update(metrics=[]), "metrics", "at least 1"),
    ("unknown attack option", lambda s: _attack(s).update(options={"bogus": 1}),
     "probes[1].attack.options", "unknown option(s) bogus; it takes no options"),
    ("unknown autoattack option", lambda s: s["probes"].append(
        {"name": "aa", "attack": {"name": "autoattack", "options": {"bogus": 1}}}),
     "probes[2].attack.options", "unknown option(s) bogus; known: version"),
    ("unknown attack objective", lambda s: _attack(s).update(objective="max-conf"),
     "probes[1].attack.objective", "unknown objectives 'max-conf'"),
    ("unknown architecture option", lambda s: s["models"][0]["arch_options"].update(bogus=1),
     "models[0].arch_options", "unexpected keyword argument 'bogus'"),
    ("odd image_size", lambda s: s["models"][0]["arch_options"].update(image_size=7),
     "models[0].arch_options", "even image size"),
    ("num_classes 0", lambda s: s["models"][0]["arch_options"].update(num_classes=0),
     "models[0].arch_options.num_classes", "positive integer"),
    ("num_classes -1", lambda s: s["models"][0]["arch_options"].update(num_classes=-1),
     "models[0].arch_options.num_classes", "positive integer"),
    ("model without path", lambda s: s["models"][0].pop("path"), "models[0].path",
     "adapter 'safetensors' needs `path`"),
    ("model without arch", lambda s: s["models"][0].pop("arch"), "models[0].arch",
     "adapter 'safetensors' needs `arch`"),
    ("checkpoint without arch", lambda s: s["models"][0].update(adapter="checkpoint", arch=None),
     "models[0].arch", "adapter 'checkpoint' needs `arch`"),
    ("python adapter without trust_code", lambda s: s["models"][0].update(
        adapter="python", factory="nets.py:build", path=None, arch=None, arch_options={}),
     "models[0].trust_code", "needs `trust_code: true`"),
    ("split validation", lambda s: s["in_distribution"].update(split="validation"),
     "in_distribution.split", "dataset 'digits' has no split 'validation'; choose one of train, test"),
    ("fit split validation", lambda s: s.update(fit={"split": "validation"}),
     "fit.split", "has no split 'validation'"),
    ("output ''", lambda s: s.update(output=""), "output", "must not be empty"),
    ("data_root ''", lambda s: s.update(data_root=" "), "data_root", "must not be empty"),
    ("eps 1e-300", lambda s: _attack(s).update(threat={"norm": "Linf", "eps": 1e-300}),
     "probes[1].attack.threat.eps", "below 3.92e-06 (1/255/1000"),
]


def _validate(path: Path) -> Any:
    return CliRunner().invoke(main, ["validate", str(path)])


@pytest.mark.parametrize("case,change,field,words", CASES, ids=[c[0] for c in CASES])
def test_broken_suite_is_refused_with_file_line_field(tmp_path, case, change, field, words):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(mutate(change), sort_keys=False))
    res = _validate(path)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert re.search(rf"{re.escape(str(path))}:\d+: field `{re.escape(field)}`", res.output), res.output
    assert words in res.output


def test_the_base_suite_is_valid(tmp_path):
    """The cases above differ from a valid suite only by their mutation."""
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    res = _validate(path)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("change", [
    lambda s: s["models"][0].update(adapter="checkpoint", arch=None, path="m.pt", trust_code=True),
    lambda s: s["models"][0].update(adapter="torchscript", arch=None, arch_options={}),
    lambda s: _attack(s).update(threat={"norm": "Linf", "eps": 1 / 255 / 1000}),
    lambda s: s["in_distribution"].update(split="train"),
    lambda s: s["probes"][0].update(split="any name: noise has no splits"),
], ids=["trusted pickle needs no arch", "torchscript needs no arch", "eps at the floor",
        "split train", "noise ignores the split"])
def test_near_misses_of_the_new_refusals_are_accepted(tmp_path, change):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(mutate(change), sort_keys=False))
    res = _validate(path)
    assert res.exit_code == 0, res.output


def test_a_key_given_twice_is_refused_at_the_second(tmp_path):
    """YAML keeps the later value silently: the reader sees 5 steps, the run would use 2."""
    path = tmp_path / "suite.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False)
    path.write_text(text.replace("  attack:\n", "  attack:\n    steps: 5\n", 1))
    line = path.read_text().splitlines().index("    steps: 2") + 1
    first = path.read_text().splitlines().index("    steps: 5") + 1
    res = _validate(path)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert (f"{path}:{line}: field `probes[1].attack.steps`: given twice (first on line {first})"
            in res.output), res.output
    path.write_text("name: a\nname: b\n")
    assert f"{path}:2: field `name`: given twice (first on line 1)" in _validate(path).output


def test_yaml_merge_keys_are_not_repeated_keys(tmp_path):
    path = tmp_path / "suite.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False)
    path.write_text("x-model: &m {adapter: safetensors, arch: digits-net}\n"
                    + text.replace("- name: m\n", "- <<: *m\n  name: m\n"))
    res = _validate(path)
    assert "given twice" not in res.output


@pytest.mark.parametrize("target, words", [
    ("dir", "(a directory)"), ("/dev/null", "(not a regular file"),
    ("/dev/zero", "(not a regular file"), ("missing.yaml", "no such suite file")])
def test_a_suite_path_that_is_not_a_file(tmp_path, target, words):
    """/dev/zero is refused before a byte is read (reading it would never end)."""
    path = Path(target) if target.startswith("/") else tmp_path / target
    if target == "dir":
        path.mkdir()
    if target.startswith("/") and not path.exists():
        assert not sys.platform.startswith("linux"), f"{target} is missing on Linux"
        pytest.skip(f"{target} does not exist on this system")
    res = _validate(path)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    expected = "no such suite file" if target == "missing.yaml" else "not a suite file " + words
    assert res.output.startswith(f"error: {path}: {expected}"), res.output
    if target != "missing.yaml":
        assert "no such" not in res.output


def test_eps_inside_the_cube_is_accepted(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(mutate(lambda s: _attack(s).update(
        threat={"norm": "L2", "eps": 7.9})), sort_keys=False))
    assert _validate(path).exit_code == 0


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False).replace("name: bad-input", "name: caf\u00e9")
    path.write_bytes(text.encode("latin-1"))
    res = _validate(path)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{path}:1: not UTF-8 text (byte 0xe9" in res.output


def test_nesting_deeper_than_the_recursion_limit(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False)
                    + "description: " + "[" * 20000 + "]" * 20000 + "\n")
    res = _validate(path)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{path}:1: nested too deeply" in res.output


@pytest.mark.parametrize("include", [["a.yaml", "b.yaml"], {"a": 1}, 3, ""])
def test_include_must_be_one_path(tmp_path, include):
    path = tmp_path / "child.yaml"
    path.write_text(yaml.safe_dump({"include": include, "name": "child"}))
    with pytest.raises(SuiteError, match=rf"{re.escape(str(path))}:\d+: field `include`: must be the "
                                         "path of one suite file"):
        load_suite(path)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "tab.yaml"
    path.write_text("name: x\n\tmodels: 1\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(err.value).startswith(f"{path}:2: not valid YAML")
    assert f'in "{path}"' in str(err.value)  # PyYAML's own mark names the file too


def test_device_absent_on_this_machine_is_an_error_at_run(tmp_path, digits_weights):
    """`cuda:99` is a valid name (validate accepts it) but no machine has it: `run` refuses it
    with one sentence, before opening the results store."""
    suite = mutate(lambda s: s.update(device="cuda:99"))
    suite["models"][0]["path"] = str(digits_weights)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    assert _validate(path).exit_code == 0
    res = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "r.db"), "-q"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "device 'cuda:99'" in res.output
    assert isinstance(res.exception, SystemExit)
    assert not (tmp_path / "r.db").exists()
    with pytest.raises(OodbenchError, match="device 'cuda:99'"):
        from oodbench.core.devices import resolve_device
        resolve_device("cuda:99")
