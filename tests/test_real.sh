#!/usr/bin/env bash
# End-to-end checks of epsim-real under mpirun.
#   tests/test_real.sh cpu  EPSIM_REAL SOURCE_DIR MPIRUN [EPSIM]
#   tests/test_real.sh nccl EPSIM_REAL SOURCE_DIR MPIRUN   (exit 77 without a GPU)
# cpu: mpirun -np 4 on a small scenario works, its layer output equals the
# single-rank (ep=1) run's bit for bit (same per-row math, see real/ep_compute_ref.c),
# also with fp8 dispatch, drops and round-robin placement; EP != ranks, bad
# options and experts that do not fit are refused with exit 1 before anything is
# written; a corrupted output fails the reference check (exit 2); results.csv has
# the simulator's header and provenance, and the same plan columns as epsim's.
# (The kernel benchmark, once epsim-real --sweep, is tests/test_bench_kernels.sh.)
# nccl: the same layer on the GPU(s) agrees with the cpu backend's output within
# 2 x the reference bound (both are within 2e-2 of the double reference); so
# does cuda-ipc on 4 ranks sharing the GPU(s), the multi-rank GPU path on any
# GPU count (NCCL refuses two ranks on one GPU).
set -uo pipefail
mode=$1
abs() { case $1 in /*) echo "$1" ;; */*) echo "$PWD/$1" ;; *) command -v "$1" || echo "$1" ;; esac; }
real=$(abs "$2")
src=$(abs "$3")
mpirun=$(abs "$4")
epsim=${5:+$(abs "$5")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI: more ranks than cores, no network probing of absent fabrics.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# Sanitized builds: Open MPI keeps its allocations until exit, and only slow
# unwinding (9 s a run here) lets the suppressions recognise them; so two runs
# (leakcheck) check leaks with the suppressions and the others skip leak checks.
# Both settings are ignored by unsanitized builds.
export LSAN_OPTIONS="suppressions=$src/real/lsan-openmpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
asan_default=${ASAN_OPTIONS:-}
export ASAN_OPTIONS="detect_leaks=0${asan_default:+:$asan_default}"
leakcheck() { ASAN_OPTIONS="${asan_default:+$asan_default:}detect_leaks=1:fast_unwind_on_malloc=0" "$@"; }
mpi=("$mpirun" --oversubscribe)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
small=$src/tests/scenarios/real-small.yaml
cap=$src/tests/scenarios/real-small-cap.yaml
# shellcheck source=tests/check.sh
. "$src/tests/check.sh"

# Per-token relative L2 difference of two float32 dumps; prints the worst.
max_rel_diff() { # file_a file_b hidden
  paste <(od -An -v -tf4 -w4 "$1") <(od -An -v -tf4 -w4 "$2") | awk -v h="$3" '
    { d = $1 - $2; num += d * d; den += $2 * $2; n++
      if (n % h == 0) { r = (den > 0) ? sqrt(num / den) : sqrt(num); if (r > worst) worst = r; num = 0; den = 0 } }
    END { printf "%.6g\n", worst + 0 }'
}

if [ "$mode" = nccl ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "test_real.sh nccl: no GPU, skipped"
    exit 77
  fi
  if ! "$real" --version | grep -q 'backends:.*nccl'; then
    echo "test_real.sh nccl: epsim-real was built without the NCCL backend, skipped"
    exit 77
  fi
  n_gpu=$(nvidia-smi -L | grep -c '^GPU')
  np=1
  for n in 4 2; do [ "$n_gpu" -ge "$n" ] && { np=$n; break; }; done
  for scen in "$small" "$cap"; do
    name=$(basename "$scen" .yaml)
    per_rank=$(awk '/tokens_per_gpu:/ { print $2 }' "$scen")
    expect_rc 0 "nccl $name np $np" "${mpi[@]}" -np "$np" "$real" "$scen" --backend nccl \
      -o "nccl-$name" --set parallel.ep=$np --dump-output "nccl-$name.bin"
    grep -q '^# backend: nccl (GPU [0-9]* .*, driver .*, runtime .*, NCCL [0-9]*\.[0-9]*\.[0-9]*)$' "nccl-$name/results.csv" &&
      ok || bad "nccl results.csv provenance"
    grep -q 'output check: .* worst relative L2 error' "$work/out" && ok || bad "nccl output check ran"
    # The same global tokens on one CPU rank: same plan, so the outputs must agree
    # to within both runs' distance from the double reference (2 x 2e-2).
    expect_rc 0 "cpu $name np 1 for comparison" "${mpi[@]}" -np 1 "$real" "$scen" --backend cpu \
      -o "cpu-$name" --set parallel.ep=1 --set workload.tokens_per_gpu=$((per_rank * np)) \
      --dump-output "cpu-$name.bin" --check-tokens 0
    d=$(max_rel_diff "nccl-$name.bin" "cpu-$name.bin" 128)
    awk -v d="$d" 'BEGIN { exit !(d <= 4e-2) }' && ok || bad "nccl vs cpu output of $name: $d > 4e-2"
    echo "nccl vs cpu, $name on $np GPU(s): worst per-token relative L2 difference $d"
  done
  # Four ranks whatever the GPU count: the GPU backend's multi-rank logic with
  # rows moved by CUDA IPC copies, against the cpu backend on four ranks.
  for scen in "$small" "$cap"; do
    name=$(basename "$scen" .yaml)
    expect_rc 0 "cuda-ipc $name np 4" "${mpi[@]}" -np 4 "$real" "$scen" --backend cuda-ipc \
      -o "ipc-$name" --set parallel.ep=4 --dump-output "ipc-$name.bin"
    grep -q 'output check: .* worst relative L2 error' "$work/out" && ok || bad "cuda-ipc output check ran"
    grep -q '^# backend: cuda-ipc (GPU [0-9]* ' "ipc-$name/results.csv" && ok ||
      bad "cuda-ipc results.csv provenance"
    expect_rc 0 "cpu $name np 4 for comparison" "${mpi[@]}" -np 4 "$real" "$scen" --backend cpu \
      -o "cpu4-$name" --set parallel.ep=4 --dump-output "cpu4-$name.bin" --check-tokens 0
    d=$(max_rel_diff "ipc-$name.bin" "cpu4-$name.bin" 128)
    awk -v d="$d" 'BEGIN { exit !(d <= 4e-2) }' && ok || bad "cuda-ipc vs cpu output of $name: $d > 4e-2"
    echo "cuda-ipc vs cpu, $name on 4 ranks: worst per-token relative L2 difference $d"
  done
  finish "test_real.sh $mode"
fi

[ "$mode" = cpu ] || { echo "usage: $0 cpu|nccl EPSIM_REAL SOURCE_DIR MPIRUN [EPSIM]" >&2; exit 2; }

# --- command line ---
expect_rc 0 "--version" "$real" --version
grep -q '^epsim-real [0-9].*backends: cpu' "$work/out" && ok || bad "--version names the backends"
expect_rc 0 "--help" "$real" --help
grep -q 'usage: mpirun -np EP epsim-real SCENARIO' "$work/out" && ok || bad "--help prints usage"
expect_rc 1 "no scenario" "$real"
expect_rc 1 "unknown option" "$real" "$small" --bogus
expect_rc 1 "unknown backend" "$real" "$small" --backend tpu
expect_rc 1 "missing scenario file" "$real" "$work/nope.yaml"
expect_rc 1 "bad --set" "$real" "$small" --set workload.tokens_per_gpu=0 -o never

# --- refusals: exit 1, a clear message, nothing written ---
expect_rc 1 "EP != ranks" "${mpi[@]}" -np 2 "$real" "$small" --backend cpu -o never
grep -q 'scenario wants ep=4 but mpirun started 2 ranks' "$work/err" && ok ||
  { bad "EP mismatch message"; cat "$work/err" >&2; }
expect_rc 1 "experts do not fit" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o never --max-mem 64K
grep -q 'experts do not fit on rank [0-9]*: it needs .* but the limit is 64.00 KiB (--max-mem)' \
  "$work/err" && ok || { bad "does-not-fit message"; cat "$work/err" >&2; }
expect_rc 1 "combine fp8 unsupported" "$real" "$small" --backend cpu -o never --set model.combine_dtype=fp8
grep -q 'combine_dtype fp8 is not supported' "$work/err" && ok || bad "combine fp8 message"
if ! "$real" --version | grep -q 'nccl'; then
  expect_rc 1 "nccl backend not built" "$real" "$small" --backend nccl -o never
  expect_rc 1 "cuda-ipc backend not built" "$real" "$small" --backend cuda-ipc -o never
elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  expect_rc 1 "nccl without a GPU" "$real" "$small" --backend nccl -o never
  expect_rc 1 "cuda-ipc without a GPU" "$real" "$small" --backend cuda-ipc -o never
  grep -q 'cuda-ipc: no CUDA device is visible' "$work/err" && ok || bad "cuda-ipc no-GPU message"
fi
[ ! -e never ] && ok || bad "a refused run created its output directory"

# --- the layer on 4 ranks ---
expect_rc 0 "np 4 small" leakcheck "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o out4 --dump-output o4.bin
grep -q 'output check: 8 sampled tokens per rank .* worst relative L2 error' "$work/out" && ok ||
  bad "output check reported"
for f in results.csv trace.json; do [ -s "out4/$f" ] && ok || bad "out4/$f written"; done
header=$(grep -v '^#' out4/results.csv | head -1)
[ "$header" = "rank,node,phase,start_us,end_us,time_us,tokens,send_bytes,recv_bytes" ] && ok ||
  bad "results.csv header: $header"
for p in '# tool: epsim-real [0-9]' '# backend: cpu$' '# scenario: .*real-small.yaml (fnv1a64 [0-9a-f]\{16\})$' \
  '# seed: 11$' '# argv: .*epsim-real .*real-small.yaml' '# units: '; do
  grep -q "^$p" out4/results.csv && ok || bad "results.csv provenance line '$p'"
done
[ "$(grep -vc '^#' out4/results.csv)" -eq 13 ] && ok || bad "results.csv has 4 ranks x 3 phases"
# --help and --version on an unwritable stdout are exit 1, as epsim's.
"$real" --help >/dev/full 2>"$work/err"
[ $? -eq 1 ] && grep -q "cannot write standard output" "$work/err" && ok ||
  bad "--help > /dev/full: exit 1 with a message"
"$real" --version >/dev/full 2>/dev/null
[ $? -eq 1 ] && ok || bad "--version > /dev/full: exit 1"

# Atomic outputs (issue 8): --dump-output is staged beside itself and renamed
# with -o's files; any write failure is exit 1 with the path and errno, and
# leaves neither -o nor the dump.
ls -a out4 >out4.list
expect_rc 1 "--dump-output /dev/full" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o full-out \
  --dump-output /dev/full
grep -q "writing /dev/full failed: No space left on device" "$work/err" && ok ||
  bad "--dump-output /dev/full message: $(cat "$work/err")"
[ ! -e full-out ] && ok || bad "--dump-output /dev/full created -o"
expect_rc 1 "--dump-output in a missing directory" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu \
  -o never --dump-output "$work/nodir/o.bin"
grep -q "cannot write $work/nodir/o.bin: No such file or directory" "$work/err" && ok ||
  bad "--dump-output in a missing directory message: $(cat "$work/err")"
: >afile
expect_rc 1 "-o under a file" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o afile/out \
  --dump-output staged.bin
grep -q "cannot create output directory afile/out: .*Not a directory" "$work/err" && ok ||
  bad "-o under a file message: $(cat "$work/err")"
[ -z "$(find . -maxdepth 1 -name 'staged.bin*')" ] && ok || bad "a failed -o left the staged dump"
# (one rank without mpirun, whose forwarding would hide the ranks' stdout errors)
cp o4.bin o4.bin.before
expect_rc 1 "run > /dev/full" sh -c '"$0" "$@" >/dev/full' "$real" "$small" --backend cpu \
  --set parallel.ep=1 -o out4 --dump-output o4.bin
grep -q "cannot write standard output: No space left on device" "$work/err" && ok ||
  bad "run > /dev/full message: $(cat "$work/err")"
cmp -s <(ls -a out4) out4.list && cmp -s o4.bin o4.bin.before && ok ||
  bad "run > /dev/full changed out4 or o4.bin"
rm o4.bin.before
expect_rc 0 "--dump-output /dev/null" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o null-out \
  --dump-output /dev/null --check-tokens 0
[ -c /dev/null ] && ok || bad "/dev/null is still a device"
# Phases in order on every rank: dispatch ends before expert starts, etc., all >= 0.
awk -F, '!/^#/ && NR > 1 && $1 != "rank" { if ($4 < 0 || $5 < $4) bad = 1
  if ($1 == r && $4 + 1e-6 < prev_end) bad = 1; r = $1; prev_end = $5 } END { exit bad }' \
  out4/results.csv && ok || bad "phase timings ordered and non-negative"
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if sum(e.get("ph")=="X" for e in d["traceEvents"])==12 else 1)' \
    out4/trace.json && ok || bad "trace.json parses with 12 phase events"
