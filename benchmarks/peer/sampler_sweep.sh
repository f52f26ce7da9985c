#!/bin/sh
# GED² of one trained model under each sampler and step count (the same 32 synthetic test
# images, n = 4 and 16): how much of the gap to the oracle the sampler accounts for.
#
#   benchmarks/peer/sampler_sweep.sh CHECKPOINT [out-dir]      (default: sampler-sweep)
#   AMBISEG=build/apps/ambiseg CASES="ddpm_large:10 ddpm_small:10 ddim:10 ddpm_large:25 ddpm_small:25"
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
ckpt=$1
out=${2:-sampler-sweep}
ambiseg=${AMBISEG:-$root/build/apps/ambiseg}
cases=${CASES:-ddpm_large:10 ddpm_small:10 ddim:10 ddpm_large:25 ddpm_small:25}
mkdir -p "$out"
echo "| sampler | steps | GED² n=4 | GED² n=16 | dice n=16 | HM-IoU n=16 | sampling s |" > "$out/sweep.md"
echo "|---|---:|---:|---:|---:|---:|---:|" >> "$out/sweep.md"
for c in $cases; do
  sampler=${c%%:*}; steps=${c#*:}
  "$ambiseg" eval --ckpt "$ckpt" --data synthetic --images 32 -n 4,16 --pp none --steps "$steps" \
    --sampler "$sampler" --out "$out/$sampler-$steps" > /dev/null 2>&1
  /usr/bin/python3 - "$out/$sampler-$steps/eval.json" "$sampler" "$steps" >> "$out/sweep.md" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = {x["n"]: x["raw"] for x in j["results"] if x["method"] == "model"}
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r[4]['ged']:.4f} | {r[16]['ged']:.4f} | {r[16]['dice']:.4f} | "
      f"{r[16]['hm_iou']:.4f} | {j['info']['sampling_seconds']:.0f} |")
PY
done
cat "$out/sweep.md"
