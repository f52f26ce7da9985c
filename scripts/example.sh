#!/usr/bin/env bash
# Set up, build and run the main example end to end (the README's example command):
# train a small diffusion model on the synthetic ambiguous lesions (about 5 minutes on a
# 2-core CPU), draw 16 masks per test image, score them against the oracle and a
# deterministic baseline, and write the pictures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${AMBISEG_BUILD_DIR:-build}
JOBS=${AMBISEG_JOBS:-$(nproc)}
OUT=${AMBISEG_EXAMPLE_OUT:-example-output}
STEPS=${AMBISEG_EXAMPLE_STEPS:-800}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAMBISEG_BUILD_EXAMPLES=ON ${AMBISEG_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS" --target ambiseg-cli
AMBISEG="$BUILD/apps/ambiseg"

"$AMBISEG" train --data synthetic --config example --crop 64 --steps "$STEPS" --lr 1e-3 --out "$OUT/train"
"$AMBISEG" sample --ckpt "$OUT/train/checkpoint.safetensors" --data synthetic --images 6 -n 16 --steps 10 \
  --sampler ddpm --out "$OUT/samples"
"$AMBISEG" eval --ckpt "$OUT/train/checkpoint.safetensors" --data synthetic --images 32 -n 4,16 --pp 0.5 \
  --steps 10 --sampler ddpm --baselines --out "$OUT/eval" > /dev/null

echo
cat "$OUT/eval/eval.md"
echo
echo "Pictures:  $OUT/train/loss.png (loss curve), $OUT/samples/samples.png (image | annotations | samples | mean | variance)"
echo "Scores:    $OUT/eval/eval.md and $OUT/eval/eval.json"
echo "Model:     $OUT/train/checkpoint.safetensors (resume with: $AMBISEG train ... --out $OUT/train --resume)"
