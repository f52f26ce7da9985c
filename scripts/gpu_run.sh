#!/usr/bin/env bash
# A GPU session's one prepared run, on the lent machine (scripts/gpu_bundle.sh made the
# bundle on the build machine): the CUDA test suite, bm_cuda_ops, bm_cuda_unet at every
# precision, the CLI's --device cuda train/sample round trip (fp32 and bf16) and the PyTorch
# peer on the same GPU (fp32, TF32, bf16 autocast). Each part has its own time limit, and a
# failing part does not stop the others. Everything goes to $OUT (the device tool's folder),
# or ./gpu-out; summary.txt lists what passed. The limits add up to about 480 s.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
tar -C "$work" -xJf .gpu-bundle/bundle.tar.xz
bin=$work/bundle/bin
# CUDA 13's libraries: the toolkit's, then the image's Python wheels (cuDNN is only there).
cuda_dirs=$(find -H /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets "$(python3 -c 'import site; print(site.getsitepackages()[0])')" \
  \( -name 'libcublas.so.13*' -o -name 'libcudnn.so.9*' -o -name 'libcudart.so.13*' -o -name 'libnccl.so.2*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$work/bundle/lib:$cuda_dirs:${LD_LIBRARY_PATH:-}"
export OMP_NUM_THREADS=8
summary=$OUT/summary.txt
: > "$summary"
part() {  # part NAME SECONDS command...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$summary"
}

nvidia-smi -L > "$OUT/gpu.txt" 2>&1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >> "$OUT/gpu.txt"
ldd "$bin/test_cuda" >> "$OUT/gpu.txt" 2>&1
part test_cuda 110 "$bin/test_cuda" -d yes
part bm_cuda_ops 50 "$bin/bm_cuda_ops" --benchmark_min_time=0.05
part bm_cuda_unet 110 "$bin/bm_cuda_unet" --benchmark_min_time=0.2
run_dir=$(mktemp -d)
for precision in fp32 bf16; do
  part "cli_train_$precision" 35 "$bin/ambiseg" train --data synthetic --synthetic-images 64 --crop 64 \
    --config small --batch 8 --steps 50 --device cuda --precision "$precision" --out "$run_dir/$precision"
  part "cli_sample_$precision" 15 "$bin/ambiseg" sample --ckpt "$run_dir/$precision/checkpoint.safetensors" \
    --data synthetic --images 4 -n 16 --steps 10 --device cuda --precision "$precision" --out "$run_dir/s-$precision"
  cp "$run_dir/$precision/log.csv" "$OUT/cli_train_$precision.log.csv" 2>/dev/null
done
export PYTHONUNBUFFERED=1
part torch_fp32 35 python3 benchmarks/peer/torch_unet_bench_gpu.py --repeats 10
part torch_tf32 35 python3 benchmarks/peer/torch_unet_bench_gpu.py --repeats 10 --tf32
part torch_bf16 35 python3 benchmarks/peer/torch_unet_bench_gpu.py --repeats 10 --amp bf16
cat "$summary"
