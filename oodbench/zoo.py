"""Model zoo cards: one YAML file per named model, so a model is submitted by its name.

A card says how to build the network and where its weights are, pinned by sha256::

    name: digits-plain
    arch: digits-net                  # registered architecture (`oodbench list architectures`)
    arch_options: {num_classes: 5}
    weights: digits-plain.safetensors # a local file, relative to the card ...
    url: https://example.org/digits-plain.safetensors   # ... and/or where to download it
    sha256: 74f9fb82…                 # required with `url`; checked before every use
    adapter: safetensors              # optional: checkpoint | safetensors (default: by suffix)
    normalize: {mean: [...], std: [...]}   # optional, as in a suite's model entry
    paper:                            # optional: the paper and the numbers it reports
      citation: Hein et al., CVPR 2019, Table 1
      url: https://arxiv.org/abs/1812.05720
      units: percent                  # as in a reference card (oodbench.report.references)
      reported: {MNIST: {test-error: 0.66}}

The trainer (``oodbench train``) writes cards in this format beside the weights; its record of
the training (``recipe``, ``data``, ``metrics``, ``trained_with``, …) is kept as is and not used
to load the model. A ``weights`` file that exists is used; otherwise ``url`` is downloaded into
the cache (``$OODBENCH_CACHE/zoo``, default ``~/.cache/oodbench/zoo``) and used only when its
sha256 matches. Every error names the card file, the field and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from oodbench.core.errors import ReportError, ZooError
from oodbench.core.references import ReferenceCard, parse_card as parse_reference_card
from oodbench.core.yaml_location import format_loc, node_line
from oodbench.models.spec import Normalization
from oodbench.core.registry import UnknownNameError, architectures
from oodbench.core.validation import read_yaml

CACHE_ENV = "OODBENCH_CACHE"
DEFAULT_CACHE = Path("~/.cache/oodbench")
# The checkout's own zoo (present in a source or editable install, absent from a wheel).
PACKAGE_ZOO = Path(__file__).resolve().parent.parent / "model_zoo"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("https", "http", "file")


class PaperBlock(BaseModel):
    """The paper behind a model and the numbers it reports: a reference card without ``name``
    (the card's name is the model's), so ``report --reference CARD.yaml`` reads it too."""

    model_config = ConfigDict(extra="forbid")

    citation: str = ""
    url: Optional[str] = None
    units: Literal["fraction", "percent"] = "fraction"
    reported: Optional[dict[str, Any]] = None


class ZooCard(BaseModel):
    """One validated card; ``source`` is its file (``weights`` is relative to its folder)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    arch: str
    arch_options: dict[str, Any] = Field(default_factory=dict)
    normalize: Optional[Normalization] = None
    adapter: Optional[Literal["checkpoint", "safetensors"]] = None
    weights: Optional[str] = Field(None, description="local weights file, relative to the card")
    url: Optional[str] = Field(None, description="where to download the weights from")
    sha256: Optional[str] = Field(None, description="sha256 of the weights (required with url)")
    paper: Optional[PaperBlock] = None
    # the trainer's record of how the weights were made: provenance, not needed to load them
    method: Optional[str] = None
    training: Optional[dict[str, Any]] = None
    recipe: Optional[dict[str, Any]] = None
    data: Optional[dict[str, Any]] = None
    metrics: Optional[dict[str, Any]] = None
    history: Optional[list[Any]] = None
    trained_with: Optional[dict[str, Any]] = None
    source: Optional[Path] = Field(None, exclude=True)
    _node: Optional[yaml.Node] = PrivateAttr(None)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        try:
            architectures.entry(v)
        except UnknownNameError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("sha256")
    @classmethod
    def _is_sha256(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _SHA256_RE.match(v.strip().lower()):
            raise ValueError(f"{v!r} is not a sha256 (64 hex digits); give the output of "
                             "`sha256sum FILE`")
        return None if v is None else v.strip().lower()

    @field_validator("url")
    @classmethod
    def _is_url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and urllib.parse.urlparse(v).scheme not in _URL_SCHEMES:
            raise ValueError(f"{v!r} is not a URL; use https://…, http://… or file://…")
        return v

    @model_validator(mode="after")
    def _weights_located(self) -> "ZooCard":
        if self.weights is None and self.url is None:
            raise ValueError("a card needs `weights:` (a file beside the card) or `url:` + `sha256:`")
        if self.url is not None and self.sha256 is None:
            raise ValueError("`url:` needs `sha256:` (a download is used only if its hash matches); "
                             "add the output of `sha256sum FILE`")
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @property
    def adapter_name(self) -> str:
        """``adapter``, else ``safetensors`` if the weights' file name says so, else ``checkpoint``."""
        if self.adapter:
            return self.adapter
        name = self.weights or urllib.parse.urlparse(self.url or "").path
        return "safetensors" if name.lower().endswith(".safetensors") else "checkpoint"

    @property
    def paper_ref(self) -> Optional[str]:
        """What a leaderboard entry records as its paper: the URL, else the citation."""
        return None if self.paper is None else (self.paper.url or self.paper.citation or None)

    def error(self, field: str, problem: str, fix: str) -> ZooError:
        """``CARD:LINE: field `FIELD`: PROBLEM. Fix: FIX`` — the shape of every card message."""
        return ZooError(f"{_where(self.source, self._node, (field,))}: field `{field}`: {problem}. "
                        f"Fix: {fix}")

    def reference(self) -> Optional[ReferenceCard]:
        """The paper's numbers as a reference card (for ``report --reference``), or None."""
        if self.paper is None or self.paper.reported is None:
            return None
        block = {"name": self.name, "paper": self.paper.citation or self.paper.url or "",
                 "units": self.paper.units, "reported": self.paper.reported}
        try:
            return parse_reference_card(block, str(self.source or self.name), prefix="paper.")
        except ReportError as err:
            raise ZooError(str(err)) from None

    def checkpoint(self, *, cache_dir: Union[str, Path, None] = None) -> Path:
        """The verified weights file: ``weights`` if it exists, else the (cached) download."""
        if self.weights is not None:
            local = Path(self.weights).expanduser()
            local = local if local.is_absolute() else self.base_dir / local
            if local.is_file():
                self._verify(local, "weights")
                return local
            if self.url is None:
                raise self.error("weights", f"{local} does not exist",
                                 "put the file there, correct `weights` (relative to the card), "
                                 "or add `url:` + `sha256:` to download it")
        return self._download(zoo_cache(cache_dir))

    def _verify(self, path: Path, field: str) -> None:
        """Refuse a file whose sha256 differs from the card's (a corrupt or different model)."""
        from oodbench.models import file_sha256

        if self.sha256 is not None and (actual := file_sha256(path)) != self.sha256:
            raise self.error("sha256", f"{path} (from `{field}`) has sha256 {actual}, the card "
                             f"expects {self.sha256}; the file is not used",
                             "replace the file with the intended one, or, if it is the intended "
                             "checkpoint, update `sha256`")

    def _download(self, cache: Path) -> Path:
        """Download ``url`` into ``cache/<sha256>/`` unless a verified copy is there; a download
        whose sha256 differs is deleted and refused, so it can never be loaded by mistake."""
        assert self.url is not None and self.sha256 is not None
        from oodbench.models import file_sha256

        filename = Path(urllib.parse.unquote(urllib.parse.urlparse(self.url).path)).name
        target = cache / self.sha256 / (filename or f"{self.name}.{self.adapter_name}")
        if target.is_file() and file_sha256(target) == self.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(self.url) as response:
                shutil.copyfileobj(response, out, 1 << 20)
            actual = file_sha256(tmp)
            if actual != self.sha256:
                raise self.error("sha256", f"the file downloaded from {self.url} has sha256 "
                                 f"{actual}, the card expects {self.sha256}; it was deleted "
                                 "and is not used", "check `url` and `sha256` in the card")
            tmp.replace(target)
        except OSError as err:  # URLError, HTTPError and disk errors are all OSErrors
            raise self.error("url", f"downloading {self.url} to {target} failed ({err})",
                             "check the URL and the network, or download the file by hand and "
                             "point `weights:` at it") from err
        finally:
            tmp.unlink(missing_ok=True)
        return target


# --------------------------------------------------------------------------- loading + lookup


def zoo_cache(override: Union[str, Path, None] = None) -> Path:
    """Where downloaded checkpoints go: the override, else ``$OODBENCH_CACHE/zoo``, else
    ``~/.cache/oodbench/zoo`` (beside the datasets' default ``~/.cache/oodbench/data``)."""
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / "zoo"


def zoo_dirs(zoo: Union[str, Path, None] = None) -> list[Path]:
    """Folders searched for cards by name: ``zoo`` if given, else ``./model_zoo`` and the
    checkout's ``model_zoo`` (so the project's own cards work from anywhere)."""
    if zoo is not None:
        return [Path(zoo).expanduser()]
    dirs = [Path.cwd() / "model_zoo", PACKAGE_ZOO]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in
            [e.resolve() for e in dirs[:i]]]


