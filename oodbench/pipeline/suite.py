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
import math
import os
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints,
                      ValidationError, ValidationInfo, field_validator, model_validator)

from oodbench.attacks.base import AttackSpec
from oodbench.checks.spec import ChecksSpec
from oodbench.core.detectors import DEFAULT_DETECTOR
from oodbench.core.yaml_location import format_loc as _format_loc, node_line as _node_line
from oodbench.detectors.base import Need
from oodbench.core.rows import MetricScope, RowKind
from oodbench.core.devices import check_device_name
from oodbench.core.errors import OodbenchError
from oodbench.core.filenames import slugify
from oodbench.metrics import early_stop_is_exact
from oodbench.models.files import SHA256_RE
from oodbench.models.entry_checks import arch_options_problem, missing_model_field
from oodbench.models.spec import ModelSpec
from oodbench.core.registry import (architectures, attacks, datasets, detectors,
                               executors, metrics, models)
from oodbench.core.validation import (BatchSize, Count, JsonDict, Label, PathText, Seed, cube_radius,
                                 read_yaml)
from oodbench.core.validation import check_registered as _check_registered

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


class SuiteError(OodbenchError, ValueError):
    """A suite file that cannot be used; the message says where and how to fix it."""


class _LocatedError(ValueError):
    """Raised by whole-suite checks to point the error at one field (for file:line messages)."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        super().__init__(message)
        self.loc = loc


#: A probe's ``group:``: near, far (OpenOOD's OOD groups), csid (covariate-shifted
#: in-distribution), unit-tests (NINCO's), or any other lower-case name.
GroupName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]

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
    name: Optional[Label] = Field(None, description="label in tables; defaults to the dataset name")
    split: str = "test"
    n: Optional[Count] = None
    options: JsonDict = Field(default_factory=dict)
    attack: Optional[AttackSpec] = None
    versus: Optional[Label] = Field(None, description="an attack on in-distribution points that "
                                    "lowers the detector's score: the label of the probe whose "
                                    "(clean or attacked) points are the OOD side of this row")
    group: Optional[GroupName] = Field(None, description="the group whose mean row this probe "
                                       "joins (near, far: OpenOOD's near/far-OOD means; "
                                       "unit-tests: NINCO's failure count; csid: covariate-shifted "
                                       "in-distribution, used by `full_spectrum`)")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _check_registered(datasets, v)

    @field_validator("options")
    @classmethod
    def _options_accepted(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """What the data set's loader would refuse is refused now, by the same function."""
        from oodbench.data import check_dataset_options

        dataset = info.data.get("dataset")
        if dataset is not None:
            check_dataset_options(dataset, v)
        return v

    @field_validator("split")
    @classmethod
    def _split_exists(cls, v: str, info: ValidationInfo) -> str:
        """A split the data set does not have (``validation``) fails only when it loads."""
        from oodbench.data import check_dataset_split

        dataset = info.data.get("dataset")
        if dataset is not None and dataset in datasets:
            check_dataset_split(dataset, v)
        return v

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, v: Optional[AttackSpec]) -> Optional[AttackSpec]:
        if v is not None:
            _check_registered(attacks, v.name)
        return v

    @model_validator(mode="after")
    def _default_group(self) -> "DataSpec":
        """A data set registered with a group (NINCO's unit tests) joins it unless told."""
        if self.group is None and self.dataset is not None:
            default = datasets.meta(self.dataset).get("group")
            if default is not None:
                self.group = str(default)
        return self

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


class DetectorSpec(BaseModel):
    """A ``detectors:`` entry: a registered detector's name, or ``{name: knn, k: 50}`` with its
    hyper-parameters (unset ones take the paper defaults) and an optional ``label`` for tables
    (default: the name; two entries of one detector need distinct labels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    label: Optional[Label] = None
    params: JsonDict = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``energy`` or ``{name: knn, k: 50}``: every key but name/label is a hyper-parameter."""
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            params = {k: v for k, v in value.items() if k not in ("name", "label")}
            return {**{k: v for k, v in value.items() if k in ("name", "label")}, "params": params}
        return value

    @model_validator(mode="after")
    def _builds(self) -> "DetectorSpec":
        _check_registered(detectors, self.name)
        from oodbench.detectors import build_detector

        try:
            build_detector(self.name, self.params)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
            raise ValueError(f"detector {self.name!r}: {problems} (`oodbench list detectors` "
                             "shows its parameters)") from None
        return self

    @property
    def display(self) -> str:
        return self.label or self.name

    def __hash__(self) -> int:  # frozen pydantic models with dict fields are not hashable
        return hash((self.name, self.label, json.dumps(self.params, sort_keys=True)))


