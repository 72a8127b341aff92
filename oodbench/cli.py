"""The `oodbench` command: a thin shell over the public API.

Each command parses its options, builds the config object and calls the API; heavy imports (torch)
happen inside the commands so that `oodbench --help` is instant. No logic lives only here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click


class _FriendlyErrors(click.Group):
    """Turns the library's expected errors (bad suite, missing data, bad checkpoint) into one
    clear message and exit code 2, instead of a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from oodbench.registry import UnknownNameError

        expected: tuple[type[BaseException], ...] = (UnknownNameError, FileNotFoundError)
        try:
            from oodbench.data.base import DatasetNotFoundError
            from oodbench.models import ModelLoadError
            from oodbench.suite import SuiteError

            expected += (SuiteError, ModelLoadError, DatasetNotFoundError)
        except ImportError:  # pragma: no cover - broken install; let the traceback show
            pass
        try:
            return super().invoke(ctx)
        except expected as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_FriendlyErrors)
@click.version_option(package_name="oodbench")
def main() -> None:
    """Evaluate how reliable a classifier's confidence is: OOD detection, adversarial
    robustness and worst-case OOD detection, from declarative YAML suites."""


@main.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where datasets live (overrides $OODBENCH_DATA and the suite's data_root).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Results store (SQLite). Default: the suite's output, or results/<suite>.db.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: the suite's).")
@click.option("--skip-missing", is_flag=True, default=None,
              help="Skip probes whose data is missing, with a warning, instead of stopping.")
@click.option("--no-download", is_flag=True, help="Never download datasets.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(suite_file: Path, data_root: Optional[Path], output: Optional[Path], device: Optional[str],
        skip_missing: Optional[bool], no_download: bool, quiet: bool) -> None:
    """Evaluate every model of SUITE_FILE; jobs already in the results store are reused."""
    import warnings

    from oodbench.runner import format_table, run_suite
    from oodbench.suite import load_suite

    suite = load_suite(suite_file, download=False if no_download else None)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: click.echo(f"warning: {msg}", err=True)
        result = run_suite(suite, data_root=data_root, output=output, device=device,
                           skip_missing=skip_missing or None, progress=not quiet)
    click.echo(format_table(result.table()))
    click.echo(f"\n{len(result.computed)} jobs computed, {len(result.cached)} reused from the store"
               + (f", probes skipped: {', '.join(result.skipped)}" if result.skipped else ""))
    click.echo(f"results: {result.store_path} (run {result.run_id})")


@main.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
def validate(suite_file: Path) -> None:
    """Check SUITE_FILE (fields, registered names) without running anything."""
    from oodbench.suite import load_suite

    suite = load_suite(suite_file)
    click.echo(f"{suite_file}: ok — {len(suite.models)} model(s), {len(suite.probes)} probe(s), "
               f"metrics: {', '.join(suite.metrics)}")


@main.command("list")
@click.argument("family", required=False)
def list_(family: Optional[str]) -> None:
    """List registered components of FAMILY (architectures, models, datasets, metrics)."""
    from oodbench.registry import FAMILIES, UnknownNameError

    if family is None:
        for name, reg in FAMILIES.items():
            click.echo(f"{name}: {', '.join(reg.names())}")
        return
    if family not in FAMILIES:
        raise UnknownNameError("families", family, list(FAMILIES))
    reg = FAMILIES[family]
    width = max((len(n) for n in reg.names()), default=0)
    for entry in reg:
        click.echo(f"{entry.name:<{width}}  {entry.doc}")


@main.command()
@click.argument("results", type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: the latest).")
def show(results: Path, run_id: Optional[int]) -> None:
    """Print the metrics table of a run stored in RESULTS."""
    from oodbench.runner import format_table, wide_table
    from oodbench.store import ResultStore

    with ResultStore(results) as store:
        click.echo(format_table(wide_table(store.metrics_frame(run_id))))


@main.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--device", default=None, help="cpu, cuda or auto (default: the recipe's).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Weights file (.safetensors); a model card YAML is written beside it.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None)
def train(recipe_file: Path, device: Optional[str], output: Optional[Path],
          data_root: Optional[Path]) -> None:
    """Train a model from RECIPE_FILE (currently: plain cross-entropy training)."""
    from oodbench.train import load_recipe, train_from_recipe

    recipe = load_recipe(recipe_file)
    card = train_from_recipe(recipe, device=device, output=output, data_root=data_root)
    click.echo(f"weights: {card['weights']}\nsha256: {card['sha256']}\n"
               f"test error: {card['metrics']['test_error']:.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
