"""``executor: ray`` on a multi-node Ray cluster: a head and a second node (``ray.cluster_utils``,
both on this machine, each with its own CPUs and a custom resource that names it). A suite's
shards are spread over both nodes with its attack artefacts where README says; the second node
is removed mid-run and its lost shards are retried on the head, with the local executor's
arrays and table and nothing stored lost."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from oodbench.attacks.counterfactuals import INDEX_FILE
from oodbench.pipeline.execute import SuiteData, Workspace, artifact_dir
from oodbench.pipeline.execute.ray_executor import RayExecutor
from oodbench.pipeline.run import plan_suite, run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import load_suite
from stored import assert_same_arrays, run_arrays  # tests/stored.py (pytest puts tests/ on sys.path)

import ray  # a test dependency (the `test` extra): never skipped
from ray.cluster_utils import Cluster

pytestmark = pytest.mark.slow  # two Ray nodes take ~10 s to start

NODE = {"object_store_memory": 100 * 2**20}  # each node's object store: shards are small
TIMEOUT_S = 300

SUITE = """\
name: ray-cluster-test
seed: 0
batch_size: 64
device: cpu
shard_size: 40
executor: {executor}
max_retries: 2
checks: {{enabled: false}}  # covered on Ray by test_ray_executor.py
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {model}
probes:
  - {{name: digits 5-9, dataset: digits, options: {{classes: [5, 6, 7, 8, 9]}}}}
  - {{name: noise, dataset: uniform-noise, n: 120}}
  - {{name: adv. noise, dataset: smoothed-noise, n: 80, attack: {{name: adversarial-noise, steps: 10}}}}
  - {{name: autoattack, n: 20, attack: {{name: autoattack, options: {{version: custom, attacks: [apgd-ce], chunk_size: 10}}}}}}
  - {{name: counterfactuals, attack: {{name: counterfactuals, steps: 5, options: {{n_images: 2, radii: [0.5, 1.0]}}}}}}
metrics: [test-error, mmc, auroc, fpr95]
"""

PLAIN = "{{name: m, adapter: safetensors, arch: digits-net, arch_options: {{num_classes: 5}}, path: {path}}}"
HANGING = ("{{name: m, adapter: python, trust_code: true, factory: {factory}:build, "
           "factory_kwargs: {{weights: {path}, node: '{node}', go: '{go}', hung: '{hung}'}}}}")

FACTORY = textwrap.dedent('''
    """The digits net; on one Ray node, once the file `go` exists, its next call hangs (after
    writing the file `hung`) until that node is removed."""
    import time
    from pathlib import Path

    import ray
    import torch
    from safetensors.torch import load_file

    from oodbench.core.registry import architectures


    class HangsOnNode(torch.nn.Module):
        def __init__(self, net, node, go, hung):
            super().__init__()
            self.net, self.node, self.go, self.hung = net, node, Path(go), Path(hung)

        def forward(self, x):
            if (self.go.exists() and ray.is_initialized()
                    and ray.get_runtime_context().get_node_id() == self.node):
                self.hung.write_text(self.node)
                while True:  # until the node's processes are killed
                    time.sleep(1)
            return self.net(x)


    def build(weights, node, go, hung):
        net = architectures.get("digits-net")(num_classes=5)
        net.load_state_dict(load_file(weights))
        return HangsOnNode(net.eval(), node, go, hung)
''')


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.fixture
def cluster():
    """A head (1 CPU, resource `head`) and a second node (1 CPU, resource `second`); the
    driver (this process) joins the head. Yields the cluster and {name: node id}."""
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"head": 1}, "include_dashboard": False, **NODE})
    second = c.add_node(num_cpus=1, resources={"second": 1}, **NODE)
    try:
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        ids = {name: n["NodeID"] for n in ray.nodes() for name in ("head", "second")
               if name in n["Resources"]}
        assert set(ids) == {"head", "second"}

        def ready() -> None:  # a local function travels by value: workers cannot import tests
            import oodbench.pipeline.execute.tasks  # noqa: F401

        # One worker per node starts now (torch and oodbench imported), placed by the nodes'
        # custom resources: otherwise the head may run every shard while the second node's
        # worker still imports torch.
        ray.get([ray.remote(ready).options(num_cpus=1, resources={name: 1}).remote()
                 for name in ids])
        yield c, second, ids
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def local(digits_weights, tmp_path_factory):
    """The reference: the suite on the local executor (its store and its result)."""
    folder = tmp_path_factory.mktemp("local")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_suite(_suite(folder, "local.yaml", PLAIN.format(path=digits_weights), "local"),
                           output=folder / "local.db", progress=False)
    finally:
        torch.set_num_threads(before)
    return folder / "local.db", result


def _suite(tmp_path: Path, name: str, model: str, executor: str):
    path = tmp_path / name
    path.write_text(SUITE.format(model=model, executor=executor))
    return load_suite(path)


def _ray_executor(suite, db: Path) -> RayExecutor:
    """The executor the runner would build, kept here to read which node ran each shard."""
    return RayExecutor(Workspace(suite, SuiteData(suite, suite.resolve_data_root()),
                                 torch.device("cpu"), db))


def _shard_ids(suite, db: Path) -> set[str]:
    """Every shard a run of ``suite`` into ``db`` computes, by the id its task carries."""
    return {f"{job.label} [{s.start}:{s.stop}]" for job in plan_suite(suite, output=db).jobs
            for s in job.shards}


def _artefacts_where_readme_says(db: Path, result) -> None:
    """AutoAttack's state file and the counterfactual grids are in `<store>-artifacts/`."""
    with ResultStore(db) as store:
        jobs = {str(j.probe): j.job_hash for j in store.run_jobs(result.run_id).itertuples()}
    aa_dir = artifact_dir(db, jobs["autoattack"])
    assert aa_dir.parent == db.with_name(db.stem + "-artifacts")
    [aa_state] = aa_dir.glob("autoattack-*seed0.npz")
    with np.load(aa_state) as state:
        assert state["done"].all() and state["logits"].shape == (20, 5)
    index = json.loads((artifact_dir(db, jobs["counterfactuals"]) / INDEX_FILE).read_text())
    grids = [artifact_dir(db, jobs["counterfactuals"]) / image["file"] for image in index["images"]]
    assert len(grids) == 2 and all(g.stat().st_size > 0 for g in grids)


