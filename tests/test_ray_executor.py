"""``executor: ray`` on a real local Ray cluster (2 CPUs, started in this process)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from oodbench.pipeline.plan import ShardState
from oodbench.pipeline.run import plan_suite, run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import load_suite
from stored import assert_same_arrays, run_arrays  # tests/stored.py (pytest puts tests/ on sys.path)

import ray  # a test dependency (the `test` extra): never skipped

pytestmark = pytest.mark.slow  # a Ray cluster takes ~10 s to start

SUITE = """\
name: ray-test
seed: 0
batch_size: 64
device: cpu
shard_size: {shard}
executor: {executor}
max_retries: {retries}
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
{models}
probes:
  - {{name: digits 5-9, dataset: digits, options: {{classes: [5, 6, 7, 8, 9]}}}}
  - {{name: noise, dataset: uniform-noise, n: 100}}
  - {{name: seven, dataset: uniform-noise, n: 7}}
  - {{name: adv. noise, dataset: smoothed-noise, n: 100, attack: {{name: adversarial-noise, steps: 10}}}}
  - {{name: adv. samples, n: 60, attack: {{name: adversarial-samples, steps: 5}}}}
metrics: [test-error, mmc, auroc, fpr95]
"""

PLAIN = "  - {{name: {name}, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {path}}}"
WRAPPED = ("  - {{name: {name}, adapter: python, trust_code: true, factory: {factory}:build, "
           "factory_kwargs: {{weights: {path}, marker: '{marker}', fail_batch: {fail}}}}}")

FACTORY = textwrap.dedent('''
    """The digits net, made to die once (a worker crash) or to fail on calls of one size."""
    import os
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from oodbench.core.registry import architectures


    class Flaky(torch.nn.Module):
        def __init__(self, net, marker, fail_batch):
            super().__init__()
            self.net, self.marker, self.fail_batch = net, marker, fail_batch

        def forward(self, x):
            if self.marker and not Path(self.marker).exists():
                Path(self.marker).write_text("died once")
                os._exit(1)  # the worker process dies mid-task
            # oodbench calls models on fixed 128-row chunks, padded with copies of the first
            # row: count the points the call really holds
            points = len(x) - int((x == x[:1]).flatten(1).all(1).sum()) + 1
            if points == self.fail_batch:
                raise ValueError("this batch always fails")
            return self.net(x)


    def build(weights, marker="", fail_batch=-1):
        net = architectures.get("digits-net")(num_classes=5)
        net.load_state_dict(load_file(weights))
        return Flaky(net.eval(), marker, fail_batch)
''')


@pytest.fixture(scope="module")
def cluster():
    # A small object store: Ray's default is 30% of the machine's memory, and shards are small.
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def weights(digits_weights, tmp_path):
    """The trained digits net and a second model (its last layer scaled): several models."""
    sharp = load_file(digits_weights)
    sharp["fc2.weight"] = sharp["fc2.weight"] * 3
    save_file(sharp, tmp_path / "sharp.safetensors")
    return digits_weights, tmp_path / "sharp.safetensors"


def _write(tmp_path, name, models, *, executor="local", shard=40, retries=2) -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(models="\n".join(models), executor=executor, shard=shard,
                                 retries=retries))
    return path


def test_ray_executor_gives_the_local_executors_arrays_and_table(cluster, weights, tmp_path):
    models = [PLAIN.format(name="plain", path=weights[0]), PLAIN.format(name="sharp", path=weights[1])]
    local = run_suite(load_suite(_write(tmp_path, "local.yaml", models)),
                      output=tmp_path / "local.db", progress=False)
    distributed = run_suite(load_suite(_write(tmp_path, "ray.yaml", models, executor="ray")),
                            output=tmp_path / "ray.db", progress=False)
    assert_same_arrays(run_arrays(tmp_path / "local.db", local), run_arrays(tmp_path / "ray.db", distributed))
    assert local.table().equals(distributed.table())
    assert len(distributed.computed) == 12


def test_a_killed_worker_is_retried_and_the_results_are_identical(cluster, weights, tmp_path):
    factory = tmp_path / "flaky.py"
    factory.write_text(FACTORY)
    marker = tmp_path / "died"
    reference = run_suite(load_suite(_write(tmp_path, "local.yaml", [PLAIN.format(name="m", path=weights[0])])),
                          output=tmp_path / "local.db", progress=False)
    wrapped = WRAPPED.format(name="m", factory=factory, path=weights[0], marker=marker, fail=-1)
    result = run_suite(load_suite(_write(tmp_path, "ray.yaml", [wrapped], executor="ray")),
                       output=tmp_path / "ray.db", progress=False)
    assert marker.read_text() == "died once"  # a worker really died during the run
    assert_same_arrays(run_arrays(tmp_path / "local.db", reference), run_arrays(tmp_path / "ray.db", result))


def test_a_shard_that_always_fails_is_named_and_every_other_shard_is_stored(cluster, weights, tmp_path):
    factory = tmp_path / "flaky.py"
    factory.write_text(FACTORY)
    wrapped = WRAPPED.format(name="m", factory=factory, path=weights[0], marker="", fail=7)
    suite = load_suite(_write(tmp_path, "ray.yaml", [wrapped], executor="ray", retries=1))
    with pytest.raises(ValueError, match="this batch always fails") as err:
        run_suite(suite, output=tmp_path / "ray.db", progress=False)
    assert any("m / seven [0:7]" in note for note in err.value.__notes__)
    plan = plan_suite(suite, output=tmp_path / "ray.db")
    todo = {j.row for j in plan.jobs if any(s.state is not ShardState.CACHED for s in j.shards)}
    assert todo == {"seven"}  # everything else finished and was stored


def test_ray_executor_runs_detectors_fits_and_their_attacks_like_local(cluster, weights, tmp_path):
    """Fit jobs, ODIN's own forward passes and attacks on a feature detector's score travel to
    the workers as plain data and come back with the local executor's arrays."""
    models = [PLAIN.format(name="plain", path=weights[0])]
    detectors = "detectors: [msp, odin, {name: knn, k: 5}]\nfit: {n: 200}\nprobes:"
    paths = [_write(tmp_path, f"{name}.yaml", models, executor=name) for name in ("local", "ray")]
    for path in paths:
        path.write_text(path.read_text().replace("probes:", detectors, 1))
    local = run_suite(load_suite(paths[0]), output=tmp_path / "local.db", progress=False)
    distributed = run_suite(load_suite(paths[1]), output=tmp_path / "ray.db", progress=False)
    with ResultStore(tmp_path / "local.db") as a, ResultStore(tmp_path / "ray.db") as b:
        keys = set(a.run_jobs(local.run_id)["job_hash"])
        assert keys == set(b.run_jobs(distributed.run_id)["job_hash"])
        for key in keys:
            assert_same_arrays({key: a.get_job(key)}, {key: b.get_job(key)})
    assert local.table().equals(distributed.table())
    assert "knn" in set(distributed.metrics["detector"])
