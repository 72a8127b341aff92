"""The `oodbench` command: a thin shell over the public API.

Each command parses its options, builds the config object and calls the API; heavy imports (torch)
happen inside the commands so that `oodbench --help` is instant. No logic lives only here.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import click

if TYPE_CHECKING:
    from oodbench.pipeline.suite import Suite


class _FriendlyErrors(click.Group):
    """Prints an :class:`~oodbench.core.errors.OodbenchError` (anything wrong with what the user gave:
    suite, checkpoint, data, results store, leaderboard, card) as one ``error:`` line and exits
    with code 2, without a traceback. Any other exception is a bug and keeps its traceback;
    ``--debug`` shows the traceback of user errors too."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from oodbench.core.errors import OodbenchError

        try:
            return super().invoke(ctx)
        except OodbenchError as err:
            if ctx.meta.get("oodbench.debug"):
                raise
            click.echo(f"error: {err}", err=True)
            for note in getattr(err, "__notes__", ()):  # e.g. which shards a failure hit
                click.echo(f"  {note}", err=True)
            sys.exit(2)


class RegistryChoice(click.Choice):
    """A choice among the names of a registry family, read when the option is used or its help
    shown: reading them when this module loads would import every component for ``--help``."""

    def __init__(self, family: str):
        self.family = family
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from oodbench.core.registry import FAMILIES

        return tuple(FAMILIES[self.family].names())

    @choices.setter
    def choices(self, _value: Any) -> None:  # click.Choice.__init__ assigns; the registry decides
        pass


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta["oodbench.debug"] = value


@click.group(cls=_FriendlyErrors)
@click.version_option(package_name="oodbench")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the full traceback of errors in the input too (they are otherwise "
                   "printed as one `error:` message, exit code 2).")
def main() -> None:
    """Evaluate how reliable a classifier's confidence is: OOD detection, adversarial
    robustness and worst-case OOD detection, from declarative YAML suites.

    A mistake in the input (suite, checkpoint, data, results store, device) is printed as one
    `error:` message with exit code 2; --debug shows its traceback."""


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
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or job lines.")
@click.option("--executor", default=None,
              help="Who runs the shards (`oodbench list executors`; default: the suite's, local).")
@click.option("--address", default=None,
              help="executor ray: the cluster to join (`auto`: a running one; default: start one).")
@click.option("--dry-run", is_flag=True, help="Print the plan (as `oodbench plan`) and run nothing.")
def run(suite_file: Path, data_root: Optional[Path], output: Optional[Path], device: Optional[str],
        skip_missing: Optional[bool], no_download: bool, quiet: bool, executor: Optional[str],
        address: Optional[str], dry_run: bool) -> None:
    """Evaluate every model of SUITE_FILE: plan the jobs, run the shards the results store
    lacks, store each as it finishes, score every row. A killed run resumes where it stopped."""
    from oodbench.report.tables import format_table
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    overrides = {"download": False if no_download else None, "executor": executor,
                 "ray_address": address}
    suite = load_suite(suite_file, **overrides)
    if dry_run:
        _print_plan(suite, data_root, output, skip_missing)
        return
    with _warnings_as_lines():
        result = run_suite(suite, data_root=data_root, output=output, device=device,
                           skip_missing=skip_missing or None, progress=not quiet)
    click.echo(format_table(result.table()))
    _echo_flags(result.store_path, result.run_id)
    click.echo(f"\n{len(result.computed)} jobs computed, {len(result.cached) - result.shared} "
               "reused from the store"
               + (f", {result.shared} used by a second row" if result.shared else "")
               + (f", probes skipped: {', '.join(result.skipped)}" if result.skipped else ""))
    click.echo(f"results: {result.store_path} (run {result.run_id})")


def _echo_flags(results: Path, run_id: int) -> None:
    """The run's trust-check flags, after its table (nothing when none was flagged)."""
    from oodbench.report.data import format_flags, run_flags
    from oodbench.pipeline.store import ResultStore

    with ResultStore(results, readonly=True) as store:
        flags = run_flags(store, run_id)
        several = len({r.detector for r in store.metric_rows(run_id)}) > 1
    if flags:
        click.echo("\n" + format_flags(flags, several))


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Library warnings (a skipped probe, a recomputed entry) as one ``warning:`` line each."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: click.echo(f"warning: {msg}", err=True)
        yield


