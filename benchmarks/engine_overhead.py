"""Attack-engine overhead: one attack of N points × k iterations vs a bare loop doing the same
N×k forward+backward passes of the same model (target ≤ 1.10×).

    python benchmarks/engine_overhead.py [--n 1000] [--steps 200] [--batch-size 500]

Both sides run in this process on the same data, model and thread settings; the bare loop is the
floor any PGD implementation pays (forward, backward to the input, sign step, clamp). Prints the
two times and their ratio. Early stopping is off so both do exactly N×k gradient evaluations.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from oodbench.attacks import AttackConfig, ThreatModel, run_attack
from oodbench.data import DataRequest, load_dataset
from oodbench.models import load_model

REPO = Path(__file__).resolve().parents[1]


def bare_loop(model, x, steps: int, eps: float, step: float, batch_size: int) -> torch.Tensor:
    outs = []
    for start in range(0, len(x), batch_size):
        x0 = x[start:start + batch_size]
        xk = x0.clone()
        for _ in range(steps):
            xk.requires_grad_(True)
            obj = F.log_softmax(model(xk), dim=1).max(dim=1).values
            (g,) = torch.autograd.grad(obj.sum(), xk)
            xk = torch.min(torch.max(xk.detach() + step * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
        outs.append(xk)
    return torch.cat(outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = load_model({"name": "digits-plain", "adapter": "safetensors", "arch": "digits-net",
                        "arch_options": {"num_classes": 5},
                        "path": str(REPO / "model_zoo/digits-plain.safetensors")})
    digits = load_dataset("digits", DataRequest(root=REPO, options={"classes": [0, 1, 2, 3, 4]}))
    noise = load_dataset("smoothed-noise", DataRequest(root=REPO, n=args.n, reference=digits)).images
    config = AttackConfig(threat=ThreatModel(norm="Linf", eps=0.3), steps=args.steps,
                          step_size=0.0075, random_start=False, select="confidence")

    bare, engine = [], []
    for _ in range(args.repeats):  # interleaved, best of several: robust to a busy machine
        t = time.perf_counter()
        bare_loop(model, noise, args.steps, 0.3, 0.0075, args.batch_size)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = run_attack(model, noise, config, batch_size=args.batch_size)
        engine.append(time.perf_counter() - t)
    assert result.gradient_evaluations == args.n * args.steps
    print(f"N={args.n} k={args.steps} batch={args.batch_size} threads={torch.get_num_threads()}")
    print(f"bare loop : {min(bare):.3f} s")
    print(f"engine    : {min(engine):.3f} s")
    print(f"ratio engine/bare: {min(engine) / min(bare):.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
