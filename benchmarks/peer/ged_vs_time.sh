#!/bin/sh
# Quality per CPU-minute: ambiseg and its PyTorch peer (torch_train_peer.py) train the same
# network with the same recipe on the same synthetic data, side by side, one thread each
# (both on the machine at once, so both see the same load); snapshots of both are scored by
# the same `ambiseg eval` (GED² at n = 16 over the first 32 test images, DDPM-large, 10
# steps); the result is a table and a plot of GED² against process CPU time.
#
#   benchmarks/peer/ged_vs_time.sh [out-dir]        (default: peer-ged-vs-time)
#   AMBISEG=build/apps/ambiseg STEPS=4000 SNAPSHOTS=250,500,1000,2000,3000,4000 THREADS=1
#   EXTRA_TRAIN_ARGS="--config example --lr 1e-3"  (any `ambiseg train` options)
# Needs /usr/bin/python3 with torch and matplotlib (Debian: python3-torch python3-matplotlib).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-peer-ged-vs-time}
ambiseg=${AMBISEG:-$root/build/apps/ambiseg}
steps=${STEPS:-4000}
snapshots=${SNAPSHOTS:-250,500,1000,2000,3000,4000}
threads=${THREADS:-1}
images=${EVAL_IMAGES:-32}
extra=${EXTRA_TRAIN_ARGS:---config example --lr 1e-3}
[ -x "$ambiseg" ] || { echo "ged_vs_time.sh: $ambiseg not found (build the ambiseg-cli target)" >&2; exit 1; }
mkdir -p "$out"
echo "# $(date -u +%FT%TZ) $(uname -n), $(nproc) cores; load: $(uptime)" | tee "$out/machine.txt"

"$ambiseg" export --data synthetic --crop 64 --out "$out/data"
# ambiseg writes config.json before its first step; the peer reads it from there.
# shellcheck disable=SC2086
OMP_NUM_THREADS=$threads "$ambiseg" train --data synthetic --crop 64 --steps "$steps" --snapshots "$snapshots" \
  --checkpoint-every 1000000 $extra --out "$out/ambiseg" > "$out/ambiseg.out" 2>&1 &
train_pid=$!
while [ ! -s "$out/ambiseg/config.json" ]; do
  kill -0 "$train_pid" 2>/dev/null || { cat "$out/ambiseg.out"; exit 1; }
  sleep 1
done
OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/torch_train_peer.py" --config "$out/ambiseg/config.json" \
  --data "$out/data" --out "$out/torch" --snapshots "$snapshots" --threads "$threads" > "$out/torch.out" 2>&1
wait "$train_pid"
echo "# training done: $(uptime)" | tee -a "$out/machine.txt"

echo "run,step,cpu_seconds,wall_seconds,ged16,dice16,hm_iou16" > "$out/ged_vs_time.csv"
for run in ambiseg torch; do
  for step in $(echo "$snapshots" | tr , ' '); do
    ckpt="$out/$run/snapshots/step-$step.safetensors"
    [ -f "$ckpt" ] || continue
    "$ambiseg" eval --ckpt "$ckpt" --data synthetic --images "$images" -n 16 --pp none --steps 10 \
      --sampler ddpm --out "$out/eval/$run-$step" > /dev/null 2>&1
    /usr/bin/python3 - "$out" "$run" "$step" >> "$out/ged_vs_time.csv" <<'EOF'
import csv, json, sys
out, run, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
row = next(r for r in csv.DictReader(open(f"{out}/{run}/log.csv")) if int(r["step"]) == step)
res = json.load(open(f"{out}/eval/{run}-{step}/eval.json"))["results"][0]["raw"]
print(f"{run},{step},{float(row['cpu_seconds']):.1f},{float(row['seconds']):.1f},"
      f"{res['ged']:.4f},{res['dice']:.4f},{res['hm_iou']:.4f}")
EOF
  done
done
# The oracle and the majority mask on the same images (sampling of the last snapshot reused).
last=$(echo "$snapshots" | tr , '\n' | tail -n 1)
"$ambiseg" eval --ckpt "$out/ambiseg/snapshots/step-$last.safetensors" --data synthetic --images "$images" -n 16 \
  --pp none --steps 10 --sampler ddpm --baselines --out "$out/eval/baselines" > /dev/null 2>&1
/usr/bin/python3 "$here/plot_ged_vs_time.py" "$out"
cat "$out/ged_vs_time.md"
