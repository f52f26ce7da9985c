#!/bin/sh
# Side by side: ambiseg's UNet (benchmarks/bm_unet.cpp) and the PyTorch reference model
# (benchmarks/peer/torch_unet_bench.py), same shapes, same thread count; prints the ratio
# ambiseg time / PyTorch time per case (< 1: ambiseg is faster).
#
#   benchmarks/peer/compare.sh [build-dir] [threads]      (default: build, 2)
#   PEER_PYTHON=...            the peer's interpreter (default: the PyTorch 2.x venv that
#                              setup_venv.sh creates on first use; /usr/bin/python3 for
#                              Debian's PyTorch 1.13)
#   TORCH_VARIANTS=best-known  skips the layout/oneDNN sweep (channels_last+oneDNN for the
#                              forward and sampling, contiguous+oneDNN for training), keeping
#                              eager and torch.compile.
#   TORCH_COMPILE=no|only      leaves torch.compile out, or times only it.
#   CLOCK=cpu  compares process CPU time instead of wall time (meaningful at 1 thread on a
#   loaded machine, where wall time mostly measures the other jobs).
#   ROUNDS=N   repeats the whole alternation N times (default 1); the best of each side is kept.
#   CASES="forward_16_128 ..."  a subset of forward_8_128 forward_16_128 train_8_128
#              train_8_64 sample_16_128.
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
peer_python=${PEER_PYTHON:-$("$here/setup_venv.sh")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# load before: $(uptime)"
cases=${CASES:-forward_8_128 forward_16_128 train_8_128 train_8_64 sample_16_128}
round=1
while [ "$round" -le "${ROUNDS:-1}" ]; do
  for case in $cases; do
    kind=${case%%_*}; rest=${case#*_}; batch=${rest%_*}; size=${rest#*_}
    case $kind in
      forward) filter="BM_unet_forward/$batch/$size/" ;;
      train) filter="BM_unet_train_step/$batch/$size/" ;;
      sample) filter="BM_sample/$batch/$size/" ;;
      *) echo "compare.sh: unknown case $case" >&2; exit 2 ;;
    esac
    "$bm" --benchmark_filter="$filter" --benchmark_min_time=2 --benchmark_repetitions=3 \
          --benchmark_report_aggregates_only=true --benchmark_format=json > "$tmp/$case.$round.json"
    cpu_flag=""; [ "${CLOCK:-wall}" = cpu ] && cpu_flag=--cpu-time
    "$peer_python" "$here/torch_unet_bench.py" --threads "$threads" --cases "$case" \
          --variants "${TORCH_VARIANTS:-all}" --compile "${TORCH_COMPILE:-auto}" --all-variants \
          $cpu_flag > "$tmp/$case.$round.torch"
  done
  round=$((round + 1))
done
echo "# load after: $(uptime)"
"$peer_python" - "$tmp" "${CLOCK:-wall}" "$cases" <<'PY'
import glob, json, os, sys
tmp, clock, cases = sys.argv[1], sys.argv[2], sys.argv[3].split()
field = "cpu_time" if clock == "cpu" else "real_time"
print(f"# clock: {'process CPU time' if field == 'cpu_time' else 'wall time'}")
for f in sorted(glob.glob(os.path.join(tmp, "*.torch")))[:1]:
    print(open(f).readline().strip())
print(f"{'case':<16}{'ambiseg s':>12}{'torch s':>12}{'ratio':>8}  torch best variant; every variant")
for case in cases:
    ours = min(b[field] for f in glob.glob(os.path.join(tmp, case + ".*.json"))
               for b in json.load(open(f))["benchmarks"] if b.get("aggregate_name") in ("median", "min", None)) / 1e3
    variants = {}
    for f in glob.glob(os.path.join(tmp, case + ".*.torch")):
        for l in open(f):
            if l.startswith("#   "):
                name, secs = l[4:].rsplit(":", 1)
                name = name.split(" ", 1)[1]
                variants[name] = min(variants.get(name, float("inf")), float(secs.split()[0]))
    best = min(variants, key=variants.get)
    every = ", ".join(f"{k} {v:.3f}" for k, v in sorted(variants.items(), key=lambda kv: kv[1]))
    print(f"{case:<16}{ours:>12.3f}{variants[best]:>12.3f}{ours / variants[best]:>8.2f}  {best}; {every}")
PY