def _print_plan(suite: "Suite", data_root: Optional[Path], output: Optional[Path],
                skip_missing: Optional[bool]) -> None:
    from oodbench.pipeline.plan import format_plan
    from oodbench.pipeline.run import plan_suite

    with _warnings_as_lines():
        click.echo(format_plan(plan_suite(suite, data_root=data_root, output=output,
                                          skip_missing=skip_missing or None)))


@main.command("plan")
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where datasets live (overrides $OODBENCH_DATA and the suite's data_root).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Results store to check for cached shards (default: the suite's).")
@click.option("--skip-missing", is_flag=True, default=None,
              help="Leave out probes whose data is missing instead of stopping.")
def plan_(suite_file: Path, data_root: Optional[Path], output: Optional[Path],
          skip_missing: Optional[bool]) -> None:
    """Print the jobs a run of SUITE_FILE would execute: model, row, kind, shards, what the
    results store already holds, and the estimated forward and gradient evaluations."""
    from oodbench.pipeline.suite import load_suite

    _print_plan(load_suite(suite_file), data_root, output, skip_missing)


@main.command()
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
def upgrade(results: Path) -> None:
    """Upgrade RESULTS, a results store of an older oodbench, in place and in one transaction
    (every job whose checksum holds is kept; on any failure, or if it is already current, the
    file is left as it is)."""
    from oodbench.core.errors import MissingFileError
    from oodbench.pipeline.store import ResultStore, migrate, storage_errors

    if not results.is_file():
        raise MissingFileError(f"{results}: no such results store")
    with storage_errors(results, "results store"):
        migrated = migrate(results)
    ResultStore(results).close()  # checks what it is now
    click.echo(f"{results}: " + ("upgraded to the current schema" if migrated else "already current"))


@main.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
def validate(suite_file: Path) -> None:
    """Check SUITE_FILE (fields, registered names) without running anything."""
    from oodbench.pipeline.suite import load_suite

    suite = load_suite(suite_file)
    click.echo(f"{suite_file}: ok — {len(suite.models)} model(s), {len(suite.probes)} probe(s), "
               f"detectors: {', '.join(d.display for d in suite.detectors)}, "
               f"metrics: {', '.join(suite.metrics)}")


@main.command("list")
@click.argument("family", required=False)
def list_(family: Optional[str]) -> None:
    """List registered components of FAMILY (architectures, models, datasets, metrics,
    detectors, attacks, checks, layouts, formats, …); without FAMILY, every family."""
    from oodbench.core.registry import FAMILIES, UnknownNameError

    if family is None:
        for name, reg in FAMILIES.items():
            click.echo(f"{name}: {', '.join(reg.names())}")
        return
    if family not in FAMILIES:
        raise UnknownNameError("families", family, list(FAMILIES))
    reg = FAMILIES[family]
    width = max((len(n) for n in reg.names()), default=0)
    for entry in reg:
        describe = (getattr(entry.load(), "describe", None)
                    if family in ("detectors", "checks") else None)
        click.echo(f"{entry.name:<{width}}  {describe() if describe else entry.doc}")


def _member_lines(store: Any, run_id: int, problems: list[str]) -> list[str]:
    """One line per ensemble row of a complete run (``show``)."""
    if problems:
        return []
    from oodbench.pipeline.score.members import member_summaries
    from oodbench.pipeline.score.table import TableScorer

    return [m.line() for m in member_summaries(store, run_id, TableScorer(store, [], 0))]


