"""224×224 networks: oodbench's clean pass and a 10-step attack vs a bare loop on the same inputs.

    python benchmarks/scale_224.py [--n 128] [--steps 10] [--batch-size 128] [--rows 128]

Two random-initialised ImageNet networks, loaded through oodbench's adapters the way a user
loads them: a torchvision ResNet-50 (state dict, ``arch: resnet50-imagenet``, ImageNet
normalisation) and a timm ViT-S/16 (``adapter: timm``; its input layer resizes 224 → 248
bicubic and crops 224, as timm's evaluation transform does). For each: oodbench's clean pass
(:func:`oodbench.pipeline.execute.forward.forward_logits`) vs a bare ``model(x)`` loop under
``inference_mode``, and :func:`oodbench.attacks.run_attack` (L∞, ``--steps`` steps, no random
start) vs the bare forward+backward PGD loop of ``engine_overhead.py`` — same module, same
inputs, same thread settings, in this process. Prints wall and CPU (process) seconds and the
ratios oodbench/bare.

oodbench calls a model on chunks of exactly ``FORWARD_ROWS`` (128) rows so a point's outputs
never depend on its batch; with ``--n`` below that, the padding is work the bare loop does not
do. ``--rows`` shrinks the chunk for a CPU smoke run (use ``--rows`` = ``--n``): the ratio then
measures the machinery, not the padding.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from engine_overhead import bare_loop  # benchmarks/ is the script's folder
from oodbench.attacks import AttackConfig, ThreatModel, run_attack
from oodbench.pipeline.execute.forward import forward_logits
from oodbench.models import load_model

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
EPS, STEP = 8 / 255, 2 / 255


def shrink_fixed_rows(rows: int) -> None:
    """Benchmark only: make the fixed model-call shape ``rows`` instead of ``FORWARD_ROWS``."""
    from oodbench.attacks import engine
    from oodbench.models import fixed_rows

    fixed_rows.chunks.__defaults__ = (rows,)
    fixed_rows.padded.__defaults__ = (None, rows)
    engine._Evaluator.__init__.__defaults__ = (rows, None)


def networks(folder: Path) -> dict[str, torch.nn.Module]:
    """ResNet-50 (torchvision) and ViT-S/16 (timm), random weights, saved and loaded back."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(torchvision.models.resnet50().state_dict(), folder / "resnet50.safetensors")
    save_file(timm.create_model("vit_small_patch16_224", pretrained=False).state_dict(),
              folder / "vit_s.safetensors")
    return {
        "ResNet-50 (torchvision)": load_model({
            "name": "resnet50", "adapter": "safetensors", "arch": "resnet50-imagenet",
            "path": "resnet50.safetensors", "normalize": IMAGENET}, folder),
        "ViT-S/16 (timm)": load_model({
            "name": "vit-s", "adapter": "timm", "model": "vit_small_patch16_224",
            "path": "vit_s.safetensors"}, folder),
    }


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_clean(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rows", type=int, default=None,
                        help="fixed rows per model call (default: oodbench's FORWARD_ROWS)")
    args = parser.parse_args()
    if args.rows is not None:
        shrink_fixed_rows(args.rows)
    x = torch.rand(args.n, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    config = AttackConfig(threat=ThreatModel(norm="Linf", eps=EPS), steps=args.steps,
                          step_size=STEP, random_start=False, select="confidence")
    print(f"N={args.n} steps={args.steps} batch={args.batch_size} rows={args.rows or 128} "
          f"threads={torch.get_num_threads()} device=cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in networks(Path(tmp)).items():
            bare_clean(model, x[:1], 1)  # warm-up (allocator, lazy init)
            rows = {
                "clean": (timed(lambda: bare_clean(model, x, args.batch_size)),
                          timed(lambda: forward_logits(model, x, batch_size=args.batch_size))),
                f"attack {args.steps} steps": (
                    timed(lambda: bare_loop(model, x, args.steps, EPS, STEP, args.batch_size)),
                    timed(lambda: run_attack(model, x, config, batch_size=args.batch_size))),
            }
            for what, ((bw, bc), (ow, oc)) in rows.items():
                print(f"{label:24s} {what:16s} bare {bw:8.2f} s wall {bc:8.2f} s cpu | oodbench "
                      f"{ow:8.2f} s wall {oc:8.2f} s cpu | ratio wall {ow / bw:.3f} cpu {oc / bc:.3f}")


if __name__ == "__main__":
    main()