def test_shards_run_on_both_nodes_and_artefacts_land_beside_the_store(cluster, local,
                                                                     digits_weights, tmp_path):
    _, _, ids = cluster
    suite = _suite(tmp_path, "ray.yaml", PLAIN.format(path=digits_weights), "ray")
    executor = _ray_executor(suite, tmp_path / "ray.db")
    expected = _shard_ids(suite, tmp_path / "ray.db")
    distributed = run_suite(suite, output=tmp_path / "ray.db", progress=False, executor=executor)

    assert expected <= set(executor.ran_on)  # every shard's node is known
    per_node = {name: sum(executor.ran_on[s] == node for s in expected) for name, node in ids.items()}
    assert per_node["head"] > 0 and per_node["second"] > 0, per_node
    _artefacts_where_readme_says(tmp_path / "ray.db", distributed)
    assert_same_arrays(run_arrays(*local), run_arrays(tmp_path / "ray.db", distributed))
    assert local[1].table().equals(distributed.table())


def test_a_node_removed_mid_run_loses_nothing_and_its_shards_rerun_on_the_head(
        cluster, local, digits_weights, tmp_path):
    """The head is held busy while the second node runs shards; once one is stored, the second
    node hangs in its next shard and is removed under it; then the head is freed."""
    c, second, ids = cluster
    factory, go, hung = tmp_path / "hangs.py", tmp_path / "go", tmp_path / "hung"
    holding, release = tmp_path / "holding", tmp_path / "release"
    factory.write_text(FACTORY)
    model = HANGING.format(factory=factory, path=digits_weights, node=ids["second"], go=go,
                           hung=hung)
    suite = _suite(tmp_path, "ray.yaml", model, "ray")
    executor = _ray_executor(suite, tmp_path / "ray.db")

    def hold_the_head(holding: Path, release: Path) -> None:  # a local function travels by value
        holding.touch()
        while not release.exists():
            time.sleep(0.05)

    held = ray.remote(hold_the_head).options(num_cpus=1, resources={"head": 1}).remote(
        holding, release)
    _wait_for(holding)
    ran_before_removal: dict[str, str] = {}

    def remove_the_second_node_mid_shard() -> None:
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while ids["second"] not in executor.ran_on.values():  # one shard stored from there
                assert time.monotonic() < deadline
                time.sleep(0.05)
            go.touch()
            _wait_for(hung)
            ran_before_removal.update(executor.ran_on)
            c.remove_node(second)
        finally:
            release.touch()

    watcher = threading.Thread(target=remove_the_second_node_mid_shard, daemon=True)
    watcher.start()
    distributed = run_suite(suite, output=tmp_path / "ray.db", progress=False, executor=executor)
    watcher.join(timeout=TIMEOUT_S)
    ray.get(held)

    assert hung.exists() and not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == ids["second"])
    # What the second node finished before it went was stored and counts; the shard it hung in,
    # and every later one, ran on the head, the one node left.
    assert set(ran_before_removal.values()) == {ids["second"]}
    assert all(executor.ran_on[s] == ids["second"] for s in ran_before_removal)
    after = {s: node for s, node in executor.ran_on.items() if s not in ran_before_removal}
    assert after and set(after.values()) == {ids["head"]}
    assert_same_arrays(run_arrays(*local), run_arrays(tmp_path / "ray.db", distributed))
    assert local[1].table().equals(distributed.table())
    _artefacts_where_readme_says(tmp_path / "ray.db", distributed)
    # Nothing stored was lost: a rerun (on the local executor) finds every job complete.
    again = run_suite(_suite(tmp_path, "ray.yaml", model, "local"), output=tmp_path / "ray.db",
                      progress=False)
    assert again.computed == [] and again.table().equals(distributed.table())
