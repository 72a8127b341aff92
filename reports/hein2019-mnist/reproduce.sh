#!/usr/bin/env bash
# Reproduce reports/hein2019-mnist/: train plain, CEDA and ACET with the -cpu recipes on real
# MNIST, evaluate them with the Hein et al. (2019) MNIST suite, render the table beside the paper.
#   bash reports/hein2019-mnist/reproduce.sh [DATA_ROOT]     (run from the repository root)
# DATA_ROOT holds MNIST in torchvision's layout (MNIST/raw/*-ubyte); other sets of the suite are
# skipped when absent. Weights and the results store go to results/hein2019-mnist-repro/.
set -euo pipefail
DATA="${1:-${OODBENCH_DATA:-$HOME/.cache/oodbench/data}}"
OUT=results/hein2019-mnist-repro
HERE=reports/hein2019-mnist
mkdir -p "$OUT"
for method in plain ceda acet; do
  /usr/bin/env time -f "train $method: %e s" \
    oodbench train "model_zoo/recipes/hein2019-mnist-$method-cpu.yaml" --data-root "$DATA" \
      -o "$OUT/$method.safetensors" -q
done
/usr/bin/env time -f "evaluate: %e s" \
  oodbench run "$HERE/suite.yaml" --data-root "$DATA" --skip-missing -q -o "$OUT/results.db"
refs=(--reference "$HERE/paper-plain.yaml" --reference "$HERE/paper-ceda.yaml" --reference "$HERE/paper-acet.yaml")
oodbench report "$OUT/results.db" --format md "${refs[@]}" --out "$HERE/table1.md"
oodbench report "$OUT/results.db" --format latex "${refs[@]}" --out "$HERE/table1.tex"
oodbench report "$OUT/results.db" --format csv --out "$HERE/metrics.csv"
oodbench show "$OUT/results.db" > "$HERE/all-rows.txt"   # every row, the alpha-scaling (Table 2) row included