@main.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: the latest).")
def show(results: Path, run_id: Optional[int]) -> None:
    """Print the metrics table of a run stored in RESULTS (opened read-only), then the trust
    checks' flags of its jobs (gradient masking and the like). Every printed value is recomputed
    from the stored arrays and compared with the stored one: if any differs the table is not
    printed. Exit 1 if the run does not verify (interrupted, failed, rows missing, a checksum or
    a metric that does not recompute), 2 if there is no such run."""
    from oodbench.models.libraries.preprocessing import override_notes, suite_overrides
    from oodbench.report.data import ReportError, audit_run, find_run, recomputed_frame
    from oodbench.report.tables import format_table
    from oodbench.pipeline.score.wide import wide_table
    from oodbench.pipeline.score.groups import probe_groups
    from oodbench.pipeline.store import ResultStore

    with ResultStore(results, readonly=True) as store:
        try:
            run = find_run(store, run_id)
        except ReportError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        audit = audit_run(store, run.id)
        table = (None if audit.mismatches
                 else wide_table(recomputed_frame(store, run.id, audit.values),
                                 groups=probe_groups(run.suite)))
        members = _member_lines(store, run.id, audit.problems)
    if table is not None and not table.empty:
        click.echo(format_table(table))
    if members:
        click.echo("Attack ensembles (AUROC after each member, as AutoAttack prints robust "
                   "accuracy after each attack):\n" + "\n".join(f"  {m}" for m in members))
    for note in override_notes(suite_overrides(run.suite.get("models") or [])):
        click.echo(note)
    _echo_flags(results, run.id)
    if audit.problems:
        shown = "" if table is not None else "; its table is not shown"
        click.echo(f"{results}: run {run.id} does not verify ({len(audit.problems)} problem(s)"
                   f"{shown}):\n" + "\n".join(f"  - {p}" for p in audit.problems)
                   + f"\nRun the suite again (stored jobs are reused) to recompute it, into a "
                   "new store if this one was edited.", err=True)
        sys.exit(1)


def _recompute_options(command: click.Command) -> click.Command:
    """The options of a recomputation audit, shared by `verify` and `leaderboard verify`."""
    from oodbench.pipeline.recompute import DEFAULT_TOLERANCE

    options = [
        click.option("--recompute", "fraction", type=click.FloatRange(0, 1, min_open=True),
                     default=None, metavar="FRACTION",
                     help="Also re-execute this fraction (0-1] of the stored shards, a seeded "
                          "random sample, and compare their arrays with the stored ones "
                          "(catches arrays forged with recomputed checksums)."),
        click.option("--tolerance", type=click.FloatRange(0), default=None,
                     help="With --recompute: relative and absolute tolerance on float arrays. "
                          "Default: bit-identical when this machine's stack (oodbench, torch, "
                          f"numpy, Python, device) is the run's, else {DEFAULT_TOLERANCE:g}."),
        click.option("--sample-seed", type=int, default=0, show_default=True,
                     help="With --recompute: the seed that draws the shards."),
        click.option("--suite-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="With --recompute: the directory the run's suite file was in (its "
                          "relative checkpoint and data paths resolve from it; default: here)."),
        click.option("--data-root", type=click.Path(path_type=Path), default=None,
                     help="With --recompute: where datasets live (as for `oodbench run`)."),
        click.option("--device", default=None,
                     help="With --recompute: cpu, cuda, … (default: the suite's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: the latest).")
@_recompute_options
def verify(results: Path, run_id: Optional[int], fraction: Optional[float],
           tolerance: Optional[float], sample_seed: int, suite_dir: Optional[Path],
           data_root: Optional[Path], device: Optional[str]) -> None:
    """Check a run of RESULTS (opened read-only): complete, jobs, checksums, and every metric
    recomputed from the stored arrays; with --recompute, also re-execute a sample of the stored
    shards. Exit 1 if anything differs or is missing."""
    from oodbench.pipeline.recompute import recompute_run
    from oodbench.report.data import full_verification
    from oodbench.pipeline.store import ResultStore

    summary = None
    with ResultStore(results, readonly=True) as store:
        run_id = store.latest_run_id() if run_id is None else run_id
        problems = full_verification(store, run_id) if run_id is not None else ["no runs stored"]
        if fraction is not None and run_id is not None:
            with _warnings_as_lines():
                audit = recompute_run(store, run_id, fraction, seed=sample_seed,
                                      tolerance=tolerance, suite_dir=suite_dir,
                                      data_root=data_root, device=device)
            problems += audit.problems
            summary = audit.summary()
    for problem in problems:
        click.echo(f"  - {problem}")
    if summary is not None:
        click.echo(summary)
    click.echo(f"{results}: run {run_id} " + ("verifies" if not problems else
                                            f"does not verify ({len(problems)} problem(s))"))
    sys.exit(1 if problems else 0)


@main.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=RegistryChoice("formats"), required=True,
              help="A registered report format (`oodbench list formats` describes each).")
