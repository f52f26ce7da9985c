#!/bin/sh
# Side by side: ambiseg's UNet (benchmarks/bm_unet.cpp) and the PyTorch reference model
# (benchmarks/peer/torch_unet_bench.py), same shapes, same thread count; prints the ratio
# ambiseg time / PyTorch time per case (< 1: ambiseg is faster).
#
#   benchmarks/peer/compare.sh [build-dir] [threads]      (default: build, 2)
#   TORCH_VARIANTS=best-known  skips the PyTorch tuning sweep (channels_last+oneDNN for the
#   forward, contiguous+oneDNN for training: the winners on this machine).
#   CLOCK=cpu  compares process CPU time instead of wall time (meaningful at 1 thread on a
#   loaded machine, where wall time mostly measures the other jobs).
# The bm_unet target must be built (-DAMBISEG_BUILD_BENCHMARKS=ON). On a shared machine,
# note the load (uptime) next to the figures: both sides are affected alike only if run
# close together, which is why this script alternates them case by case.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
bm=$build/benchmarks/bm_unet
[ -x "$bm" ] || { echo "compare.sh: $bm not found (build the bm_unet target)" >&2; exit 1; }
export OMP_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# load before: $(uptime)"
for case in forward_8_128 forward_16_128 train_8_128 train_8_64; do
  kind=${case%%_*}; rest=${case#*_}; batch=${rest%_*}; size=${rest#*_}
  if [ "$kind" = forward ]; then filter="BM_unet_forward/$batch/$size/"; else filter="BM_unet_train_step/$batch/$size/"; fi
  "$bm" --benchmark_filter="$filter" --benchmark_min_time=2 --benchmark_repetitions=3 \
        --benchmark_report_aggregates_only=true --benchmark_format=json > "$tmp/$case.json"
  cpu_flag=""; [ "${CLOCK:-wall}" = cpu ] && cpu_flag=--cpu-time
  /usr/bin/python3 "$here/torch_unet_bench.py" --threads "$threads" --cases "$case" \
        --variants "${TORCH_VARIANTS:-all}" $cpu_flag > "$tmp/$case.torch"
done
echo "# load after: $(uptime)"
/usr/bin/python3 - "$tmp" "${CLOCK:-wall}" <<'PY'
import json, os, sys
tmp = sys.argv[1]
field = "cpu_time" if sys.argv[2] == "cpu" else "real_time"
print(f"# clock: {'process CPU time' if field == 'cpu_time' else 'wall time'}")
print(f"{'case':<16}{'ambiseg s':>12}{'torch s':>12}{'ratio':>8}  torch variant")
for case in ["forward_8_128", "forward_16_128", "train_8_128", "train_8_64"]:
    runs = json.load(open(os.path.join(tmp, case + ".json")))["benchmarks"]
    ours = min(b[field] for b in runs if b.get("aggregate_name") in ("median", "min", None)) / 1e3
    line = [l for l in open(os.path.join(tmp, case + ".torch")) if not l.startswith("#")][0].split()
    theirs = float(line[1])
    variant = " ".join(line[5:])
    print(f"{case:<16}{ours:>12.3f}{theirs:>12.3f}{ours / theirs:>8.2f}  {variant}")
PY
