"""The attack ensemble on the adversarial-noise row of ``suites/detectors-mnist.yaml``: AUROC
and cost of each version, and of each member alone, per detector.

    python benchmarks/ensemble_mnist.py --data-root ../shared/data/mnist-10k \
        [--detectors knn vim mahalanobis msp] [--versions paper fast standard] [--members] \
        [--store /tmp/ensemble.db] [--no-reference] [--metrics auroc fpr95]

Every run uses one results store, so the clean pass and the detectors' fits are computed once
and each timed run is the attack alone (trust checks off). Per version: AUROC (%) per
detector, wall and CPU seconds of the run, and the gradient evaluations the attack stored;
``--members`` adds each standard member run alone (``version: custom`` with that member, same
points and seed) and the ensemble's AUROC after each member (as ``oodbench show`` prints).
A 500-step APGD alone (``apgd-500``) is the cost reference of the issue: ``standard`` should
cost within 3× of it wherever most points settle early.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from oodbench.attacks.members import VERSIONS
from oodbench.pipeline.run import run_suite
from oodbench.pipeline.score.members import member_summaries
from oodbench.pipeline.score.table import TableScorer
from oodbench.pipeline.store import ResultStore
from oodbench.pipeline.suite import parse_suite

REPO = Path(__file__).resolve().parents[1]


def _suite(detectors: list[str], name: str, attack: dict[str, Any],
           metrics: list[str]) -> dict[str, Any]:
    base = yaml.safe_load((REPO / "suites" / "detectors-mnist.yaml").read_text())
    row = next(p for p in base["probes"] if p["name"] == "Adv. Noise")
    suite = copy.deepcopy(base)
    suite.update(name=f"ensemble-{name}", detectors=detectors, metrics=metrics,
                 checks={"enabled": False},
                 probes=[dict(row, name=f"Adv. Noise {name}", attack={"name": "adversarial-noise",
                                                                       **attack})])
    suite["models"][0]["path"] = str(REPO / "model_zoo" / "mnist-lenet-plain-cpu.safetensors")
    return suite


def _run(suite: dict[str, Any], store: Path, data_root: str,
         metric: str) -> tuple[dict[str, float], float, float, int, list[str]]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_suite(parse_suite(suite), output=store, data_root=data_root, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frame = result.metrics
    aurocs = {d: 100 * float(v) for d, v in
              frame[(frame.metric == metric) & frame.probe.str.startswith("Adv. Noise")]
              [["detector", "value"]].itertuples(index=False)}
    with ResultStore(store, readonly=True) as s:
        attacked = [h for h in set(s.run_jobs(result.run_id).job_hash)
                    if (record := s.job_record(h)) is not None and record.kind == "attack"]
        evals = sum(int(np.asarray(s.get_job(h)["gradient_evaluations"])) for h in attacked)
        lines = [m.line() for m in member_summaries(s, result.run_id, TableScorer(s, [], 0))]
    return aurocs, wall, cpu, evals, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--detectors", nargs="+", default=["knn", "vim", "mahalanobis", "msp"])
    parser.add_argument("--versions", nargs="+", default=["paper", "fast", "standard"])
    parser.add_argument("--members", action="store_true", help="each standard member alone too")
    parser.add_argument("--store", default="/tmp/oodbench-ensemble-mnist.db")
    parser.add_argument("--metrics", nargs="+", default=["auroc", "fpr95"],
                        help="the suite's metrics (they decide which points settle early); "
                             "the first is printed")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the 500-step APGD cost reference")
    args = parser.parse_args()
    runs: list[tuple[str, dict[str, Any]]] = [(v, {"version": v}) for v in args.versions]
    if not args.no_reference:
        runs.append(("apgd-500", {"version": "custom", "members": [{"name": "apgd", "steps": 500}]}))
    if args.members:
        runs += [(f"alone: {m.name}", {"version": "custom", "members": [m.model_dump()]})
                 for m in VERSIONS["standard"]]
    # the clean pass and the fits first, untimed
    run_suite(parse_suite(dict(_suite(args.detectors, "warm", {"version": "paper"}, args.metrics),
                               probes=[])), output=Path(args.store), data_root=args.data_root,
              progress=False)
    print(f"{args.metrics[0]} (%)")
    print(f"{'run':<24}" + "".join(f"{d:>13}" for d in args.detectors)
          + f"{'wall s':>9}{'CPU s':>9}{'grad evals':>12}")
    for name, attack in runs:
        aurocs, wall, cpu, evals, lines = _run(_suite(args.detectors, name.replace(' ', '-')
                                                      .replace(':', ''), attack, args.metrics),
                                               Path(args.store), args.data_root, args.metrics[0])
        print(f"{name:<24}" + "".join(f"{aurocs.get(d, float('nan')):>13.1f}" for d in args.detectors)
              + f"{wall:>9.0f}{cpu:>9.0f}{evals:>12,}", flush=True)
        for line in lines if name == "standard" else []:
            print("    " + line)


if __name__ == "__main__":
    main()
