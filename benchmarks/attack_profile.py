"""Where an attack's CPU time goes: torch.profiler over adversarial noise on the MNIST LeNet.

    python benchmarks/attack_profile.py --data-root DIR_WITH_MNIST [--n 300] [--steps 20]

Prints the profiler's table sorted by self CPU time. The share of the model's own kernels
(convolution, pooling, matmul and their backward passes) against the engine's bookkeeping
(copies, fills, empty allocations, indexing) says whether the engine loop or the model is the
cost: the engine's target is that its own rows stay a few percent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from oodbench.attacks import AttackConfig, ThreatModel, run_attack
from oodbench.data import DataRequest, load_dataset
from oodbench.models import load_model

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    model = load_model({"name": "lenet", "adapter": "safetensors", "arch": "lenet",
                        "path": str(REPO / "model_zoo/mnist-lenet-plain-cpu.safetensors")})
    ref = load_dataset("mnist", DataRequest(root=args.data_root, n=500))
    x = load_dataset("smoothed-noise", DataRequest(root=REPO, n=args.n, reference=ref)).images
    cfg = AttackConfig(threat=ThreatModel(norm="Linf", eps=0.3), steps=args.steps,
                       step_size=0.0075, select="confidence")
    run_attack(model, x[:50], cfg, batch_size=args.n)  # warm-up
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run_attack(model, x, cfg, batch_size=args.n)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
