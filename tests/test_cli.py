import subprocess
import sys

from click.testing import CliRunner

from oodbench.cli import main


def test_run_prints_table_and_store(write_suite, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.db"
    res = runner.invoke(main, ["run", str(write_suite()), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "uniform noise" in res.output and "auroc" in res.output
    assert f"results: {out}" in res.output and "4 jobs computed" in res.output
    again = runner.invoke(main, ["run", str(write_suite()), "-o", str(out), "-q"])
    assert "0 jobs computed, 4 reused" in again.output
    shown = runner.invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and "smoothed noise" in shown.output


def test_bad_suite_is_a_clear_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nin_distribution: {dataset: digitz}\nmodels: [{name: m}]\n")
    res = CliRunner().invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml:2: field `in_distribution.dataset`" in res.output
    assert "Did you mean 'digits'" in res.output
    assert "Traceback" not in res.output


def test_list_families():
    res = CliRunner().invoke(main, ["list", "datasets"])
    assert res.exit_code == 0 and "smoothed-noise" in res.output and "mnist" in res.output
    res = CliRunner().invoke(main, ["list", "metric"])
    assert res.exit_code == 2 and "Did you mean 'metrics'" in res.output


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from oodbench.cli import main; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_imports_no_heavy_optional_library():
    """`oodbench list` imports every component module (each registry scans its folders), so those
    modules keep timm, transformers, robustbench, pyautoattack, ray, jinja2, matplotlib, scipy
    and scikit-learn inside the functions that use them: listing stays near a bare torch import."""
    heavy = ("timm", "transformers", "robustbench", "autoattack", "pyautoattack", "ray", "jinja2",
             "matplotlib", "scipy", "sklearn")
    code = ("import sys; from click.testing import CliRunner; from oodbench.cli import main; "
            "assert CliRunner().invoke(main, ['list']).exit_code == 0; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