fi
# The same plan as the simulator: plan columns of results.csv equal epsim's.
if [ -n "$epsim" ] && [ -x "$epsim" ]; then
  if "$epsim" run "$small" -o sim4 >/dev/null 2>"$work/err"; then
    ok
    [ "$(grep -v '^#' sim4/results.csv | head -1)" = "$header" ] && ok || bad "same header as epsim"
    diff <(grep -v '^#' sim4/results.csv | cut -d, -f1-3,7-9) \
      <(grep -v '^#' out4/results.csv | cut -d, -f1-3,7-9) >/dev/null && ok ||
      bad "plan columns (rank,node,phase,tokens,bytes) differ from epsim's"
    diff <(grep '^#' sim4/results.csv | cut -d: -f1) <(grep '^#' out4/results.csv | cut -d: -f1) \
      >/dev/null && ok || bad "provenance keys differ from epsim's"
  else
    bad "epsim run on $small"
    cat "$work/err" >&2
  fi
fi

# --- same output on 1 rank (ep=1, all 4 x 48 tokens), bit for bit ---
expect_rc 0 "np 1 ep 1" "${mpi[@]}" -np 1 "$real" "$small" --backend cpu -o out1 \
  --set parallel.ep=1 --set workload.tokens_per_gpu=192 --dump-output o1.bin
