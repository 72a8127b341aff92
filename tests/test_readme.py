"""The README's Python example must run as written."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- API-EXAMPLE -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its API example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "uniform noise" in out and "auroc" in out and "test-error" in out


def test_readme_commands_match_ci():
    text = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in text
    assert "oodbench run suites/quickstart.yaml" in text
