"""A full Table-1 column for one model: oodbench vs the script a user would write.

    python benchmarks/table1_column.py [--model plain|noise-trained|both]

The column follows Hein et al. (2019), Table 1, on the quickstart's embedded data (digits 0-4
in-distribution): near-OOD digits 5-9, uniform noise, smoothed noise, adversarial noise (PGD,
Linf 0.3, 200 × 0.0075, around smoothed noise), adversarial samples (PGD on CE, 80 steps) and a
worst-case row (APGD, L2 1.0, 100 steps, around digits 5-9), with the metrics AUROC and FPR@95.

The reference ("straightforward script") does what one writes by hand: for every probe it
re-runs the clean pass over the in-distribution test set, builds the probe, attacks every point
for the full budget (the same engine with ``full_budget=True``, so the same seeds and iterates
as a plain PGD loop, no early stop) and computes the metrics. oodbench
runs the same suite through `run_suite` into a fresh results store: one clean pass shared by all
probes, and the exact early stop (a point whose confidence already exceeds every in-distribution
confidence cannot change AUROC or FPR@95). The two must give identical AUROC/FPR@95; the script
checks that and prints the speed ratio (targets: ≥ 3× for a plain model, ≥ 1.3× for a model
trained against noise, where the attack rarely succeeds so early stop rarely fires).

"noise-trained" is a digits-net trained here in a few seconds with the ACET idea (cross-entropy
on digits + max-log-confidence on adversarially perturbed smoothed noise), using the engine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from oodbench.attacks import AttackConfig, AttackSpec, ThreatModel, run_attack
from oodbench.data import DataRequest, load_dataset, to_shape
from oodbench.metrics import auroc, confidence, fpr_at_tpr
from oodbench.models import load_model
from oodbench.registry import architectures, attacks
from oodbench.runner import forward_logits, run_suite
from oodbench.suite import parse_suite

REPO = Path(__file__).resolve().parents[1]
CLASSES_IN, CLASSES_OUT = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
N_NOISE = 1000
BATCH = 500


def suite_dict(weights: Path) -> dict:
    return {
        "name": "table1-column", "seed": 0, "batch_size": BATCH, "device": "cpu",
        "in_distribution": {"name": "digits 0-4", "dataset": "digits", "options": {"classes": CLASSES_IN}},
        "models": [{"name": "m", "adapter": "safetensors", "arch": "digits-net",
                    "arch_options": {"num_classes": 5}, "path": str(weights)}],
        "probes": [
            {"name": "digits 5-9", "dataset": "digits", "options": {"classes": CLASSES_OUT}},
            {"name": "uniform noise", "dataset": "uniform-noise", "n": N_NOISE},
            {"name": "smoothed noise", "dataset": "smoothed-noise", "n": N_NOISE},
            {"name": "adv. noise", "dataset": "smoothed-noise", "n": N_NOISE,
             "attack": {"name": "adversarial-noise"}},
            {"name": "adv. samples", "attack": {"name": "adversarial-samples"}},
            {"name": "worst-case", "dataset": "digits", "options": {"classes": CLASSES_OUT},
             "attack": {"name": "worst-case"}},
        ],
        "metrics": ["auroc", "fpr95"],
    }


def straightforward(weights: Path) -> dict[tuple[str, str], float]:
    """The hand-written evaluation: clean pass per probe, full attack budget on every point."""
    root = Path(tempfile.gettempdir())
    model = load_model({"name": "m", "adapter": "safetensors", "arch": "digits-net",
                        "arch_options": {"num_classes": 5}, "path": str(weights)})
    out: dict[tuple[str, str], float] = {}

    def digits(classes):
        return load_dataset("digits", DataRequest(root=root, options={"classes": classes}))

    def attack(name, x, target=None):
        kind = attacks.get(name)()
        spec = kind.resolve(AttackSpec(name=name), "digits")
        cfg = AttackConfig(threat=spec.threat, objective=spec.objective, optimizer=spec.optimizer,
                           steps=spec.steps, step_size=spec.step_size, restarts=spec.restarts,
                           random_start=spec.random_start, select=kind.select)
        return run_attack(model, x, cfg, target=target, batch_size=BATCH, seed=0,
                          full_budget=True).logits.numpy()

    probes = {
        "digits 5-9": lambda ref: forward_logits(model, digits(CLASSES_OUT).images, batch_size=BATCH),
        "uniform noise": lambda ref: forward_logits(model, noise("uniform-noise", ref), batch_size=BATCH),
        "smoothed noise": lambda ref: forward_logits(model, noise("smoothed-noise", ref), batch_size=BATCH),
        "adv. noise": lambda ref: attack("adversarial-noise", noise("smoothed-noise", ref)),
        "adv. samples": None,
        "worst-case": lambda ref: attack("worst-case", digits(CLASSES_OUT).images),
    }
    for name, make in probes.items():
        ref = digits(CLASSES_IN)  # the clean pass, repeated for every probe
        in_logits = forward_logits(model, ref.images, batch_size=BATCH)
        if make is None:  # adversarial samples: misclassified adversarial test points
            logits = attack("adversarial-samples", ref.images, ref.labels)
            logits = logits[logits.argmax(1) != ref.labels.numpy()]
        else:
            logits = make(ref)
        c_in, c_out = confidence(in_logits), confidence(logits)
        out[(name, "auroc")], out[(name, "fpr95")] = auroc(c_in, c_out), fpr_at_tpr(c_in, c_out)
    return out


def noise(name: str, ref) -> torch.Tensor:
    return to_shape(load_dataset(name, DataRequest(root=Path("."), n=N_NOISE, seed=0, reference=ref)).images,
                    ref.shape)


def with_oodbench(weights: Path) -> dict[tuple[str, str], float]:
    with tempfile.TemporaryDirectory() as tmp:
        suite = parse_suite(suite_dict(weights))
        result = run_suite(suite, output=Path(tmp) / "r.db", progress=False)
        return {(r.probe, r.metric): r.value for r in result.metrics.itertuples()
                if r.probe != "digits 0-4"}


def train_noise_model(path: Path) -> None:
    """A quick ACET-style digits-net: CE on digits + max-log-conf on adversarial noise."""
    torch.manual_seed(0)
    root = Path(tempfile.gettempdir())
    train = load_dataset("digits", DataRequest(root=root, split="train", options={"classes": CLASSES_IN}))
    model = architectures.get("digits-net")(num_classes=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    cfg = AttackConfig(threat=ThreatModel(norm="Linf", eps=0.3), steps=10, step_size=0.05,
                       select="objective")
    for epoch in range(25):
        perm = torch.randperm(len(train))
        for i in range(0, len(perm), 128):
            idx = perm[i:i + 128]
            x, y = train.images[idx], train.labels[idx]
            z = load_dataset("smoothed-noise", DataRequest(root=root, n=len(idx), seed=epoch * 1000 + i,
                                                           reference=train)).images
            model.eval()
            z_adv = run_attack(model, z, cfg, seed=epoch * 1000 + i).x_adv
            model.train()
            loss = F.cross_entropy(model(x), y) + F.log_softmax(model(torch.cat([z, z_adv])), 1).max(1).values.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def measure(label: str, weights: Path, repeats: int) -> float:
    """Best of ``repeats`` interleaved runs of each side (the first pays the cold start)."""
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours = with_oodbench(weights)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = straightforward(weights)
        t_ref.append(time.perf_counter() - t)
    print(f"\n[{label}]")
    print(f"{'probe':<16}{'metric':<8}{'oodbench':>10}{'script':>10}")
    for key in ref:
        print(f"{key[0]:<16}{key[1]:<8}{ours[key]:>10.4f}{ref[key]:>10.4f}")
    same = all(ours[k] == ref[k] for k in ref)
    print(f"identical AUROC/FPR@95: {same}")
    print(f"straightforward script: {min(t_ref):.2f} s, oodbench: {min(t_ours):.2f} s, "
          f"speed-up: {min(t_ref) / min(t_ours):.2f}x (best of {repeats})")
    if not same:
        raise SystemExit("metrics differ: the early stop is not exact")
    return min(t_ref) / min(t_ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["plain", "noise-trained", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.model in ("plain", "both"):
        measure("plain digits-net (target >= 3x)", REPO / "model_zoo/digits-plain.safetensors",
                args.repeats)
    if args.model in ("noise-trained", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "noise.safetensors"
            train_noise_model(weights)
            measure("digits-net trained against adversarial noise (target >= 1.3x)", weights,
                    args.repeats)


if __name__ == "__main__":
    main()