def _where(source: Optional[Path], node: Optional[yaml.Node], loc: tuple[Any, ...]) -> str:
    line = node_line(node, loc)
    return f"{source or '<card>'}:{line or '?'}"


def parse_card(data: Any, *, source: Optional[Path] = None,
               node: Optional[yaml.Node] = None) -> ZooCard:
    """Validate a card given as a dict; errors are :class:`ZooError` with file:line: field."""
    if not isinstance(data, dict):
        raise ZooError(f"{source or '<card>'}: a model card is a YAML mapping (name:, arch:, "
                       "weights: or url: + sha256:, …)")
    try:
        card = ZooCard.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown field (remove it or check its spelling)"
            lines.append(f"{_where(source, node, tuple(e['loc']))}: field "
                         f"`{format_loc(tuple(e['loc'])) or 'card'}`: {msg}")
        raise ZooError("invalid model card\n  " + "\n  ".join(lines)) from None
    card.source, card._node = source, node
    if card.paper is not None:
        card.reference()  # check the reported numbers now, not when a report needs them
    return card


def load_card(path: Union[str, Path]) -> ZooCard:
    """Read and validate one card file."""
    path = Path(path)
    data, node = read_yaml(path, ZooError, "model card")
    return parse_card(data, source=path, node=node)


def _card_name(path: Path) -> Optional[str]:
    """The ``name:`` of a card file without validating it (None if unreadable)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None


def card_files(zoo: Union[str, Path, None] = None) -> list[Path]:
    """The card files (``*.yaml``, ``*.yml``; not recipes in sub-folders) of the zoo folders."""
    return [p for d in zoo_dirs(zoo) for p in sorted(d.glob("*.y*ml")) if p.suffix in (".yaml", ".yml")]


def find_card(name_or_path: Union[str, Path], zoo: Union[str, Path, None] = None) -> ZooCard:
    """A card by file path, or by ``name:`` (or file stem) in the first zoo folder that has it.

    Two different cards of one name in a folder are an error rather than a guess."""
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    if as_path.suffix in (".yaml", ".yml") or as_path.is_file():
        return load_card(as_path)
    dirs = zoo_dirs(zoo)
    for d in dirs:
        files = [p for p in card_files(d) if text in (p.stem, _card_name(p))]
        if len(files) > 1:
            raise ZooError(f"{d}: several cards are named {text!r}: "
                           f"{', '.join(p.name for p in files)}; give the card file instead")
        if files:
            return load_card(files[0])
    known = sorted({n for p in card_files(zoo) if (n := _card_name(p))})
    close = difflib.get_close_matches(text, known, n=3)
    raise ZooError(f"no model card named {text!r} in {', '.join(map(str, dirs)) or 'any zoo folder'}"
                   + (f"; did you mean {', '.join(close)}?" if close else "")
                   + (f" (cards: {', '.join(known)})" if known else "")
                   + "; give the card file or --zoo DIR")


def list_cards(zoo: Union[str, Path, None] = None) -> list[Union[ZooCard, ZooError]]:
    """Every card of the zoo folders, or the error that keeps one from loading (one bad card
    should not hide the others)."""
    out: list[Union[ZooCard, ZooError]] = []
    for path in card_files(zoo):
        try:
            out.append(load_card(path))
        except ZooError as err:
            out.append(err)
    return out