@click.option("--layout", type=RegistryChoice("layouts"), default="hein2019-table1",
              show_default=True,
              help="A registered table layout (`oodbench list layouts` describes each; not for "
                   "csv).")
@click.option("--run", "run_ids", type=int, multiple=True,
              help="Run id (default: the latest); repeat for one block per run.")
@click.option("--precision", type=click.IntRange(0, 12), default=3, show_default=True,
              help="Decimals of the printed numbers.")
@click.option("--percent", is_flag=True, help="Print rates (AUROC, FPR@95, errors) in percent.")
@click.option("--reference", "references", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="Reference card YAML (one per model): the paper's numbers "
                                  "beside the measured ones.")
@click.option("--standalone", is_flag=True, help="LaTeX: a complete compilable document.")
@click.option("--allow-unverified", is_flag=True,
              help="Report a run whose metrics do not verify against the stored jobs (warns).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@click.option("--ci", type=float, default=None,
              help="Print each value with its bootstrap interval at this level (e.g. 0.95), "
                   "resampled from the stored arrays (in-distribution and OOD points).")
@click.option("--ci-style", type=click.Choice(["pm", "interval"]), default="pm", show_default=True,
              help="pm: 97.3 ± 0.4 (half the interval's width); interval: 97.3 [96.9, 97.7].")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="HTML only: also draw the run's figures (as `oodbench plot`) into this directory "
                   "and show them on the page, linked by paths relative to --out's directory (or to "
                   "the working directory when printing); with several --run, one run-<id> folder each.")
def report(results: Path, fmt: str, layout: str, run_ids: tuple[int, ...], precision: int,
           percent: bool, references: tuple[Path, ...], standalone: bool, allow_unverified: bool,
           out: Optional[Path], ci: Optional[float], ci_style: str, plots_dir: Optional[Path]) -> None:
    """Render a stored run of RESULTS as a table (LaTeX, HTML, Markdown or CSV); with --plots,
    an HTML page that also links the run's figures."""
    from oodbench.report import render
    from oodbench.report.output import write_text

    with _warnings_as_lines():  # --allow-unverified: the problems, as one warning line
        text = render(results, fmt=fmt, layout=layout, run_id=list(run_ids) or None,
                      precision=precision, percent=percent, references=list(references),
                      standalone=standalone, allow_unverified=allow_unverified, plots=plots_dir,
                      link_from=None if out is None else out.parent, ci=ci, ci_style=ci_style)
    if out is not None:
        write_text(out, text)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the figures (roc-<model>.<fmt>, hist-<model>.<fmt>, "
                   "radius-<attack>-<norm>-<points>.<fmt>).")
@click.option("--run", "run_id", type=int, default=None, help="Run id (default: the latest).")
@click.option("--format", "formats", type=click.Choice(["png", "pdf"]), multiple=True,
              help="Figure format; repeat for several (default: png and pdf).")
def plot(results: Path, out_dir: Path, run_id: Optional[int], formats: tuple[str, ...]) -> None:
    """Draw ROC curves and confidence histograms (per model) and mean confidence vs attack
    radius (per radius sweep: the same attack on the same points at several eps) of a stored
    run of RESULTS."""
    from oodbench.report.plots import FORMATS, write_plots

    paths = write_plots(results, out_dir, run_id=run_id, formats=list(formats) or FORMATS)
    for path in paths:
        click.echo(str(path))


@main.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--device", default=None, help="cpu, cuda or auto (default: the recipe's).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Weights file (.safetensors); a model card YAML is written beside it.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where datasets live (overrides $OODBENCH_DATA and the recipe's data_root).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Resumable checkpoint, written every epoch (default: <weights>.ckpt.pt).")
@click.option("--restart", is_flag=True,
              help="Start over even if a checkpoint exists (default: resume from it).")
@click.option("--stop-after", type=int, default=None, metavar="EPOCHS",
              help="Stop after this many epochs and keep the checkpoint (resume later).")
