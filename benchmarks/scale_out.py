"""Scale-out: the same suite on the Ray executor with 2 workers vs the local executor, in one run
(target >= 1.7x throughput on 2 cores, identical metrics).

    python benchmarks/scale_out.py [--n 2000] [--steps 150] [--shard-size 250] [--workers 2]

The suite is the quickstart model attacked with adversarial noise (early stop off: every point
gets the full budget, so both sides do exactly the same gradient evaluations) plus a clean probe.
Each side runs into its own fresh results store; the Ray cluster is started before timing (its
start-up is a one-off cost, not throughput). Prints both wall times, the throughput ratio and
whether every metric is identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from oodbench.runner import run_suite
from oodbench.suite import load_suite

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: scale-out
seed: 0
batch_size: 100
device: cpu
shard_size: {shard}
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: digits-plain, adapter: safetensors, path: {weights}, arch: digits-net, arch_options: {{num_classes: 5}}}}
probes:
  - {{name: noise, dataset: uniform-noise, n: {n}}}
  - {{name: adv. noise, dataset: smoothed-noise, n: {n}, attack: {{name: adversarial-noise, steps: {steps}, early_stop: false}}}}
metrics: [mmc, auroc, fpr95]
"""


def timed(suite_file: Path, executor: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_suite(load_suite(suite_file, executor=executor), output=Path(tmp) / "r.db",
                           progress=False)
        seconds = time.perf_counter() - start
    return seconds, {(r.model, r.probe, r.metric): r.value for r in result.metrics.itertuples()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    with tempfile.TemporaryDirectory() as tmp:
        suite_file = Path(tmp) / "suite.yaml"
        suite_file.write_text(SUITE.format(shard=args.shard_size, n=args.n, steps=args.steps,
                                           weights=REPO / "model_zoo/digits-plain.safetensors"))
        timed(suite_file, "ray")  # warm-up: worker processes import torch and load the data once
        local_s, local_m = timed(suite_file, "local")
        ray_s, ray_m = timed(suite_file, "ray")
    ray.shutdown()
    print(f"N={args.n} steps={args.steps} shard_size={args.shard_size} workers={args.workers} "
          f"local threads={torch.get_num_threads()}")
    print(f"local executor : {local_s:.2f} s")
    print(f"ray executor   : {ray_s:.2f} s")
    print(f"throughput ratio ray/local: {local_s / ray_s:.2f}  (target >= 1.7)")
    print(f"identical metrics: {local_m == ray_m}")


if __name__ == "__main__":
    main()