class FitSpec(BaseModel):
    """The in-distribution training points detectors fit on (class means, feature banks, …):
    a seeded subset of ``n`` points of ``split`` of the in-distribution data set."""

    model_config = ConfigDict(extra="forbid")

    split: str = "train"
    n: Optional[Count] = Field(10_000, description="points (a seeded subset); null: the whole split")


class Resources(BaseModel):
    """What one shard task reserves on a cluster. Fractional GPUs share one device between
    tasks (0.25: four shards per GPU at once)."""

    model_config = ConfigDict(extra="forbid")

    cpus_per_task: float = Field(1.0, gt=0, le=1024)
    gpus_per_task: float = Field(0.0, ge=0, le=64)


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

    name: Label
    description: str = ""
    seed: Seed = 0
    batch_size: BatchSize = 256
    device: Annotated[str, AfterValidator(check_device_name)] = Field(
        "auto", description="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', 'mps'")
    data_root: Optional[PathText] = Field(None, description=f"overridden by --data-root and ${DATA_ROOT_ENV}")
    download: bool = Field(True, description="download missing datasets (torchvision) into data_root")
    skip_missing: bool = Field(False, description="skip probes whose data is missing, with a warning")
    output: Optional[PathText] = Field(None, description="results store; default results/<name>.db "
                                  "(the name made a safe file name)")
    ci: Optional[float] = Field(None, gt=0, lt=1, description="report every value with its "
                                "bootstrap interval at this level (e.g. 0.95) unless --ci says otherwise")
    shard_size: int = Field(1000, gt=0, description="points per stored shard: the unit that is "
                            "stored, resumed and scheduled (results do not depend on it)")
    executor: str = Field("local", description="who runs the shards (`oodbench list executors`)")
    resources: Resources = Field(default_factory=lambda: Resources(),
                                 description="what each shard task reserves (executor: ray)")
    max_retries: int = Field(2, ge=0, le=100, description="times a failed shard task is retried "
                             "(executor: ray) before it is reported")
    ray_address: Optional[str] = Field(None, description="executor: ray — the cluster to join "
                                       "('auto': a running one); default: start a local one")
    full_spectrum: bool = Field(False, description="OpenOOD's full-spectrum setting (fsood): the "
                                "`group: csid` probes join the in-distribution side of every OOD "
                                "row; without it they are not evaluated")
    in_distribution: DataSpec
    models: list[SuiteModel] = Field(min_length=1)
    probes: list[DataSpec] = Field(default_factory=list)
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1,
                                      description="at least one: a run without metrics computes "
                                      "for nothing")
    detectors: list[DetectorSpec] = Field(
        default_factory=lambda: [DetectorSpec(name=DEFAULT_DETECTOR)], min_length=1,
        description="OOD scores to evaluate (`oodbench list detectors`); default: msp")
    fit: FitSpec = Field(default_factory=lambda: FitSpec(), description="training data of the "
                         "detectors that need a fit")
    checks: ChecksSpec = Field(default_factory=lambda: ChecksSpec(), description="trust checks "
                               "(gradient masking, …) run beside the jobs: their flags are stored "
                               "apart and change no metric or job key (`oodbench list checks`)")
    source: Optional[Path] = Field(None, exclude=True)

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, v: str) -> str:
        return _check_registered(executors, v)

    def _input_shape(self) -> Optional[tuple[int, ...]]:
        """The in-distribution images' (C, H, W) when its registry entry declares it."""
        name = self.in_distribution.dataset
        shape = datasets.meta(name).get("shape") if name else None
        return tuple(shape) if shape else None

    @model_validator(mode="after")
    def _attacks_resolve(self) -> "Suite":
        """Check each attack's settings against its defaults now, not an hour into the run; an
        ε-ball that holds the whole image cube is no threat model (every image is reachable)."""
        shape = self._input_shape()
        dim = None if shape is None else int(math.prod(shape))
        for i, probe in enumerate(self.probes):
            if probe.attack is not None:
                try:
                    spec = attacks.get(probe.attack.name)().resolve(
                        probe.attack, self.in_distribution.dataset or "")
                except (ValueError, TypeError) as err:
                    raise _LocatedError(("probes", i, "attack", *getattr(err, "loc", ())),
                                        f"{probe.label}: {err}") from None
                radius = cube_radius(spec.threat.norm, dim) if spec.threat is not None else None
                if radius is not None and spec.threat.eps >= radius:
                    raise _LocatedError(
                        ("probes", i, "attack", "threat", "eps"),
                        f"{probe.label}: a {spec.threat.norm} ball of radius {spec.threat.eps:g} "
                        f"contains the whole image cube [0, 1]^{dim or 'd'} (from radius "
                        f"{radius:g} on), so the attack is unconstrained; use an eps below "
                        f"{radius:g}")
        return self

    @model_validator(mode="after")
    def _fit_split_exists(self) -> "Suite":
        """The detectors' training points come from ``fit.split`` of the in-distribution set."""
        from oodbench.data import check_dataset_split

        if self.in_distribution.dataset is not None:
            try:
                check_dataset_split(self.in_distribution.dataset, self.fit.split)
            except ValueError as err:
                raise _LocatedError(("fit", "split"), str(err)) from None
        return self

    @model_validator(mode="after")
    def _models_can_be_built(self) -> "Suite":
        """What a model's adapter would refuse for a missing field, and what its architecture
        would refuse for its options, is refused now, not after the cached jobs of a run: each
        adapter's declared ``required`` fields, and the architecture built on PyTorch's meta
        device (shapes only: no memory, no weights; well under a second even for a ResNet-50)."""
        for i, model in enumerate(self.models):
            problem = missing_model_field(model)
            if problem is not None:
                raise _LocatedError(("models", i, problem[0]), f"{model.name}: {problem[1]}")
            problem = arch_options_problem(model)
            if problem is not None:
                raise _LocatedError(("models", i, "arch_options", *problem[0]),
                                    f"{model.name}: {problem[1]}")
        return self

    @model_validator(mode="after")
    def _normalize_fits(self) -> "Suite":
        """A mean/std per channel of the in-distribution images (or one for all)."""
        shape = self._input_shape()
        for i, model in enumerate(self.models):
            norm = model.normalize
            if norm is not None and shape is not None and len(norm.mean) not in (1, shape[0]):
                raise _LocatedError(
                    ("models", i, "normalize"),
                    f"{model.name}: {len(norm.mean)} mean/std values, but "
                    f"{self.in_distribution.dataset!r} images have {shape[0]} channel(s); give "
                    f"{shape[0]} (or 1 for all channels)")
        return self

    @model_validator(mode="after")
    def _early_stop_is_exact(self) -> "Suite":
        """A forced early stop would silently bias a metric without an exact stop rule (AUPR-out):
        allow it only when every metric asked declares one."""
        msp = all(d.name == DEFAULT_DETECTOR for d in self.detectors)
        not_rank = [m for m in self.metrics if metrics.meta(m)["scope"] != MetricScope.IN
                    and not early_stop_is_exact([m], msp=msp)]
        for i, probe in enumerate(self.probes):
            if probe.attack is not None and probe.attack.early_stop is True and not_rank:
                raise _LocatedError(
                    ("probes", i, "attack", "early_stop"), f"{probe.label}: `early_stop: true` would change "
                    f"{', '.join(not_rank)} (they need the full attack); use `early_stop: auto`, "
                    "which stops early only when that is exact for every metric asked")
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
        rows_fix = ("(the in-distribution set and every probe label a row of the table): give "
                    "this entry a distinct `name:`")
        for what, entries, fix in (
                ("row label", self.row_labels(), rows_fix),
                ("model name", [(("models", i, "name"), m.name) for i, m in enumerate(self.models)],
                 rows_fix),
                ("detector label", [(("detectors", i), d.display) for i, d in enumerate(self.detectors)],
                 "(each labels a block of rows): give this entry a distinct `label:`")):
            first: dict[str, tuple[Any, ...]] = {}
            for loc, label in entries:
                if label in first:
                    raise _LocatedError(loc, f"{what} {label!r} is already used by "
                                        f"`{_format_loc(first[label])}`; {what}s must be unique {fix}")
                first[label] = loc
        return self

    @model_validator(mode="after")
    def _csid_probes_are_clean(self) -> "Suite":
        """A covariate-shifted in-distribution set joins the in-distribution side; it is
        evaluated clean (an attack on it, or on other points with it, would need early-stop
        thresholds over both sides), and `full_spectrum` needs one."""
        csid = [i for i, p in enumerate(self.probes) if p.group == "csid"]
        for i in csid:
            if self.probes[i].attack is not None:
                raise _LocatedError(("probes", i, "group"), f"{self.probes[i].label}: a `group: "
                                    "csid` probe joins the in-distribution side and is evaluated "
                                    "clean; remove its `attack` or its group")
        if self.full_spectrum and not csid:
            raise _LocatedError(("full_spectrum",), "`full_spectrum: true` adds the `group: csid` "
                                "probes to the in-distribution side, and this suite has none")
        if self.full_spectrum:
            for i, p in enumerate(self.probes):
                if p.attack is not None:
                    raise _LocatedError(("probes", i, "attack"), f"{p.label}: attacks are not "
                                        "supported with `full_spectrum: true` (their early stop "
                                        "ranks against the in-distribution test set alone)")
        if self.in_distribution.group is not None:
            raise _LocatedError(("in_distribution", "group"), "`group` belongs to probes")
        return self

    @model_validator(mode="after")
    def _versus_names_a_probe(self) -> "Suite":
        """An attack that lowers in-distribution scores is scored against one OOD probe: check
        that ``versus`` names one (and that such an attack has it) before anything runs."""
        ood = {p.label for p in self.probes if p.versus is None}
        for i, probe in enumerate(self.probes):
            needs = probe.attack is not None and attacks.get(probe.attack.name).row is RowKind.IN_ATTACKED
            if needs and probe.versus is None:
                raise _LocatedError(("probes", i, "versus"), f"{probe.label}: attack "
                                    f"{probe.attack.name!r} lowers in-distribution scores; add "
                                    "`versus: LABEL` naming the probe whose points are the OOD side")
            if probe.versus is not None and not needs:
                raise _LocatedError(("probes", i, "versus"), f"{probe.label}: `versus` belongs to "
                                    "an attack on in-distribution points (in-distribution-attack)")
            if probe.versus is not None and probe.versus not in ood:
                raise _LocatedError(("probes", i, "versus"), f"{probe.label}: `versus: "
                                    f"{probe.versus}` names no OOD probe; known: {', '.join(sorted(ood))}")
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def resolve_data_root(self, override: Union[str, Path, None] = None) -> Path:
        return resolve_data_root(self.data_root, self.base_dir, override)

    def resolve_output(self, override: Union[str, Path, None] = None) -> Path:
        """The results store; relative paths are relative to the working directory. The default
        is named after the suite through :func:`slugify`: a name is not a path, and one like
        ``../../x`` must not write outside ``results/``."""
        return Path(override or self.output
                    or f"results/{slugify(self.name, fallback='suite')}.db").expanduser()

    def hashed_dump(self, exclude: set[str]) -> dict[str, Any]:
        """``model_dump`` for a hash: fields added after hashes were first stored are left out
        while they hold their defaults (``full_spectrum``, a probe's ``group``), so the hashes
        of suites that do not use them stay what they were."""
        payload = self.model_dump(mode="json", exclude=exclude)
        if not self.full_spectrum:
            payload.pop("full_spectrum", None)
        for spec in [payload.get("in_distribution") or {}, *payload.get("probes", [])]:
            if spec.get("group") is None:
                spec.pop("group", None)
        return payload

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of everything that defines the suite's results."""
        excluded = {"output", "data_root", "description", "shard_size", "executor", "resources",
                    "ci", "max_retries", "ray_address"}
        if self.detectors == [DetectorSpec(name=DEFAULT_DETECTOR)]:  # the default: hashes of older suites hold
            excluded.add("detectors")
        if not any(detectors.get(d.name).needs & {Need.FIT} for d in self.detectors):
            excluded.add("fit")
        if self.checks.is_default:  # the default: hashes of suites from before checks hold
            excluded.add("checks")
        payload = self.hashed_dump(excluded)
        for spec in [payload["in_distribution"], *payload["probes"]]:
            if spec.get("versus") is None:
                spec.pop("versus", None)
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


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Optional[yaml.Node]]:
    data, node = read_yaml(path, SuiteError, "suite file")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SuiteError(f"{path}:{_node_line(node, ()) or 1}: a suite must be a YAML mapping "
                         "(name:, models:, probes:, …)")
    include = data.pop("include", None)
    if include is not None:
        if not isinstance(include, str) or not include.strip():
            raise SuiteError(f"{path}:{_node_line(node, ('include',))}: field `include`: must be "
                             f"the path of one suite file, got {include!r}")
        parent_path = (path.parent / include).resolve()
        if parent_path in seen:
            raise SuiteError(f"{path}:{_node_line(node, ('include',))}: field `include`: "
                             f"`include: {include}` forms a cycle")
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
            lines.append(f"{where}:{line or 1}: field `{_format_loc(loc)}`: {msg}")
        raise SuiteError("invalid suite\n  " + "\n  ".join(lines)) from None
    suite.source = source
    return suite


def load_suite(path: Union[str, Path], **overrides: Any) -> Suite:
    """Read, merge ``include:``s, validate. ``overrides`` replace top-level fields."""
    path = Path(path)
    data, node = _read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_suite(data, source=path, node=node)