@click.option("--keep-checkpoint", is_flag=True, help="Keep the checkpoint after training ends.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(recipe_file: Path, device: Optional[str], output: Optional[Path],
          data_root: Optional[Path], checkpoint: Optional[Path], restart: bool,
          stop_after: Optional[int], keep_checkpoint: bool, quiet: bool) -> None:
    """Train a model from RECIPE_FILE (`oodbench list trainers`: plain, ceda, acet, oe, at,
    ratio); resumes from its checkpoint when one exists."""
    from oodbench.train import load_recipe, train_from_recipe

    recipe = load_recipe(recipe_file)
    card = train_from_recipe(recipe, device=device, output=output, data_root=data_root,
                             checkpoint=checkpoint, resume=False if restart else "auto",
                             stop_after=stop_after, keep_checkpoint=keep_checkpoint,
                             progress=not quiet)
    if card["status"] == "stopped":
        click.echo(f"stopped after epoch {card['epoch']} (step {card['step']}); "
                   f"checkpoint: {card['checkpoint']}")
        return
    metrics = "\n".join(f"{k}: {v}" for k, v in card["metrics"].items())
    click.echo(f"weights: {card['weights']}\nsha256: {card['sha256']}\n"
               f"wall time: {card['trained_with']['wall_time_s']} s\n{metrics}")


@main.command()
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--card", default=None, metavar="NAME|FILE",
              help="A model_zoo card (its name, or its YAML file) instead of CHECKPOINT: it gives "
                   "the checkpoint (downloaded and sha256-verified if remote), --arch, "
                   "--arch-option, --adapter, and the default --name and --paper.")
