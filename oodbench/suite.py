"""The suite file: a declarative description of one evaluation, parsed and validated up front.

A suite names the in-distribution test set, the models, the probes (OOD sets and noise) and the
metrics. Everything is checked before any model is loaded, so a typo stops the run in a second
rather than after an hour of attacks; every error names the file, the line and the field, and
unknown component names come with the closest registered ones. ``include:`` pulls in another
suite and lets this one override fields, so a variant of a paper suite is a two-line file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oodbench.attacks.base import AttackSpec
from oodbench.metrics import early_stop_is_exact
from oodbench.models.files import SHA256_RE
from oodbench.models.spec import ModelSpec
from oodbench.registry import UnknownNameError, architectures, attacks, datasets, metrics, models

DATA_ROOT_ENV = "OODBENCH_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/oodbench/data")
DEFAULT_METRICS = ["test-error", "mmc", "ece", "auroc", "aupr-in", "aupr-out", "fpr95"]


def resolve_data_root(field: Optional[str], base_dir: Path,
                      override: Union[str, Path, None] = None) -> Path:
    """Where data sets live: the CLI/API override > ``$OODBENCH_DATA`` > the file's
    ``data_root`` (relative to the file) > the per-user default. One rule for suites and recipes,
    so the same command line finds the same data for evaluating and for training."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    if field is not None:
        root = Path(field).expanduser()
        return root if root.is_absolute() else base_dir / root
    return DEFAULT_DATA_ROOT.expanduser()


class SuiteError(ValueError):
    """A suite file that cannot be used; the message says where and how to fix it."""


class _LocatedError(ValueError):
    """Raised by whole-suite checks to point the error at one field (for file:line messages)."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        super().__init__(message)
        self.loc = loc


def _check_registered(registry: Any, name: str) -> str:
    try:
        registry.entry(name)
    except UnknownNameError as err:
        raise ValueError(str(err)) from None
    return name


# Checked per item, so an error points at `metrics[3]`, not at the whole list.
MetricName = Annotated[str, AfterValidator(lambda v: _check_registered(metrics, v))]


class DataSpec(BaseModel):
    """A dataset reference: the in-distribution set or one probe.

    ``n`` caps the number of samples (a seeded subset of a real set; the count generated for
    noise). ``options`` go to the dataset loader (e.g. ``{classes: [0, 1, 2, 3, 4]}`` for digits).
    A probe with ``attack:`` attacks the points of its data set — or, for attacks on
    in-distribution points (adversarial samples, AutoAttack), ``n`` points of the
    in-distribution test set, and then ``dataset`` is left out.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: Optional[str] = None
    name: Optional[str] = Field(None, description="label in tables; defaults to the dataset name")
    split: str = "test"
    n: Optional[int] = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    attack: Optional[AttackSpec] = None

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _check_registered(datasets, v)

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, v: Optional[AttackSpec]) -> Optional[AttackSpec]:
        if v is not None:
            _check_registered(attacks, v.name)
        return v

    @model_validator(mode="after")
    def _source_given(self) -> "DataSpec":
        on_in_dist = self.attack is not None and attacks.get(self.attack.name).source == "in-distribution"
        if on_in_dist and self.dataset is not None:
            raise ValueError(f"attack {self.attack.name!r} attacks in-distribution test points: "
                             "remove `dataset` (use `n` to choose how many)")
        if not on_in_dist and self.dataset is None:
            raise ValueError("`dataset` is required" + (
                f" (attack {self.attack.name!r} attacks the points of this probe's data set)"
                if self.attack else ""))
        return self

    @property
    def label(self) -> str:
        return self.name or self.dataset or (self.attack.name if self.attack else "?")

    def identity(self) -> dict[str, Any]:
        """What determines the data (not its display name): part of every cache key."""
        return {"dataset": self.dataset, "split": self.split, "n": self.n, "options": self.options}


class SuiteModel(ModelSpec):
    """A model entry of a suite: a :class:`ModelSpec` whose registered names are checked."""

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, v: str) -> str:
        return _check_registered(models, v)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _check_registered(architectures, v)

    @field_validator("sha256")
    @classmethod
    def _sha256_form(cls, v: Optional[str]) -> Optional[str]:
        """A malformed pin is a suite error now, not a load error after the cached jobs."""
        if v is not None and not SHA256_RE.match(v.strip().lower()):
            raise ValueError(f"{v!r} is not a sha256: expected 64 hex digits "
                             "(the output of `sha256sum FILE`)")
        return v


