"""A third-party CIFAR ResNet-18 checkpoint evaluates through a suite with no user code.

The checkpoint is written the way the widely used pytorch-cifar training script saves it:
``{"net": DataParallel state dict ("module." prefixes), "acc": float, "epoch": int}``, with the
standard key names (``conv1``, ``bn1``, ``layer1.0.conv1``, …, ``linear``). The in-distribution
set is a tiny CIFAR-10 written in the real pickle-batch format and read by torchvision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

try:
    from tests import formats
except ImportError:  # tests/ is not a package
    import formats  # type: ignore[no-redef]

from oodbench.metrics import confidence
from oodbench.core.registry import architectures
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import load_suite

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]

SUITE = f"""\
name: third-party
device: cpu
download: false
data_root: data
in_distribution: {{name: CIFAR-10, dataset: cifar10}}
models:
  - name: pytorch-cifar resnet18
    adapter: checkpoint
    arch: resnet18
    path: ckpt.pth
    normalize: {{mean: {MEAN}, std: {STD}}}
probes:
  - {{name: uniform noise, dataset: uniform-noise, n: 40}}
  - {{name: smoothed noise, dataset: smoothed-noise, n: 40}}
metrics: [test-error, mmc, auroc, fpr95]
"""


def test_pytorch_cifar_resnet18_checkpoint_runs_in_a_suite(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    batch = lambda n: (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).tolist())
    md5s = formats.write_cifar10(tmp_path / "data", [batch(2) for _ in range(5)], batch(24))
    formats.patch_cifar_md5(monkeypatch, CIFAR10, md5s)

    torch.manual_seed(0)
    net = architectures.get("resnet18")(num_classes=10).eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert {"module.conv1.weight", "module.layer1.0.conv1.weight", "module.linear.weight"} <= set(state)
    torch.save({"net": state, "acc": 95.3, "epoch": 199}, tmp_path / "ckpt.pth")
    (tmp_path / "suite.yaml").write_text(SUITE)

    result = run_suite(load_suite(tmp_path / "suite.yaml"), output=tmp_path / "r.db", progress=False)

    values = {(r.probe, r.metric): r.value for r in result.metrics.itertuples()}
    assert set(values) == {("CIFAR-10", "test-error"), ("CIFAR-10", "mmc"),
                           ("uniform noise", "mmc"), ("uniform noise", "auroc"), ("uniform noise", "fpr95"),
                           ("smoothed noise", "mmc"), ("smoothed noise", "auroc"), ("smoothed noise", "fpr95")}
    # The stored in-distribution logits are exactly those of the network on normalised images.
    test = formats_test_images(tmp_path)
    with torch.no_grad():
        expected = net((test - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])
    with ResultStore(tmp_path / "r.db") as store:
        jobs = store.run_jobs(result.run_id)
        clean = store.get_job(jobs[jobs.probe.isna()].job_hash.iloc[0])
    np.testing.assert_allclose(clean["logits"], expected.numpy(), rtol=1e-4, atol=1e-4)
    assert values[("CIFAR-10", "mmc")] == pytest.approx(float(confidence(clean["logits"]).mean()))


def formats_test_images(root) -> torch.Tensor:
    """The test batch as torchvision reads it, converted independently of oodbench."""
    ds = CIFAR10(root / "data", train=False, download=False)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255
