"""Scale-out: does each Ray worker add its share of throughput, and what does Ray buy on one machine?

    python benchmarks/scale_out.py [--n 2000] [--steps 150] [--shard-size 250] [--workers 1 2]
                                   [--repeats 1]

One suite (the quickstart model attacked with adversarial noise, early stop off so that every
point gets the full budget and every run does exactly the same gradient evaluations, plus a
clean probe) runs, each into its own fresh results store, on:

- the local executor with one torch thread: the unit of work a worker does;
- the local executor with every core (torch's intra-op threads): what one machine gives without
  Ray;
- Ray with W workers of one thread each (``OMP_NUM_THREADS=1`` in the workers), for each W of
  ``--workers`` (default 1, 2, 4, … up to the cores present).

For each W it prints the speed-up over the one-thread local run and the parallel efficiency
(speed-up / W; ideal 100%, i.e. a speed-up of W), and the ratio to the all-cores local run, the
honest single-machine figure. Each Ray cluster is started, and its workers warmed up on a small
run, before timing: start-up is a one-off cost, not throughput (``--repeats``: the fastest of
several runs counts). Every run must give the one-thread local run's metrics exactly. Wall times
are only meaningful on an otherwise idle machine: the load average is printed first.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from oodbench.pipeline.run import run_suite
from oodbench.pipeline.suite import load_suite

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: scale-out
seed: 0
batch_size: 100
device: cpu
shard_size: {shard}
executor: {executor}
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: digits-plain, adapter: safetensors, path: {weights}, arch: digits-net, arch_options: {{num_classes: 5}}}}
probes:
  - {{name: noise, dataset: uniform-noise, n: {n}}}
  - {{name: adv. noise, dataset: smoothed-noise, n: {n}, attack: {{name: adversarial-noise, steps: {steps}, early_stop: false}}}}
metrics: [mmc, auroc, fpr95]
"""

Metrics = dict[tuple[str, str, str], float]


def timed(folder: Path, executor: str, *, n: int, steps: int, shard: int, repeats: int = 1
          ) -> tuple[float, Metrics]:
    """The fastest wall time of ``repeats`` runs of the suite, each into a fresh store, and the
    metrics (the same every time, or the run fails)."""
    suite_file = folder / f"suite-{executor}.yaml"
    suite_file.write_text(SUITE.format(shard=shard, n=n, steps=steps, executor=executor,
                                       weights=REPO / "model_zoo/digits-plain.safetensors"))
    times, metrics = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            start = time.perf_counter()
            result = run_suite(load_suite(suite_file), output=Path(tmp) / "r.db", progress=False)
            times.append(time.perf_counter() - start)
        metrics.append({(r.model, r.probe, r.metric): r.value for r in result.metrics.itertuples()})
    if any(m != metrics[0] for m in metrics):
        raise RuntimeError(f"{executor}: repeated runs of one suite gave different metrics")
    return min(times), metrics[0]


def with_threads(threads: int, run: Callable[[], tuple[float, Metrics]]) -> tuple[float, Metrics]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run()
    finally:
        torch.set_num_threads(before)


def on_ray(workers: int, run: Callable[[], tuple[float, Metrics]], warm_up: Callable[[], object]
           ) -> tuple[float, Metrics]:
    """``run`` on a fresh local Ray cluster of ``workers`` one-thread workers, warmed up first."""
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        warm_up()  # every worker process starts, imports torch and loads the model and data
        return run()
    finally:
        ray.shutdown()


def default_workers(cores: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts + ([cores] if counts[-1] != cores else [])


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="points per probe")
    parser.add_argument("--steps", type=int, default=150, help="attack steps per point")
    parser.add_argument("--shard-size", type=int, default=250,
                        help="points per shard (give each worker several shards: n / shard-size "
                             ">= 2 x the largest W)")
    parser.add_argument("--workers", type=int, nargs="+", default=default_workers(cores),
                        help=f"Ray worker counts W (default: powers of two up to {cores} cores)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per configuration; the fastest counts (machine noise)")
    args = parser.parse_args()
    size = dict(n=args.n, steps=args.steps, shard=args.shard_size, repeats=args.repeats)

    print(f"N={args.n} steps={args.steps} shard_size={args.shard_size} repeats={args.repeats} "
          f"cores={cores} "
          f"load average before start={os.getloadavg()[0]:.2f} (figures hold for an idle machine)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed(folder, "local", n=20, steps=1, shard=10)  # warm-up: first-call costs in this process
        one_s, reference = with_threads(1, lambda: timed(folder, "local", **size))
        all_s, all_m = with_threads(cores, lambda: timed(folder, "local", **size))
        print(f"local executor, 1 thread     : {one_s:7.2f} s")
        print(f"local executor, {cores} threads{' ' if cores < 10 else ''}   : {all_s:7.2f} s  "
              f"speed-up {one_s / all_s:.2f}x over 1 thread")
        identical = {"local, all cores": all_m == reference}
        for w in args.workers:
            ray_s, ray_m = on_ray(w, lambda: timed(folder, "ray", **size),
                                  lambda: timed(folder, "ray", n=20 * w, steps=1, shard=10))
            identical[f"ray, {w} workers"] = ray_m == reference
            speed_up = one_s / ray_s
            print(f"ray, {w:2d} worker(s) x 1 thread: {ray_s:7.2f} s  speed-up {speed_up:.2f}x "
                  f"over 1 thread (ideal {w}), efficiency {speed_up / w:.0%}; "
                  f"vs local on {cores} cores {all_s / ray_s:.2f}x")
    print("metrics identical to the 1-thread local run: "
          + ", ".join(f"{name} {'yes' if same else 'NO'}" for name, same in identical.items()))


if __name__ == "__main__":
    main()
