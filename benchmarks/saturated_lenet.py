"""Adversarial-noise AUROC of the model_zoo MNIST LeNet, optionally with its last layer scaled
(a saturated model: many test points at float32 confidence exactly 1.0), as oodbench reports it.

    python benchmarks/saturated_lenet.py --data-root ../shared/data/mnist-10k --scale 3 \
        [--n-in 2000] [--n-noise 1000] [--steps 200]

The attack is the registered ``adversarial-noise`` (PGD on the max log-confidence, Linf 0.3,
200 × 0.0075, random start, seed 0) run by the engine with ``select="confidence"`` and no
``stop_above`` (only the engine's own ceiling stops a point), around ``--n-noise`` smoothed-noise
images built from the MNIST test set; AUROC, FPR@95 and MMC are the registered metrics against
``--n-in`` seeded MNIST test points. Also printed: how many test points sit at float32
confidence 1.0, and the AUROC of the papers' evaluation (float32 softmax confidences, ties ½).
Uses only APIs that predate the msp score, so the same script measures older versions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from oodbench.attacks import AttackConfig, AttackSpec, run_attack
from oodbench.data import DataRequest, load_dataset
from oodbench.data.common import subsample_indices
from oodbench.metrics import MetricInput, compute_metrics
from oodbench.models import load_model
from oodbench.core.registry import attacks

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--scale", type=float, default=3.0, help="factor on the last layer")
    parser.add_argument("--n-in", type=int, default=2000)
    parser.add_argument("--n-noise", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--full-budget", action="store_true",
                        help="attack every point for every step (no stop at all): the same work "
                        "in every version, for timing the engine")
    args = parser.parse_args()

    model = load_model({"name": "lenet", "adapter": "safetensors", "arch": "lenet",
                        "path": str(REPO / "model_zoo/mnist-lenet-plain-cpu.safetensors")}).eval()
    with torch.no_grad():
        model.fc2.weight.mul_(args.scale)
        model.fc2.bias.mul_(args.scale)
    test = load_dataset("mnist", DataRequest(root=Path(args.data_root), split="test"))
    idx = subsample_indices(len(test), args.n_in, 0)
    x_in = test.images if idx is None else test.images[idx]
    y_in = test.labels if idx is None else test.labels[idx]
    noise = load_dataset("smoothed-noise", DataRequest(root=Path(args.data_root), n=args.n_noise,
                                                       seed=0, reference=test)).images
    with torch.no_grad():
        in_logits = torch.cat([model(b) for b in x_in.split(args.batch_size)])

    attack = attacks.get("adversarial-noise")()
    spec = attack.resolve(AttackSpec(name="adversarial-noise", steps=args.steps), "mnist")
    config: AttackConfig = attack.config(spec)
    start = time.perf_counter()
    result = run_attack(model, noise, config, batch_size=args.batch_size, seed=0,
                        full_budget=args.full_budget)
    seconds = time.perf_counter() - start

    inp = MetricInput(in_logits=in_logits.numpy(), in_labels=y_in.numpy(),
                      out_logits=result.logits.numpy())
    values = compute_metrics(["auroc", "fpr95", "mmc"], inp, row="probe")
    c32_in = torch.softmax(in_logits, 1).max(1).values.numpy()
    c32_out = torch.softmax(result.logits, 1).max(1).values.numpy()
    papers = roc_auc_score(np.r_[np.ones(len(c32_in)), np.zeros(len(c32_out))], np.r_[c32_in, c32_out])
    print(f"LeNet, last layer x{args.scale:g}: {len(x_in)} test points "
          f"({int((c32_in == 1.0).sum())} at float32 confidence 1.0), {len(noise)} noise points, "
          f"{args.steps} steps")
    print(f"adversarial noise: auroc {values['auroc']:.4f}  fpr95 {values['fpr95']:.4f}  "
          f"mmc {values['mmc']:.4f}  | papers' float32-tied auroc {papers:.4f}")
    print(f"attack: {seconds:.1f} s, {result.gradient_evaluations} gradient evaluations, "
          f"{int(result.stopped_early.sum())} points stopped early")


if __name__ == "__main__":
    main()
