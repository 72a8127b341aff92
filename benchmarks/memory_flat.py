"""Memory flat in data-set size: peak RSS of a suite on a probe of 10,000 vs 100,000 images, in one
run (target: the larger within +10% of the smaller).

    python benchmarks/memory_flat.py [--sizes 10000 100000] [--format idx|folder] [--shard-size 1000]

The script writes each probe itself — an MNIST-layout idx file (``MNIST/raw/t10k-images-idx3-ubyte``,
28×28 grey, memory-mapped by the loader) or, with ``--format folder``, a folder of 28×28 PNGs
(decoded per read by DataLoader workers) — in chunks, from this parent process. Each size is then
evaluated by a fresh child process (peak RSS only grows within a process, so the two figures must
come from two processes): the quickstart model, digits as the in-distribution, the probe converted
to its 8×8 grey shape batch by batch, every point evaluated and stored, metrics scored. The child
reports its peak RSS (``ru_maxrss``), its RSS after the imports and its wall time; the parent
prints them and the ratio. Materialising the probe would cost 4 bytes a pixel: 314 MB of float32
for 100,000 MNIST images, before the conversion's copy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: memory-flat
seed: 0
batch_size: 500
device: cpu
shard_size: {shard}
download: false
data_root: {root}
in_distribution: {{name: digits 0-4, dataset: digits, options: {{classes: [0, 1, 2, 3, 4]}}}}
models:
  - {{name: digits-plain, adapter: safetensors, path: {weights}, arch: digits-net, arch_options: {{num_classes: 5}}}}
probes:
  - {probe}
metrics: [mmc, auroc, fpr95]
"""

PROBES = {
    "idx": "{name: probe, dataset: mnist}",
    "folder": "{name: probe, dataset: image-folder, options: {path: folder, size: [28, 28]}}",
}

CHUNK = 10_000


def _images(start: int, count: int) -> np.ndarray:
    """Images ``start .. start+count`` of the probe: seeded per chunk, so every size shares its
    first images and the parent never holds more than a chunk."""
    rng = np.random.default_rng(start)
    return rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def write_idx(root: Path, n: int) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("t10k", n), ("train", 2)):  # torchvision's layout has both splits
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">iIII", 2051, count, 28, 28))
            for start in range(0, count, CHUNK):
                f.write(_images(start, min(CHUNK, count - start)).tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">iI", 2049, count))
            f.write((np.arange(count) % 10).astype(np.uint8).tobytes())


def write_folder(root: Path, n: int) -> None:
    from PIL import Image

    folder = root / "folder" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, CHUNK):
        for k, image in enumerate(_images(start, min(CHUNK, n - start))):
            Image.fromarray(image).save(folder / f"{start + k:07d}.png")


def child(root: Path, fmt: str, shard: int) -> None:
    """Run the suite on the probe under ``root``; print one JSON line with the figures."""
    from oodbench.pipeline.run import run_suite
    from oodbench.pipeline.suite import load_suite

    after_imports = _rss_now()
    suite_file = root / "suite.yaml"
    suite_file.write_text(SUITE.format(shard=shard, root=root, probe=PROBES[fmt],
                                       weights=REPO / "model_zoo/digits-plain.safetensors"))
    start = time.perf_counter()
    result = run_suite(load_suite(suite_file), output=root / "results.db", progress=False)
    seconds = time.perf_counter() - start
    metrics = {r.metric: r.value for r in result.metrics.itertuples() if r.probe == "probe"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak, "after_imports_mib": after_imports, "seconds": seconds,
                      "auroc": metrics.get("auroc")}))


def _rss_now() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(n: int, fmt: str, shard: int, tmp: Path) -> dict:
    root = tmp / f"probe-{n}"
    start = time.perf_counter()
    (write_idx if fmt == "idx" else write_folder)(root, n)
    written = time.perf_counter() - start
    out = subprocess.run([sys.executable, __file__, "--child", str(root), "--format", fmt,
                          "--shard-size", str(shard)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)})
    if out.returncode != 0:
        raise SystemExit(f"child for n={n} failed:\n{out.stderr}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "write_seconds": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--format", choices=sorted(PROBES), default="idx")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.format, args.shard_size)
        return
    import oodbench

    with tempfile.TemporaryDirectory() as tmp:
        small, large = (measure(n, args.format, args.shard_size, Path(tmp)) for n in args.sizes)
    print(f"probe format={args.format} shard_size={args.shard_size} "
          f"oodbench from {Path(oodbench.__file__).parent}")
    for n, r in zip(args.sizes, (small, large)):
        print(f"n={n:>7,}: peak RSS {r['peak_mib']:7.1f} MiB  (after imports {r['after_imports_mib']:6.1f})"
              f"  run {r['seconds']:6.1f} s  (files written in {r['write_seconds']:.1f} s)"
              f"  auroc {r['auroc']:.6f}")
    ratio = large["peak_mib"] / small["peak_mib"]
    print(f"peak RSS ratio {args.sizes[1]:,}/{args.sizes[0]:,}: {ratio:.3f}  "
          f"(target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