class Suite(BaseModel):
    """A validated suite. ``source`` is the file it came from (paths in it are relative to it)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seed: int = 0
    batch_size: int = Field(256, gt=0)
    device: str = Field("auto", description="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', …")
    data_root: Optional[str] = Field(None, description=f"overridden by --data-root and ${DATA_ROOT_ENV}")
    download: bool = Field(True, description="download missing datasets (torchvision) into data_root")
    skip_missing: bool = Field(False, description="skip probes whose data is missing, with a warning")
    output: Optional[str] = Field(None, description="results store; default results/<name>.db")
    in_distribution: DataSpec
    models: list[SuiteModel] = Field(min_length=1)
    probes: list[DataSpec] = Field(default_factory=list)
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    source: Optional[Path] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _attacks_resolve(self) -> "Suite":
        """Check each attack's settings against its defaults now, not an hour into the run."""
        for i, probe in enumerate(self.probes):
            if probe.attack is not None:
                try:
                    attacks.get(probe.attack.name)().resolve(probe.attack, self.in_distribution.dataset or "")
                except (ValueError, TypeError) as err:
                    raise _LocatedError(("probes", i, "attack"), f"{probe.label}: {err}") from None
        return self

    @model_validator(mode="after")
    def _early_stop_is_exact(self) -> "Suite":
        """A forced early stop would silently bias MMC: allow it only with rank metrics."""
        not_rank = [m for m in self.metrics if metrics.meta(m)["scope"] != "in"
                    and not early_stop_is_exact([m])]
        for i, probe in enumerate(self.probes):
            if probe.attack is not None and probe.attack.early_stop is True and not_rank:
                raise _LocatedError(
                    ("probes", i, "attack", "early_stop"), f"{probe.label}: `early_stop: true` would change "
                    f"{', '.join(not_rank)} (they need the full attack); use `early_stop: auto`, "
                    "which stops early only when every metric asked is rank-based")
        return self

    def row_labels(self) -> list[tuple[tuple[Any, ...], str]]:
        """(field, label) of every entry that labels a table row, in table order: the
        in-distribution set, then each probe (and any future kind of row). The field is the one
        the label comes from (``name``, else ``dataset``, else ``attack``)."""
        def field(spec: DataSpec) -> str:
            return "name" if spec.name else "dataset" if spec.dataset else "attack"

        return [(("in_distribution", field(self.in_distribution)), self.in_distribution.label),
                *((("probes", i, field(p)), p.label) for i, p in enumerate(self.probes))]

    @model_validator(mode="after")
    def _unique_labels(self) -> "Suite":
        """Rows and models are stored and looked up by label, so a repeated label would make one
        row overwrite another's metrics: refuse it, pointing at the second use."""
        for what, entries in (("row label", self.row_labels()),
                              ("model name", [(("models", i, "name"), m.name)
                                              for i, m in enumerate(self.models)])):
            first: dict[str, tuple[Any, ...]] = {}
            for loc, label in entries:
                if label in first:
                    raise _LocatedError(loc, f"{what} {label!r} is already used by "
                                        f"`{_format_loc(first[label])}`; {what}s must be unique "
                                        "(the in-distribution set and every probe label a row of "
                                        "the table): give this entry a distinct `name:`")
                first[label] = loc
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolve_data_root(self, override: Union[str, Path, None] = None) -> Path:
        return resolve_data_root(self.data_root, self.base_dir, override)

    def resolve_output(self, override: Union[str, Path, None] = None) -> Path:
        """The results store; relative paths are relative to the working directory."""
        return Path(override or self.output or f"results/{self.name}.db").expanduser()

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of everything that defines the suite's results."""
        payload = self.model_dump(mode="json", exclude={"output", "data_root", "description"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- loading + errors


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _node_line(node: Optional[yaml.Node], loc: tuple[Any, ...]) -> Optional[int]:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
            if child is None:  # unknown/missing key: point at the key itself or the mapping
                key_node = next((k for k, _ in node.value if k.value == key), None)
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Optional[yaml.Node]]:
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping (name:, models:, probes:, …)")
    include = data.pop("include", None)
    if include is not None:
        parent_path = (path.parent / str(include)).resolve()
        if parent_path in seen:
            raise SuiteError(f"{path}: `include: {include}` forms a cycle")
        parent, _ = _read_yaml(parent_path, seen + (path.resolve(),))
        data = _deep_merge(parent, data)
    return data, node


def parse_suite(data: dict[str, Any], *, source: Optional[Path] = None,
                node: Optional[yaml.Node] = None) -> Suite:
    """Validate a suite given as a dict; errors are :class:`SuiteError` with file:line: field."""
    try:
        suite = Suite.model_validate(data)
    except ValidationError as err:
        where = str(source) if source else "<suite>"
        lines = []
        for e in err.errors():
            loc = tuple(e["loc"])
            cause = (e.get("ctx") or {}).get("error")
            if isinstance(cause, _LocatedError):
                loc = cause.loc
            line = _node_line(node, loc)
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field (remove it or check its spelling)"
            lines.append(f"{where}:{line or '?'}: field `{_format_loc(loc)}`: {msg}")
        raise SuiteError("invalid suite\n  " + "\n  ".join(lines)) from None
    suite.source = source
    return suite


def load_suite(path: Union[str, Path], **overrides: Any) -> Suite:
    """Read, merge ``include:``s, validate. ``overrides`` replace top-level fields."""
    path = Path(path)
    data, node = _read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_suite(data, source=path, node=node)
