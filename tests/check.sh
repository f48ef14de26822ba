# The shell twin of tests/check.h, sourced by the test scripts (which set $work,
# a scratch folder, first): counters, ok and bad, expect_rc (runs a command with
# its output in $work/out and $work/err and checks its exit code) and finish
# (prints the counts; exits 0 only when something passed and nothing failed).
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # expected_rc description command...
  local want=$1 what=$2
  shift 2
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [ "$rc" -eq "$want" ]; then ok; else
    bad "$what: exit $rc, wanted $want"
    tail -n 20 "$work/out" "$work/err" >&2
  fi
}
finish() { # name
  echo "$1: $pass passed, $fail failed"
  [ "$pass" -gt 0 ] && [ "$fail" -eq 0 ]
  exit $?
}
