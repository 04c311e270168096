#!/usr/bin/env bash
# The paper's protocol on the LA benchmark, for a machine with a GPU.
#
# Trains la_canet_8, la_canet_16, la_vnet_16, la_vnet_full and la_sassnet_16 at the
# paper's settings (the packaged configs of those names, see `canet configs`: 6000
# iterations, batch 2+2 for CA-Net and SASSNet, 4 labeled rows for the V-Nets, patch
# 112x112x80) over three seeds, evaluates the last checkpoint
# of each run on test.list in `reference` mode with largest-connected-component
# post-processing, and writes one table (mean and std over seeds) next to the paper's numbers.
#
# Usage:  bash benchmarks/paper_protocol.sh [LA_ROOT] [OUT_DIR]
# Environment:
#   PYTHON=path/to/python  the interpreter with canet installed (default: the repository's
#                          .venv/bin/python if there is one, else python3); canet runs as
#                          "$PYTHON -m canet.cli.main", so nothing needs to be on PATH
#   DEVICE=cuda|cpu     (default cuda)
#   SEEDS="1337 1338 1339"
#   CONFIGS="la_canet_8 la_canet_16 la_vnet_16 la_vnet_full la_sassnet_16"
#   EXTRA="--iterations 20 --patch-size 32 32 32"   extra `canet train` flags (smoke runs)
#   EVAL_EXTRA="--mode fast"                          extra `canet evaluate` flags
# A finished run (checkpoints/last.pt at its final iteration and eval/summary.json)
# is skipped, and an interrupted one resumes, so the script can simply be run again.
set -euo pipefail

LA_ROOT=${1:-../shared/data/LA}
OUT=${2:-runs/paper_protocol}
DEVICE=${DEVICE:-cuda}
SEEDS=${SEEDS:-"1337 1338 1339"}
CONFIGS=${CONFIGS:-"la_canet_8 la_canet_16 la_vnet_16 la_vnet_full la_sassnet_16"}
EXTRA=${EXTRA:-}
EVAL_EXTRA=${EVAL_EXTRA:-}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/../.venv/bin/python" ]; then PYTHON="$HERE/../.venv/bin/python"; else PYTHON=python3; fi
fi

mkdir -p "$OUT"
for cfg in $CONFIGS; do
  for seed in $SEEDS; do
    run="$OUT/${cfg}/seed${seed}"
    if [ -f "$run/eval/summary.json" ]; then
      echo "== $cfg seed $seed: done, skipped"
      continue
    fi
    start=$(date +%s)
    if [ -f "$run/checkpoints/last.pt" ]; then
      echo "== $cfg seed $seed: resuming"
      "$PYTHON" -m canet.cli.main train --resume "$run" --quiet
    else
      echo "== $cfg seed $seed: training"
      # shellcheck disable=SC2086
      "$PYTHON" -m canet.cli.main train --config "$cfg" --data "$LA_ROOT" --out "$run" \
        --seed "$seed" --device "$DEVICE" --quiet $EXTRA
    fi
    end=$(date +%s)
    echo "$((end - start))" > "$run/train_seconds.txt"
    # shellcheck disable=SC2086
    "$PYTHON" -m canet.cli.main evaluate "$run/checkpoints/last.pt" --data "$LA_ROOT" --split test \
      --mode reference --device "$DEVICE" --out "$run/eval" $EVAL_EXTRA
  done
done

"$PYTHON" "$HERE/aggregate_results.py" "$OUT" | tee "$OUT/results.md"
