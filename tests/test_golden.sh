#!/usr/bin/env bash
# Golden outputs: every bundled scenario through epsim, and the small real
# scenario through epsim-real's cpu backend, compared byte for byte with
# tests/golden/. A change that means to change a number updates the golden
# file in the same commit (run with --update) and says why.
#   tests/test_golden.sh SOURCE_DIR EPSIM [EPSIM_REAL MPIRUN] [--update]
# epsim: the results.csv body (the '#' provenance lines aside) and the printed
# summary (its last line, which names the output directory, aside).
# epsim-real: wall-clock times differ from run to run, so its golden holds what
# is deterministic: the results.csv columns other than times, the summary lines
# without times, and the SHA-256 of the layer output (--dump-output), which
# is bit-identical on any rank count.
set -uo pipefail
src=$1
epsim=$2
real=${3:-}
mpirun=${4:-}
update=0
[ "${!#}" = "--update" ] && update=1
[ "$real" = "--update" ] && real=""
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src" || exit 1
pass=0
fail=0
compare() { # name file
  local golden=tests/golden/$1
  if [ "$update" = 1 ]; then
    cp "$2" "$golden"
    echo "updated $golden"
  elif cmp -s "$2" "$golden"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $1 differs from $golden:" >&2
    diff "$golden" "$2" | head -n 20 >&2
  fi
}

for f in scenarios/*.yaml; do
  name=$(basename "$f" .yaml)
  if ! "$epsim" run "$f" -o "$work/$name" >"$work/$name.stdout" 2>"$work/$name.stderr"; then
    fail=$((fail + 1))
    echo "FAIL: epsim run $f" >&2
    cat "$work/$name.stderr" >&2
    continue
  fi
  grep -v '^#' "$work/$name/results.csv" >"$work/$name.results.csv"
  grep -v '^wrote ' "$work/$name.stdout" >"$work/$name.summary.txt"
  compare "$name.results.csv" "$work/$name.results.csv"
  compare "$name.summary.txt" "$work/$name.summary.txt"
done

if [ -n "$real" ] && [ -n "$mpirun" ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  mpi=("$mpirun" --oversubscribe)
  [ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
  name=real-small-cpu
  if "${mpi[@]}" -np 4 "$real" tests/scenarios/real-small.yaml --backend cpu -o "$work/$name" \
       --dump-output "$work/$name.bin" >"$work/$name.stdout" 2>"$work/$name.stderr"; then
    {
      # rank,node,phase,tokens,send_bytes,recv_bytes (start/end/time are wall clock)
      grep -v '^#' "$work/$name/results.csv" | cut -d, -f1-3,7-9
      grep -v -e '^wrote ' -e '^dispatch ' -e '^expert_gemm ' -e '^combine ' -e '^layer time ' \
        "$work/$name.stdout"
      sha256sum <"$work/$name.bin" | cut -d' ' -f1
    } >"$work/$name.txt"
    compare "$name.txt" "$work/$name.txt"
  else
    fail=$((fail + 1))
    echo "FAIL: epsim-real on $name" >&2
    cat "$work/$name.stderr" >&2
  fi
fi

echo "test_golden.sh: $pass passed, $fail failed"
[ "$update" = 1 ] || { [ "$pass" -gt 0 ] && [ "$fail" -eq 0 ]; }
