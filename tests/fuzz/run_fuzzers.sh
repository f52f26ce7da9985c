#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ (ASan + UBSan) and runs each for a bounded time
# on a seed corpus made from the test fixtures.
#
#   tests/fuzz/run_fuzzers.sh [seconds per target, default 60] [targets…]
#   e.g. tests/fuzz/run_fuzzers.sh 30 pickle image
#
# Work happens in $AMBISEG_FUZZ_DIR (default build-fuzz/ in the repository); findings
# (crash-*, leak-*, timeout-*, oom-*) are left there and make the script exit non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(pickle npy safetensors image)
work="${AMBISEG_FUZZ_DIR:-$root/build-fuzz}"
cxx="${CXX_FUZZ:-clang++}"

command -v "$cxx" >/dev/null || { echo "run_fuzzers: $cxx not found (apt-get install clang)" >&2; exit 2; }
mkdir -p "$work"

seed_corpus() {  # target → directory of seeds
  local dir="$work/seeds_$1"
  rm -rf "$dir" && mkdir -p "$dir"
  case "$1" in
    pickle) cp "$root"/tests/fixtures/pickle/*.pkl "$dir"/ ;;
    npy) cp "$root"/tests/fixtures/npy/*.npy "$dir"/ 2>/dev/null || true ;;
    safetensors) cp "$root"/tests/fixtures/safetensors/*.safetensors "$dir"/ 2>/dev/null || true ;;
    image) cp "$here"/seeds/image/* "$dir"/ ;;
  esac
  echo "$dir"
}

# stb_image 2.27 calls memcpy(NULL, p, 0) for an empty first IDAT chunk (legal PNG): UB by
# the letter of the C standard, harmless in every libc; that one check is switched off so the
# fuzzer can go on looking for real memory errors (ASan still watches every access).
ubsan_exceptions="-fno-sanitize=nonnull-attribute"

status=0
for t in "${targets[@]}"; do
  bin="$work/fuzz_$t"
  echo "== building fuzz_$t"
  "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $ubsan_exceptions \
    -I"$root/include" "$here/fuzz_$t.cpp" -o "$bin"
  seeds="$(seed_corpus "$t")"
  corpus="$work/corpus_$t"
  mkdir -p "$corpus"
  echo "== running fuzz_$t for ${seconds}s"
  (cd "$work" && "$bin" "$corpus" "$seeds" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/${t}-") \
    > "$work/fuzz_$t.log" 2>&1 || status=1
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|SUMMARY" \
    "$work/fuzz_$t.log" || true
done
if ls "$work"/*-crash-* "$work"/*-leak-* "$work"/*-timeout-* "$work"/*-oom-* >/dev/null 2>&1; then
  echo "run_fuzzers: findings in $work" >&2
  status=1
fi
exit $status
