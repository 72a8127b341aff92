from pathlib import Path

import pytest

from oodbench.pipeline.suite import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_validate(path):
    suite = load_suite(path)
    assert suite.models and suite.metrics


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = """\
name: t
in_distribution: {dataset: digits, options: {classes: [0, 1, 2, 3, 4]}}
models:
  - {name: m, adapter: safetensors, arch: digits-net, path: m.safetensors}
probes:
  - {name: noise, dataset: uniform-noise, n: 10}
"""


def test_error_names_file_line_field_and_suggestion(tmp_path):
    p = write(tmp_path, BASE.replace("dataset: uniform-noise", "dataset: uniform-nois"))
    with pytest.raises(SuiteError) as err:
        load_suite(p)
    msg = str(err.value)
    assert f"{p}:6:" in msg
    assert "probes[0].dataset" in msg
    assert "Did you mean 'uniform-noise'" in msg


def test_unknown_field_is_rejected_with_its_line(tmp_path):
    p = write(tmp_path, BASE + "batchsize: 3\n")
    with pytest.raises(SuiteError, match=r"s.yaml:7: field `batchsize`: unknown field"):
        load_suite(p)


def test_unknown_metric_and_arch(tmp_path):
    p = write(tmp_path, BASE.replace("digits-net", "resnet-18") + "metrics: [auroc, fpr-95]\n")
    with pytest.raises(SuiteError) as err:
        load_suite(p)
    msg = str(err.value)
    assert "models[0].arch" in msg and "resnet18" in msg
    assert "metrics[1]" in msg and "fpr95" in msg


def test_duplicate_probe_names(tmp_path):
    p = write(tmp_path, BASE + "  - {name: noise, dataset: smoothed-noise}\n")
    with pytest.raises(SuiteError, match=r"row label .noise. is already used by `probes\[0\].name`"):
        load_suite(p)


def test_include_and_override(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    p = write(tmp_path, "include: base.yaml\nname: child\nseed: 7\n", "child.yaml")
    suite = load_suite(p)
    assert (suite.name, suite.seed, suite.probes[0].label) == ("child", 7, "noise")
    assert suite.content_hash() != load_suite(tmp_path / "base.yaml").content_hash()


def test_data_root_precedence(tmp_path, monkeypatch):
    p = write(tmp_path, BASE + "data_root: data\n")
    suite = load_suite(p)
    monkeypatch.delenv("OODBENCH_DATA", raising=False)
    assert suite.resolve_data_root() == tmp_path / "data"
    monkeypatch.setenv("OODBENCH_DATA", "/env/data")
    assert suite.resolve_data_root() == Path("/env/data")
    assert suite.resolve_data_root("/cli/data") == Path("/cli/data")
    monkeypatch.delenv("OODBENCH_DATA")
    suite.data_root = None
    assert suite.resolve_data_root() == Path("~/.cache/oodbench/data").expanduser()


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "nope.yaml")


def test_attack_settings_are_checked_when_the_suite_loads(tmp_path):
    p = write(tmp_path, BASE + "  - {name: aa, n: 5, attack: {name: autoattack, steps: 10}}\n")
    with pytest.raises(SuiteError, match=r"s.yaml:7: field `probes\[1\].attack`: aa: .*`steps` does not apply"):
        load_suite(p)
    p = write(tmp_path, BASE + "  - {name: adv, dataset: uniform-noise, attack: {name: adversarial-nois}}\n")
    with pytest.raises(SuiteError, match="Did you mean 'adversarial-noise'"):
        load_suite(p)
    p = write(tmp_path, BASE + "  - {name: adv, attack: {name: adversarial-noise}}\n")
    with pytest.raises(SuiteError, match="`dataset` is required"):
        load_suite(p)
