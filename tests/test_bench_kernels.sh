#!/usr/bin/env bash
# Checks of the kernel benchmark (a plain process: no mpirun).
#   tests/test_bench_kernels.sh cpu  BENCH_KERNELS SOURCE_DIR
#   tests/test_bench_kernels.sh cuda BENCH_KERNELS SOURCE_DIR   (exit 77 without a GPU)
# cpu: small shapes on the C references: one row per (kernel, shape), the CSV
# header and provenance (tool, impl, device, a positive copy bandwidth, argv,
# date), the exact flop of a grouped_gemm row, times positive with min <= median
# <= max, floor_us = bytes / copy_GBps and ratio_floor = median / floor_us; bad
# flags exit 1 and write nothing; the PyTorch script joins the CSV (join-only
# mode against this run's rows; its -d cpu measuring mode where torch is installed).
# cuda: the same grid on the GPU, every kernel checked against the C reference.
set -uo pipefail
mode=$1
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
bench=$(abs "$2")
src=$(abs "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=tests/check.sh
. "$src/tests/check.sh"
header="kernel,impl,hidden,intermediate,n_experts,top_k,local_experts,tokens_per_expert,rows,tokens,repeats,median_us,min_us,max_us,flop,bytes,TFLOPs,GBps,floor_us,ratio_floor"
# Rows of impl $2 in CSV $1.
rows_of() { grep -c "^[a-z_0-9]*,$2," "$1"; }
# Every row: min <= median <= max, all positive; floor_us = bytes / copy_GBps and
# ratio_floor = median / floor_us (to 1% and 2%, plus the rounding of the '# copy_GBps:' line's
# one decimal, which a loaded machine's low copy bandwidth makes coarse).
check_rows() { # csv what
  awk -F, '!/^#/ && $1 != "kernel" && !($12 > 0 && $13 > 0 && $13 <= $12 && $12 <= $14) { bad = 1 }
    END { exit bad }' "$1" && ok || bad "$2: times positive, min <= median <= max"
  local gbps
  gbps=$(sed -n 's/^# copy_GBps: \([0-9.]*\) .*/\1/p' "$1")
  awk -F, -v g="$gbps" 'function off(a, b, rel) { return (a - b > 0 ? a - b : b - a) > 1e-3 + rel * (b > 0 ? b : -b) }
    !/^#/ && $1 != "kernel" && (off($19, $16 / (g * 1e3), 1e-2 + 0.05 / g) || ($16 > 0 && off($20, $12 * g * 1e3 / $16, 2e-2 + 0.05 / g))) { bad = 1 }
    END { exit bad }' "$1" && ok || bad "$2: floor_us = bytes / copy_GBps, ratio_floor = median / floor_us"
}

small=(-H 128 -I 96 -E 8 -k 2)

if [ "$mode" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    # Without a GPU, -d cuda is refused (bad input), writing nothing.
    expect_rc 1 "-d cuda without a GPU" "$bench" -d cuda -o never.csv
    grep -q 'no device 0 (0 visible)' "$work/err" && ok || bad "-d cuda no-GPU message"
    [ ! -e never.csv ] && [ ! -e never.csv.tmp ] && ok || bad "a refused run wrote its CSV"
    echo "test_bench_kernels.sh cuda: $pass passed, $fail failed; no GPU, skipped"
    [ "$fail" -eq 0 ] || exit 1
    exit 77
  fi
  expect_rc 0 "cuda small" "$bench" -d cuda "${small[@]}" -l 2 -b 8 -e 64 -f 8 -n 3 -o cuda.csv
  # 13 kernels x 1 x 2 shapes; cuBLAS may refuse the forced grouped GEMM (skipped).
  [ "$(grep -vc '^\(#\|kernel,\|grouped_gemm_grouped,\)' cuda.csv)" -eq 24 ] && ok ||
    bad "cuda rows: 12 kernels x 2 shapes"
  [ "$(grep -v '^#' cuda.csv | head -1)" = "$header" ] && ok || bad "cuda header"
  grep -q '^# device: GPU' cuda.csv && ok || bad "cuda provenance"
  grep -q '^# versions: CUDA driver [0-9]*\.[0-9]*, runtime [0-9.]*, cuBLAS [0-9.]*$' cuda.csv && ok ||
    bad "cuda versions line"
  grep -Eq '^# copy_GBps: [0-9]*[1-9][0-9]*\.[0-9] \(cudaMemcpyAsync' cuda.csv && ok ||
    bad "cuda: a positive copy bandwidth"
  check_rows cuda.csv cuda
  # DeepSeek-V3 shapes, one small grid point per kernel.
  expect_rc 0 "cuda dsv3" "$bench" -d cuda -l 8 -b 64 -e 64 -n 3 -w 1 -o dsv3.csv
  [ "$(rows_of dsv3.csv cuda)" -ge 12 ] && ok || bad "cuda dsv3 rows"
  finish "test_bench_kernels.sh $mode"
fi

[ "$mode" = cpu ] || { echo "usage: $0 cpu|cuda BENCH_KERNELS SOURCE_DIR" >&2; exit 2; }

# --- command line ---
expect_rc 0 "--help" "$bench" --help
grep -q '^usage: bench_kernels' "$work/out" && ok || bad "--help prints usage"
for flag in -b -e -f -n -w -d -l -H -I -E -k -o -g; do
  grep -q -- "^  $flag " "$work/out" && ok || bad "--help documents $flag"
done
expect_rc 1 "bad list" "$bench" -d cpu "${small[@]}" -l 8,x -o never.csv
expect_rc 1 "empty list item" "$bench" -d cpu "${small[@]}" -l 1,,2 -o never.csv
expect_rc 1 "bad integer" "$bench" -d cpu "${small[@]}" -b 0 -o never.csv
expect_rc 1 "-f 1" "$bench" -d cpu "${small[@]}" -f 1 -o never.csv
expect_rc 1 "-b > -e" "$bench" -d cpu "${small[@]}" -b 16 -e 8 -o never.csv
expect_rc 1 "top_k > experts" "$bench" -d cpu -E 4 -k 8 -o never.csv
expect_rc 1 "unknown impl" "$bench" -d tpu -o never.csv
expect_rc 1 "unknown option" "$bench" --bogus
expect_rc 1 "stray argument" "$bench" -d cpu extra
expect_rc 1 "rows beyond int32" "$bench" -d cpu -l 4096 -b 1048576 -e 1048576 -o never.csv
[ ! -e never.csv ] && [ ! -e never.csv.tmp ] && ok || bad "a refused run wrote its CSV"

# --- the grid on the C references ---
expect_rc 0 "cpu small" "$bench" -d cpu "${small[@]}" -l 1,2 -b 4 -e 8 -n 2 -w 1 -o cpu.csv
# 10 kernels (the forced cuBLAS strategies are CUDA only) x 2 local-expert counts x 2 tokens per expert.
[ "$(rows_of cpu.csv cpu)" -eq 40 ] && ok || bad "cpu: 10 kernels x 2 x 2 rows, got $(rows_of cpu.csv cpu)"
[ "$(grep -v '^#' cpu.csv | head -1)" = "$header" ] && ok || bad "cpu header"
for p in '# tool: bench_kernels [0-9][^ ]* (git ' '# impl: cpu$' '# device: CPU ' '# timing: ' \
  '# shapes: hidden 128, intermediate 96, router experts 8, top_k 2; local experts 1,2; tokens per expert 4,8$' \
  '# repeats: 2 timed launches per row after 1 warm-up$' '# argv: .*bench_kernels -d cpu' \
  '# date: 20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-9:]*Z$' '# units: '; do
  grep -q "^$p" cpu.csv && ok || bad "cpu provenance '$p'"
done
grep -Eq '^# copy_GBps: [0-9]*[1-9][0-9]*\.[0-9] \(memcpy' cpu.csv && ok ||
  bad "cpu provenance: a positive copy bandwidth"
# grouped_gemm at 2 experts x 8 tokens: 16 rows, 8 tokens, flop = 6 * 16 * 128 * 96.
grep -q "^grouped_gemm,cpu,128,96,8,2,2,8,16,8,2,.*,$((6 * 16 * 128 * 96))," cpu.csv && ok ||
  bad "cpu grouped_gemm row"
# Its memory floor: 2 experts' bf16 weights (3 * 128 * 96 each) + 16 rows in and out.
grep -q "^grouped_gemm,cpu,128,96,8,2,2,8,16,8,2,[^,]*,[^,]*,[^,]*,[0-9]*,$((2 * 3 * 128 * 96 * 2 + 2 * 16 * 128 * 2))," \
  cpu.csv && ok || bad "cpu grouped_gemm bytes"
# The skewed GEMM keeps the rows of the uniform one.
grep -q "^grouped_gemm_zipf,cpu,128,96,8,2,2,8,16,8,2,.*,$((6 * 16 * 128 * 96))," cpu.csv && ok ||
  bad "cpu grouped_gemm_zipf row"
check_rows cpu.csv cpu
# The table on stdout: provenance, then one row per CSV row.
grep -q '^# copy_GBps: ' "$work/out" && ok || bad "stdout provenance"
[ "$(grep -c '^ [a-z_0-9]* ' "$work/out")" -eq 40 ] && ok || bad "stdout: 40 table rows"
grep -q '^# wrote cpu.csv$' "$work/out" && ok || bad "stdout names the CSV"
# Kernels that cannot run at the shapes say so and are left out.
expect_rc 0 "cpu hidden 96" "$bench" -d cpu -H 96 -I 64 -E 6 -k 4 -l 1 -b 4 -e 4 -n 1 -o odd.csv
grep -q '^# permute_fp8: not run (hidden is not a multiple of 128)' "$work/out" && ok ||
  bad "permute_fp8 not run at hidden 96"
grep -q '^# router_dsv3: not run' "$work/out" && ok || bad "router_dsv3 not run at 6 experts"
[ "$(rows_of odd.csv cpu)" -eq 7 ] && ok || bad "cpu hidden 96: 7 kernels"
# Default implementation without a GPU is cpu (grid up to 64 tokens per expert).
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  expect_rc 0 "default impl" "$bench" "${small[@]}" -l 1 -b 64 -n 1 -w 0
  grep -q '^# impl: cpu$' "$work/out" && ok || bad "default impl cpu without a GPU"
  [ "$(grep -c '^ [a-z_0-9]* ' "$work/out")" -eq 10 ] && ok || bad "default -e 64: one grid point"
fi

# --- the PyTorch twin: join-only against this run's rows, measuring where torch exists ---
if command -v python3 >/dev/null 2>&1; then
  torch_py=$src/tests/bench_kernels_torch.py
  expect_rc 0 "torch join" python3 "$torch_py" --ours cpu.csv --torch cpu.csv
  grep -q '^copy bandwidth: ours [0-9.]* GB/s, torch run [0-9.]* GB/s' "$work/out" && ok ||
    bad "join: copy bandwidths"
  grep -q '^grouped_gemm .* 1\.00 .*torch/ours 1\.000 >= 0\.9 PASS' "$work/out" && ok ||
    bad "join: grouped_gemm against itself"
  grep -q '^targets met: [0-9]* of [0-9]*$' "$work/out" && ok || bad "join: targets line"
  if python3 -c 'import torch' 2>/dev/null; then
    expect_rc 0 "torch -d cpu" python3 "$torch_py" -d cpu "${small[@]}" -l 1,2 -b 4 -e 8 -n 2 -w 1 \
      -o torch.csv --ours cpu.csv
    [ "$(grep -v '^#' torch.csv | head -1)" = "$header" ] && ok || bad "torch CSV header"
    grep -q '^targets met: ' "$work/out" && ok || bad "torch -d cpu joined"
  else
    echo "test_bench_kernels.sh: no torch, its measuring mode not run"
  fi
fi
finish "test_bench_kernels.sh $mode"