[ "$(stat -c %s o4.bin)" -eq $((192 * 128 * 4)) ] && ok || bad "dump size is 192 tokens x 128 floats"
cmp -s o1.bin o4.bin && ok || bad "np 4 and np 1 layer outputs differ (max rel $(max_rel_diff o4.bin o1.bin 128))"
# A second run gives the same bytes (timings differ, outputs do not).
expect_rc 0 "np 4 again" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o out4b --dump-output o4b.bin
cmp -s o4.bin o4b.bin && ok || bad "np 4 output not reproducible"
# Another seed routes and fills differently.
expect_rc 0 "np 4 seed 12" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o out4s \
  --set workload.seed=12 --dump-output o4s.bin
cmp -s o4.bin o4s.bin && bad "seed 12 gave the same output as seed 11" || ok

# --- fp8 dispatch, capacity drops, round-robin placement: 4 ranks vs 1 ---
expect_rc 0 "np 4 cap" leakcheck "${mpi[@]}" -np 4 "$real" "$cap" --backend cpu -o outc4 --dump-output c4.bin \
  --check-tokens 40
grep -q 'dispatch fp8 rows' "$work/out" && ok || bad "fp8 wire used"
grep -Eq 'dropped [1-9][0-9]* of 320 copies' "$work/out" && ok || bad "capacity drops copies"
expect_rc 0 "np 1 cap" "${mpi[@]}" -np 1 "$real" "$cap" --backend cpu -o outc1 --dump-output c1.bin \
  --set parallel.ep=1 --set workload.tokens_per_gpu=160
cmp -s c1.bin c4.bin && ok || bad "cap: np 4 and np 1 outputs differ (max rel $(max_rel_diff c4.bin c1.bin 128))"
expect_rc 0 "np 2 cap" "${mpi[@]}" -np 2 "$real" "$cap" --backend cpu -o outc2 --dump-output c2.bin \
  --set parallel.ep=2 --set workload.tokens_per_gpu=80
cmp -s c2.bin c4.bin && ok || bad "cap: np 2 and np 4 outputs differ"

# --- a wrong output fails the reference check: exit 2, no results ---
EPSIM_REAL_TEST_CORRUPT=1 expect_rc 2 "corrupted output" "${mpi[@]}" -np 4 "$real" "$small" --backend cpu -o outbad
grep -q 'output check FAILED' "$work/err" && ok || bad "corruption reported"
[ ! -e outbad/results.csv ] && ok || bad "a failed check wrote results.csv"

finish "test_real.sh $mode"
