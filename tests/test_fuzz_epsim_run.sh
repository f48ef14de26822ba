#!/usr/bin/env bash
# The structure-aware driver against a stub epsim: it reports nothing for a
# well-behaved epsim, and each kind of finding (a crash, a hang, exit 2, check
# and run disagreeing, a missing or non-finite output, files left in or beside
# -o after a failure); its cases depend only on the seed; --replay reruns a
# saved finding.
#   tests/test_fuzz_epsim_run.sh path/to/fuzz_epsim_run path/to/source
set -uo pipefail
fuzz=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/check.sh
. "$src/tests/check.sh"

# The stub: `check` exits 0 (1 in left_o mode); `run FILE -o DIR` does what $STUB_MODE says, and
# appends FILE to $STUB_LOG.
stub=$work/epsim
cat >"$stub" <<'SH'
#!/usr/bin/env bash
cmd=$1 file=$2 dir=${4:-}
if [ "$cmd" = check ]; then [ "$STUB_MODE" = left_o ] && exit 1; exit 0; fi
cat "$file" >>"$STUB_LOG"
write() { # csv_row
  mkdir -p "$dir"
  printf '# tool: stub\nrank,node,phase,start_us,end_us,time_us,tokens\n%s\n' "$1" >"$dir/results.csv"
  echo '{"traceEvents": []}' >"$dir/trace.json"
  printf 'layer time 1.0 µs\n\nwrote %s/results.csv, %s/trace.json\n' "$dir" "$dir"
}
case $STUB_MODE in
  good) write 0,0,dispatch,0,1.5,1.5,8 ;;
  crash) kill -SEGV $$ ;;
  hang) sleep 60 ;;
  internal) exit 2 ;;
  disagree) exit 1 ;;
  missing) write 0,0,dispatch,0,1.5,1.5,8; rm "$dir/trace.json" ;;
  nan) write 0,0,dispatch,0,nan,1.5,8 ;;
  backwards) write 0,0,dispatch,5,1.5,1.5,8 ;;
  short_row) write 0,0,dispatch,0,1.5 ;;
  inf_summary) write 0,0,dispatch,0,1.5,1.5,8; echo 'layer time inf µs' ;;
  left_o) mkdir -p "$dir"; exit 1 ;;
  left_beside) write 0,0,dispatch,0,1.5,1.5,8; touch "$dir/../.out.tmp-1" ;;
esac
SH
chmod +x "$stub"
export STUB_LOG=$work/log

fuzz_with() { # mode expected_rc pattern [extra args]
  local mode=$1 want=$2 pattern=$3
  shift 3
  STUB_MODE=$mode expect_rc "$want" "stub $mode" "$fuzz" --epsim "$stub" --runs 2 --timeout-s 2 \
    --findings "$work/findings-$mode" "$@"
  grep -Eq "$pattern" "$work/out" && ok || { bad "stub $mode: no '$pattern' in the report"; cat "$work/out" >&2; }
}
fuzz_with good 0 '2 cases in .*, 0 findings$'
[ ! -e "$work/findings-good" ] && ok || bad "no finding, but a findings folder"
fuzz_with crash 1 'FINDING s1-c0 \(crash\): run crashed \(signal 11'
fuzz_with hang 1 'FINDING s1-c0 \(hang\): run hung' --runs 1
fuzz_with internal 1 'FINDING s1-c1 \(exit > 1\): run exit 2'
fuzz_with disagree 1 'FINDING s1-c0 \(check/run\): check exit 0, run exit 1'
fuzz_with missing 1 'FINDING s1-c0 \(output\): exit 0, but .*trace.json is missing'
fuzz_with nan 1 "results.csv line 3 column 5: 'nan' is not a finite number"
fuzz_with backwards 1 'results.csv line 3: end_us 1.5 before start_us 5'
fuzz_with short_row 1 'results.csv line 3: 5 fields, the header has 7'
fuzz_with inf_summary 1 'nan or inf in the summary'
fuzz_with left_o 1 'run exit 1, but -o exists'
fuzz_with left_beside 1 "left '.out.tmp-1' beside -o"
fuzz_with crash 1 '2 findings, crash 2; 1 saved in' --max-saved 1
saved=$work/findings-crash/s1-c0.yaml
grep -q '^# finding (crash): run crashed (signal 11' "$saved" && ok || bad "the saved finding names its reason"
grep -q '^model:$' "$saved" && grep -q '^  tokens_per_gpu: [0-9]*$' "$saved" && ok ||
  bad "the saved finding holds the scenario"

# The scenarios: the same seed gives the same cases, another seed others, and
# --first I --runs 1 regenerates case I alone.
log_of() { # args...: the scenarios the stub was given
  : >"$STUB_LOG"
  STUB_MODE=good "$fuzz" --epsim "$stub" --timeout-s 5 "$@" >/dev/null
  cat "$STUB_LOG"
}
a=$(log_of --seed 7 --runs 5)
[ "$a" = "$(log_of --seed 7 --runs 5)" ] && ok || bad "same seed, other scenarios"
[ "$(grep -v '^#' <<<"$a")" != "$(log_of --seed 8 --runs 5 | grep -v '^#')" ] && ok ||
  bad "another seed, same scenarios"
[ "$(sed -n '/--first 4 /,$p' <<<"$a")" = "$(log_of --seed 7 --first 4 --runs 1)" ] && ok ||
  bad "--first 4 --runs 1 is case 4 of the seed"
[ "$(grep -c '^  ep: [0-9]*$' <<<"$a")" = 5 ] && ok || bad "every case has parallel.ep"

# --replay runs the saved scenario again.
STUB_MODE=crash expect_rc 1 "--replay" "$fuzz" --epsim "$stub" --findings "$work/replayed" --replay "$saved"
grep -q 'FINDING replay-s1-c0 (crash)' "$work/out" && ok || bad "--replay reports the crash"
STUB_MODE=good expect_rc 0 "--replay, fixed" "$fuzz" --epsim "$stub" --replay "$saved"

# Usage errors exit 2.
expect_rc 2 "no --epsim" "$fuzz" --runs 1
expect_rc 2 "a bad number" "$fuzz" --epsim "$stub" --runs x
expect_rc 2 "epsim missing" "$fuzz" --epsim "$work/nope"

finish test_fuzz_epsim_run
