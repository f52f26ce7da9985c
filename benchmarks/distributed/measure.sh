#!/usr/bin/env bash
# Data-parallel training, measured (docs/distributed.md): the reference UNet, global batch
# 8, 64×64 synthetic crops, STEPS steps, as
#   1 rank × 1 thread, 1 rank × 2 threads, 2 ranks × 1 thread (mpirun, loopback)
# alternated ROUNDS times. Prints per configuration the wall seconds per step (the steps
# only: summary.json's train_wall_seconds) and, for 2 ranks, the gradient bytes summed per
# step, the wait for the sums after the backward pass, one blocking sum of the gradient and
# the share of the communication the backward pass hid.
#
#   benchmarks/distributed/measure.sh [BUILD_DIR] [STEPS] [ROUNDS]
set -euo pipefail
build=${1:-build}
steps=${2:-10}
rounds=${3:-2}
tool="$build/apps/ambiseg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
export OMPI_MCA_btl_vader_single_copy_mechanism=none
args=(train --data synthetic --synthetic-images 64 --crop 64 --config reference --batch 8
      --steps "$steps" --checkpoint-every 100000)

per_step() {  # summary.json → wall seconds per training step
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print('%.3f' % (s['train_wall_seconds']/(s['steps_done']-s['first_step'])))" "$1"
}
for round in $(seq 1 "$rounds"); do
  OMP_NUM_THREADS=1 "$tool" "${args[@]}" --out "$work/r$round-1x1" > /dev/null 2>&1
  OMP_NUM_THREADS=2 "$tool" "${args[@]}" --out "$work/r$round-1x2" > /dev/null 2>&1
  OMP_NUM_THREADS=1 mpirun --oversubscribe -n 2 "$tool" "${args[@]}" --out "$work/r$round-2x1" > /dev/null 2>&1
  echo "round $round: s/step  1x1 $(per_step "$work/r$round-1x1/summary.json")" \
       " 1x2 $(per_step "$work/r$round-1x2/summary.json")  2x1 $(per_step "$work/r$round-2x1/summary.json")"
  python3 -c "import json,sys; print('  2 ranks:', json.dumps(json.load(open(sys.argv[1]))['data_parallel']))" \
    "$work/r$round-2x1/summary.json"
done
