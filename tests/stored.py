"""What a run left in its results store, compared array by array (the Ray executor tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oodbench.pipeline.store import ResultStore


def run_arrays(db: Path, result) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Every job a run used, keyed by (model, probe) names: runs whose models were loaded by
    different adapters (different job keys) still compare."""
    with ResultStore(db) as store:
        return {(j.model, str(j.probe)): store.get_job(j.job_hash)
                for j in store.run_jobs(result.run_id).itertuples()}


def assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for row in a:
        assert a[row].keys() == b[row].keys(), row
        for key in a[row]:
            np.testing.assert_array_equal(a[row][key], b[row][key], err_msg=f"{row} / {key}")
