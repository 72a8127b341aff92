"""Group rows: the mean of each metric over a ``group:`` of probes, and NINCO's unit-test count.

OpenOOD v1.5 reports every benchmark per OOD set *and* as the mean over its near-OOD and its
far-OOD sets ("nearood", "farood"); NINCO reports the mean over its 64 classes and, for its 17
OOD unit tests, how many a detector fails (FPR@95 above 10%). Both are functions of the per-set
rows alone, so they are computed here, from a table's long metrics frame, never stored: the
stored metrics stay one row per set (what ``verify`` recomputes), and every table, report layout
and leaderboard board derives the same group rows by this one function. A group row's bootstrap
interval resamples each member set's points and recomputes the mean
(:func:`oodbench.pipeline.score.bootstrap.bootstrap_mean_intervals`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import numpy as np
import pandas as pd

UNIT_TESTS = "unit-tests"
"""The group NINCO's OOD unit tests belong to: its row counts failures instead of a mean."""
CSID = "csid"
"""Covariate-shifted in-distribution sets: they make no row (see ``full_spectrum``)."""
FAIL_FPR = 0.1
"""NINCO counts a unit test as failed when its FPR@95 exceeds this."""
FAIL_METRIC = "fpr95"
FAILED, TESTS = "failed", "tests"
COUNTS = frozenset({FAILED, TESTS})
"""The unit-tests row's metrics: counts of tests, stored as floats like every metric but
printed as integers (``3``, not ``3.000``) by every table, report and leaderboard."""
MEAN_SUFFIX = " (mean)"


def count_text(value: float) -> str:
    """A count (:data:`COUNTS`) as printed: an integer."""
    return f"{value:.0f}"


def group_label(group: str) -> str:
    """The row label of a group: ``near (mean)``, ``far (mean)``, …; ``unit-tests``."""
    return group if group == UNIT_TESTS else f"{group}{MEAN_SUFFIX}"


def probe_groups(suite: Mapping[str, Any]) -> dict[str, str]:
    """``{row label: group}`` of a suite as stored (``runs.suite_json``, a board's suite)."""
    out: dict[str, str] = {}
    for spec in suite.get("probes") or []:
        if not isinstance(spec, Mapping) or not spec.get("group"):
            continue
        attack = spec.get("attack") or {}
        label = spec.get("name") or spec.get("dataset") or attack.get("name")
        if label:
            out[str(label)] = str(spec["group"])
    return out


def _members(long: pd.DataFrame, groups: Mapping[str, str]) -> dict[str, list[str]]:
    present = set(long["probe"])
    out: dict[str, list[str]] = {}
    for label, group in groups.items():
        if group != CSID and label in present:
            out.setdefault(group, []).append(label)
    return out


def group_values(values: Mapping[str, Mapping[str, float]], group: str) -> dict[str, float]:
    """The group row of one model (· detector): ``values`` maps each member's label to its
    metrics. A mean row averages each metric every member has (finite); the unit-tests row
    counts members whose FPR@95 exceeds :data:`FAIL_FPR` (``failed``) among those that have one
    (``tests``)."""
    if group == UNIT_TESTS:
        fprs = [v.get(FAIL_METRIC) for v in values.values()]
        known = [float(f) for f in fprs if f is not None and np.isfinite(f)]
        return {FAILED: float(sum(f > FAIL_FPR for f in known)), TESTS: float(len(known))} if known else {}
    metrics = set.intersection(*(set(v) for v in values.values())) if values else set()
    out = {}
    for metric in sorted(metrics):
        column = [values[label][metric] for label in values]
        if all(v is not None and np.isfinite(v) for v in column):
            out[metric] = float(np.mean(column))
    return out


def with_group_rows(long: pd.DataFrame, groups: Mapping[str, str]) -> pd.DataFrame:
    """``long`` (columns model, [detector,] probe, metric, value, …) with one row per group and
    model (· detector) appended after the per-set rows. Nothing changes without groups."""
    if long.empty or not groups:
        return long
    members = _members(long, groups)
    if not members:
        return long
    keys = [c for c in ("model", "detector") if c in long.columns]
    added: list[dict[str, Any]] = []
    for key, part in long.groupby(keys, sort=False) if keys else [((), long)]:
        key = key if isinstance(key, tuple) else (key,)
        table: dict[str, dict[str, float]] = {}
        for row in part.itertuples(index=False):
            table.setdefault(str(row.probe), {})[str(row.metric)] = row.value
        for group, labels in members.items():
            have = {label: table[label] for label in labels if label in table}
            if len(have) != len(labels):
                continue  # a member is missing for this model: no mean over a different set
            for metric, value in group_values(have, group).items():
                added.append({**dict(zip(keys, key)), "probe": group_label(group),
                              "metric": metric, "value": value})
    if not added:
        return long
    return pd.concat([long, pd.DataFrame(added)], ignore_index=True)


def group_members(groups: Mapping[str, str], labels: Iterable[str]) -> dict[str, list[str]]:
    """``{group: member labels}`` of the groups with a mean row (not unit tests, not csid),
    members in ``labels``' order."""
    out: dict[str, list[str]] = {}
    for label in labels:
        group: Optional[str] = groups.get(label)
        if group is not None and group not in (CSID, UNIT_TESTS):
            out.setdefault(group, []).append(label)
    return out
