"""A new component is one file: a detector, an attack, a report layout, a metric, a trust check
and a data set are each added by writing one module into a copy of the package, with no other
file edited, and the registry-parametrised tests (run in a subprocess against the copy) collect
and pass them.

The registries find the modules by scanning their family's folder (:func:`oodbench.core.registry.
import_tree`); nothing lists them.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: (path in the package, test files whose registry-parametrised tests must pick it up, name)
NEW_FILES = {
    "detectors/top2_margin.py": ("tests/test_detectors.py", "top2-margin", '''
"""A detector written by a test: the margin between the two largest logits."""

from oodbench.detectors import Detector
from oodbench.core.registry import detectors


@detectors.register("top2-margin")
class Top2Margin(Detector):
    """Difference of the two largest logits (a detector added as one file)."""

    name = "top2-margin"

    def score(self, out, fit):
        top = out.logits.topk(2, dim=1).values
        return top[:, 0] - top[:, 1]
'''),
    "attacks/short_noise.py": ("tests/test_attacks.py", "short-noise", '''
"""An attack written by a test: a short PGD on the log-confidence around probe images."""

from oodbench.attacks.base import grey_data
from oodbench.attacks.registered import EngineAttack
from oodbench.core.registry import attacks


@attacks.register("short-noise")
class ShortNoise(EngineAttack):
    """PGD raising the log-confidence around probe images, 10 steps (an attack added as one file)."""

    def defaults(self, in_dataset):
        eps = 0.3 if grey_data(in_dataset) else 8 / 255
        return {"threat": {"norm": "Linf", "eps": eps}, "objective": "max-log-conf",
                "optimizer": "pgd", "steps": 10, "step_size": eps / 4, "restarts": 1,
                "random_start": True}
'''),
    "report/layouts/model_list.py": ("tests/test_report.py", "model-list", '''
"""A layout written by a test: the test error of each model, one row per model."""

from oodbench.core.registry import layouts
from oodbench.report.layouts import Block, Row, Table, finish_table, make_cell


@layouts.register("model-list")
def model_list(runs, numbers, refs) -> Table:
    """Test error per model, one row each (a layout added as one file)."""
    blocks = [Block(stub=f"Trained on {run.in_label}", columns=["test error"],
                    rows=[Row(m, [make_cell(numbers, "test-error",
                                            run.value(m, run.in_label, "test-error"))])
                          for m in run.models]) for run in runs]
    return finish_table(runs, "model-list", "Test error per model", blocks, numbers, refs)
'''),
    "metrics/score_gap.py": ("tests/test_metrics.py", "mean-score-gap", '''
"""A metric written by a test: how far the detector's mean score drops from in to out."""

from oodbench.metrics import MetricInput, register


@register("mean-score-gap", scope="probe", higher_is_better=True)
def mean_score_gap(inp: MetricInput) -> float:
    """Mean detector score in-distribution minus mean score on the probe (a metric in one file)."""
    return float(inp.in_score.mean() - inp.out_score.mean())
'''),
    "checks/non_finite.py": ("tests/test_flags.py", "non-finite-output", '''
"""A check written by a test: the model returns NaN or infinite outputs on clean points."""

import torch

from oodbench.checks.base import Check
from oodbench.checks.calls import outputs
from oodbench.core.registry import checks


@checks.register("non-finite-output")
class NonFiniteOutput(Check):
    """Some output is NaN or infinite on clean in-distribution points (a check added as one file)."""

    code = "non-finite-output"
    scope = "model"
    meaning = "the model returns NaN or infinite outputs: no score computed from them means anything"

    def run(self, inputs):
        out = outputs(inputs.model.eval(), inputs.images.to(inputs.device))
        bad = int((~torch.isfinite(out)).any(1).sum())
        return f"{bad} of {len(out)} checked rows are not finite" if bad else None
'''),
    "data/flat_grey.py": ("tests/test_data.py", "flat-grey", '''
"""A data set written by a test: images of one random grey level each."""

import torch

from oodbench.data.base import DataRequest, ImageSet
from oodbench.data.common import check_options, no_options
from oodbench.core.registry import datasets


@datasets.register("flat-grey", shape=None, num_classes=None, kind="synthetic",
                   source="one uniform grey level per image, shape of the in-distribution set",
                   check_options=no_options("flat-grey"))
def flat_grey(request: DataRequest) -> ImageSet:
    """Images of one random grey level each, in the in-distribution's shape (one file)."""
    check_options("flat-grey", request, ())
    c, h, w = request.reference.shape
    n = 1000 if request.n is None else request.n
    levels = torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(request.seed))
    return ImageSet("flat-grey", levels.expand(n, c, h, w).contiguous(), None)
'''),
}


def _differences(a: Path, b: Path, below: str = "") -> list[str]:
    """Paths (relative to ``a`` and ``b``) added, removed or changed between two trees."""
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [below + n for n in cmp.left_only + cmp.right_only + cmp.diff_files]
    return out + [d for sub in cmp.common_dirs
                  for d in _differences(a / sub, b / sub, f"{below}{sub}/")]


@pytest.mark.slow
def test_each_kind_of_component_is_one_new_file(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "oodbench", copy / "oodbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path, (_, _, source) in NEW_FILES.items():
        (copy / "oodbench" / path).write_text(source.lstrip())
    # nothing but the new modules differs from the package under test
    assert sorted(_differences(ROOT / "oodbench", copy / "oodbench")) == sorted(NEW_FILES)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    where = subprocess.run([sys.executable, "-c", "import oodbench; print(oodbench.__file__)"],
                           env=env, cwd=copy, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).parent == copy / "oodbench"
    names = [name for _, name, _ in NEW_FILES.values()]
    report = tmp_path / "junit.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "-k", " or ".join(names), *sorted({str(ROOT / f) for f, _, _ in NEW_FILES.values()})],
        env=env, cwd=copy, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    passed: dict[str, list[str]] = {name: [] for name in names}
    for case in cases:
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        for name in names:
            if f"[{name}" in case.get("name", ""):
                passed[name].append(case.get("name"))
    for path, (test_file, name, _) in NEW_FILES.items():
        assert passed[name], f"no test of {test_file} picked up {name} ({path})"