@click.option("--zoo", "zoo_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of cards for --card NAME (default: ./model_zoo, then oodbench's own).")
@click.option("--arch", default=None, help="Registered architecture (`oodbench list architectures`).")
@click.option("--arch-option", "arch_options", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument of the architecture (value read as YAML); repeatable.")
@click.option("--suite", "suite_file", required=True, type=click.Path(path_type=Path),
              help="The suite to evaluate on (its models are replaced by CHECKPOINT).")
@click.option("--name", default=None, help="The entry's name on the leaderboard (default: the card's).")
@click.option("--paper", default=None, metavar="URL", help="Paper describing the model.")
@click.option("--leaderboard", "leaderboard_file", type=click.Path(path_type=Path),
              default=Path("leaderboard.db"), show_default=True, help="Leaderboard file (SQLite).")
@click.option("--adapter", type=click.Choice(["checkpoint", "safetensors"]), default=None,
              help="How to read CHECKPOINT (default: by its suffix).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where datasets live (overrides $OODBENCH_DATA and the suite's data_root).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: the suite's).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def submit(checkpoint: Optional[Path], card: Optional[str], zoo_dir: Optional[Path],
           arch: Optional[str], arch_options: tuple[str, ...], suite_file: Path,
           name: Optional[str], paper: Optional[str], leaderboard_file: Path,
           adapter: Optional[str], data_root: Optional[Path], device: Optional[str],
           quiet: bool) -> None:
    """Evaluate CHECKPOINT (with --arch and --name) or a model_zoo card (--card NAME) on a suite
    and record it, with provenance, on the leaderboard.

    A checkpoint (by sha256) is entered once per board (the suite without its models);
    submitting it again reports that and exits 0."""
    from oodbench.leaderboard import LeaderboardError, parse_options, submit_card
    from oodbench.leaderboard import submit as submit_
    from oodbench.pipeline.suite import load_suite
    from oodbench.zoo import find_card

    run = dict(leaderboard=leaderboard_file, data_root=data_root, device=device, progress=not quiet)
    if (checkpoint is None) == (card is None):
        raise LeaderboardError("give either CHECKPOINT (with --arch and --name) or --card NAME")
    if card is not None:
        given = [o for o, v in (("--arch", arch), ("--arch-option", arch_options),
                                ("--adapter", adapter)) if v]
        if given:
            raise LeaderboardError(f"{', '.join(given)}: the card defines the model; "
                                   "drop the option or edit the card")
        zoo_card = find_card(card, zoo_dir)
        sub = submit_card(zoo_card, suite=load_suite(suite_file), name=name, paper=paper, **run)
        what = f"card {zoo_card.name} ({zoo_card.source})"
    else:
        if arch is None or name is None:
            raise LeaderboardError("a CHECKPOINT needs --arch and --name (or use --card NAME)")
        sub = submit_(checkpoint, suite=load_suite(suite_file), name=name, arch=arch,
                      arch_options=parse_options(arch_options), adapter=adapter, paper=paper,
                      **run)
        what = str(checkpoint)
    if not sub.added:
        click.echo(f"{what} (sha256 {sub.checkpoint_sha256[:16]}…) is already on the leaderboard "
                   f"for this suite (board {sub.suite_hash[:16]}, entry {sub.entry_id}); nothing added")
        return
    click.echo(f"added entry {sub.entry_id} to board {sub.suite_hash[:16]} of {leaderboard_file}\n"
               f"sha256: {sub.checkpoint_sha256}\nresults: {sub.results_store} (run {sub.run_id})")


@main.group()
def zoo() -> None:
    """Model zoo cards: named models (architecture, checkpoint + sha256, paper numbers)."""


@zoo.command("list")
@click.option("--zoo", "zoo_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of cards (default: ./model_zoo, then oodbench's own).")
def zoo_list(zoo_dir: Optional[Path]) -> None:
    """List the cards: name, architecture, where the weights come from, paper. A card that does
    not validate is reported on standard error (and the exit code is 1)."""
    from oodbench.zoo import ZooError, list_cards

    cards = list_cards(zoo_dir)
    good = [c for c in cards if not isinstance(c, ZooError)]
    width = max((len(c.name) for c in good), default=0)
    for c in good:
        where = c.weights if c.weights and c.url is None else c.url
        click.echo(f"{c.name:<{width}}  {c.arch:<12}  {where}" + (f"  [{c.paper_ref}]" if c.paper_ref else ""))
    for err in (c for c in cards if isinstance(c, ZooError)):
        click.echo(f"error: {err}", err=True)
    if len(good) < len(cards):
        sys.exit(1)


@zoo.command("fetch")
@click.argument("card")
@click.option("--zoo", "zoo_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of cards (default: ./model_zoo, then oodbench's own).")
def zoo_fetch(card: str, zoo_dir: Optional[Path]) -> None:
    """Download (if remote) and sha256-verify CARD's checkpoint; print its path."""
    from oodbench.zoo import find_card

    click.echo(str(find_card(card, zoo_dir).checkpoint()))


@main.group()
def leaderboard() -> None:
    """Leaderboard files: render them as a static site, verify their entries."""


@leaderboard.command("verify")
@click.option("--leaderboard", "leaderboard_file", type=click.Path(path_type=Path),
              default=Path("leaderboard.db"), show_default=True, help="Leaderboard file (SQLite).")
@_recompute_options
def leaderboard_verify(leaderboard_file: Path, fraction: Optional[float],
                       tolerance: Optional[float], sample_seed: int, suite_dir: Optional[Path],
                       data_root: Optional[Path], device: Optional[str]) -> None:
    """Re-check every entry against its results store; with --recompute, also re-execute a
    sample of each entry's stored shards and record the result on the leaderboard (its page
    shows it). Exit 1 if any entry does not verify."""
    from oodbench.leaderboard import recompute_entries, verify_entries

    results = verify_entries(leaderboard_file)
    audits = {}
    if fraction is not None:
        if suite_dir is not None:
            raise click.UsageError("--suite-dir: a leaderboard entry's checkpoint path is absolute")
        with _warnings_as_lines():
            audits = recompute_entries(leaderboard_file, fraction, seed=sample_seed,
                                       tolerance=tolerance, data_root=data_root, device=device)
    for entry_id, problems in results.items():
        audit = audits.get(entry_id)
        if isinstance(audit, str):
            problems = problems + [audit]
        elif audit is not None:
            problems = problems + audit.problems
        click.echo(f"entry {entry_id}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            click.echo(f"  - {problem}")
        if audit is not None and not isinstance(audit, str):
            click.echo(f"  {audit.summary()}")
        results[entry_id] = problems
    sys.exit(1 if any(results.values()) else 0)


@leaderboard.command("render")
@click.option("--leaderboard", "leaderboard_file", type=click.Path(path_type=Path),
              default=Path("leaderboard.db"), show_default=True, help="Leaderboard file (SQLite).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the site (index.html, one page per board and per entry).")
def leaderboard_render(leaderboard_file: Path, out: Path) -> None:
    """Write the leaderboard as static HTML (sortable tables, works offline)."""
    from oodbench.leaderboard import render_site

    pages = render_site(leaderboard_file, out)
    click.echo(f"wrote {len(pages)} pages to {out} (open {out / 'index.html'})")


if __name__ == "__main__":  # pragma: no cover
    main()
