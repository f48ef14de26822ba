#!/usr/bin/env bash
# End-to-end checks of the epsim CLI: exit codes, bundled scenarios, outputs,
# determinism (same seed -> byte-identical results.csv and trace.json, another
# seed -> another plan), and that bad input writes nothing.
#   tests/test_cli.sh path/to/epsim path/to/source
set -uo pipefail
epsim=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=tests/check.sh
. "$src/tests/check.sh"

expect_rc 0 "--version" "$epsim" --version
grep -q '^epsim [0-9]' "$work/out" && ok || bad "--version prints 'epsim X.Y.Z'"
expect_rc 0 "--help" "$epsim" --help
grep -q 'usage: epsim run SCENARIO' "$work/out" && ok || bad "--help prints usage"
expect_rc 1 "no arguments" "$epsim"
expect_rc 1 "unknown command" "$epsim" frobnicate
expect_rc 1 "unknown option" "$epsim" run "$src/scenarios/default.yaml" --bogus
expect_rc 1 "missing scenario file" "$epsim" check "$work/nope.yaml"

for f in "$src"/scenarios/*.yaml; do
  expect_rc 0 "check $(basename "$f")" "$epsim" check "$f"
  grep -q ': ok$' "$work/out" && ok || bad "check $(basename "$f") says ok"
done

# Bad input: exit 1, a file:line:col message, and no output directory.
cat >"$work/bad.yaml" <<'YAML'
model:
  name: bad
  n_experts: 8
  top_k: 2
  hidden: 1024
  moe_intermediate: 512
cluster:
  preset: hgx-h100
  nodes: 1
parallel:
  ep: 16
workload:
  tokens_per_gpu: 64
YAML
expect_rc 1 "ep larger than the cluster" "$epsim" run "$work/bad.yaml" -o "$work/bad-out"
grep -q "bad.yaml:11:[0-9]*: parallel.ep" "$work/err" && ok || { bad "error names file:line: key"; cat "$work/err" >&2; }
[ ! -e "$work/bad-out" ] && ok || bad "bad input created the output directory"
expect_rc 1 "bad --set" "$epsim" run "$src/scenarios/default.yaml" -o "$work/bad-out" --set workload.tokens_per_gpu=0
[ ! -e "$work/bad-out" ] && ok || bad "bad --set created the output directory"

# A small layer, run twice from two directories with identical arguments.
small=(run "$src/scenarios/mixtral-8x7b-hgx-h100-ep8.yaml" -o out --set workload.tokens_per_gpu=256
       --set workload.routing=zipf)
mkdir -p "$work/a" "$work/b" "$work/c"
(cd "$work/a" && "$epsim" "${small[@]}" >stdout 2>stderr) && ok || { bad "run a"; cat "$work/a/stderr" >&2; }
(cd "$work/b" && "$epsim" "${small[@]}" >stdout 2>stderr) && ok || { bad "run b"; cat "$work/b/stderr" >&2; }
for f in results.csv trace.json platform.xml; do
  [ -s "$work/a/out/$f" ] && ok || bad "$f written"
  cmp -s "$work/a/out/$f" "$work/b/out/$f" && ok || bad "$f differs between identical runs"
done
cmp -s "$work/a/stdout" "$work/b/stdout" && ok || bad "summary differs between identical runs"
if command -v gnuplot >/dev/null; then
  [ "$(head -c 4 "$work/a/out/phases.png" | od -An -c | tr -d ' ')" = "211PNG" ] && ok || bad "phases.png is a PNG"
fi
grep -q '^layer time [0-9.]* µs' "$work/a/stdout" && ok || bad "summary has the layer time"
rows=$(grep -vc '^#' "$work/a/out/results.csv")
[ "$rows" -eq $((1 + 8 * 3)) ] && ok || bad "results.csv has a header and 8 GPUs x 3 phases ($rows lines)"
(cd "$work/c" && "$epsim" "${small[@]}" --set workload.seed=2 >stdout 2>stderr) && ok || bad "run c"
# Same columns except the token counts and times: compare the data rows only.
if diff -q <(grep -v '^#' "$work/a/out/results.csv") <(grep -v '^#' "$work/c/out/results.csv") >/dev/null; then
  bad "another seed gave the same results"
else
  ok
fi

# SimGrid's own settings pass through after epsim's: a quieter log and a solver
# that gives the same times change no number; results.csv records them.
mkdir -p "$work/d"
(cd "$work/d" && "$epsim" "${small[@]}" --log=root.thres:critical --cfg=network/optim:Lazy \
  >stdout 2>stderr) && ok || { bad "run d with --log and --cfg"; cat "$work/d/stderr" >&2; }
# (the command line is in results.csv's '# argv:' line and trace.json's first line)
for f in results.csv trace.json platform.xml; do
  cmp -s <(grep -v -e '^# argv:' -e '"argv":' "$work/a/out/$f") \
    <(grep -v -e '^# argv:' -e '"argv":' "$work/d/out/$f") && ok ||
    bad "--log and --cfg changed $f"
done
cmp -s "$work/a/stdout" "$work/d/stdout" && ok || bad "--log and --cfg changed the summary"
grep -q '^# argv: .* --log=root.thres:critical --cfg=network/optim:Lazy$' "$work/d/out/results.csv" &&
  ok || bad "results.csv records the SimGrid settings"
# A setting SimGrid rejects (a key at init, a model name at the platform load)
# is bad input with SimGrid's reason, not an abort, and writes nothing.
expect_rc 1 "a SimGrid key SimGrid rejects" "$epsim" run "$src/scenarios/default.yaml" \
  -o "$work/bad-cfg" --cfg=nonsense:1
grep -q "SimGrid rejects --cfg=nonsense:1: .*Bad config key: nonsense" "$work/err" && ok ||
  { bad "bad --cfg message"; cat "$work/err" >&2; }
expect_rc 1 "a SimGrid model SimGrid rejects" "$epsim" run "$src/scenarios/default.yaml" \
  -o "$work/bad-cfg" --cfg=network/model:Nope
grep -q "SimGrid rejects --cfg=network/model:Nope: Model 'Nope' is invalid" "$work/err" && ok ||
  { bad "bad model message"; cat "$work/err" >&2; }
expect_rc 1 "a SimGrid log spec SimGrid rejects" "$epsim" run "$src/scenarios/default.yaml" \
  -o "$work/bad-cfg" --log=bogus
[ ! -e "$work/bad-cfg" ] && ok || bad "a bad SimGrid setting created the output directory"
expect_rc 1 "--cfg is for run" "$epsim" check "$src/scenarios/default.yaml" --cfg=network/optim:Full
grep -q "epsim: --cfg is for epsim run, not epsim check" "$work/err" && ok || bad "--cfg for check message"
expect_rc 1 "unknown backend" "$epsim" run "$src/scenarios/default.yaml" -o "$work/bad-cfg" --backend tpu
grep -q "epsim: unknown backend 'tpu' (valid: simgrid)" "$work/err" && ok || bad "unknown backend message"
expect_rc 1 "-o needs a value" "$epsim" run "$src/scenarios/default.yaml" -o
grep -q "epsim: -o needs a value" "$work/err" && ok || bad "-o needs a value message"
grep -q "unknown option '--bogus'" <("$epsim" run "$src/scenarios/default.yaml" --bogus 2>&1) && ok ||
  bad "unknown option message"

# Outputs are atomic (issue 8): files are staged in DIR/.epsim-tmp-XXXXXX and
# renamed into place only when everything succeeded; a failure or SIGTERM leaves
# -o as it was. snap DIR: its listing (hidden files too) and checksums.
snap() { (cd "$1" 2>/dev/null && find . -type f -exec sha256sum {} + | sort; find . | sort); }
fast=(run "$src/scenarios/mixtral-8x7b-hgx-h100-ep8.yaml" --set workload.tokens_per_gpu=64)
expect_rc 1 "-o ''" "$epsim" "${fast[@]}" -o ''
grep -q "output directory name is empty" "$work/err" && ok || bad "-o '' message: $(cat "$work/err")"
expect_rc 1 "check > /dev/full" sh -c '"$0" check "$1" >/dev/full' "$epsim" "$src/scenarios/default.yaml"
grep -q "cannot write standard output: No space left on device" "$work/err" && ok || bad "check > /dev/full message"
expect_rc 0 "a first run into prev" "$epsim" "${fast[@]}" -o "$work/prev"
before=$(snap "$work/prev")
expect_rc 1 "run > /dev/full" sh -c '"$0" "$@" >/dev/full' "$epsim" "${fast[@]}" -o "$work/prev"
grep -q "cannot write standard output: No space left on device" "$work/err" && ok || bad "run > /dev/full message"
[ "$(snap "$work/prev")" = "$before" ] && ok || bad "run > /dev/full changed the previous results"
expect_rc 1 "run > /dev/full, new -o" sh -c '"$0" "$@" >/dev/full' "$epsim" "${fast[@]}" -o "$work/new/deeper"
[ ! -e "$work/new" ] && ok || bad "a failed run left the -o it created"
: >"$work/afile"
for o in "$work/afile" "$work/afile/x" "$work/afile/x/y"; do
  expect_rc 1 "-o $o" "$epsim" "${fast[@]}" -o "$o"
  grep -q "cannot create output directory $o: .*Not a directory" "$work/err" && ok || bad "-o $o message: $(cat "$work/err")"
done
# Unwritable at each level (as an unprivileged user when run as root).
perm=$(mktemp -d)
chmod 755 "$perm"
mkdir -p "$perm/ro/sub"
chmod 555 "$perm/ro" "$perm/ro/sub"
as_user=()
[ "$(id -u)" = 0 ] && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
if [ "$(id -u)" != 0 ] || { command -v setpriv >/dev/null && "${as_user[@]}" test -x "$epsim" &&
  "${as_user[@]}" test -r "$src/scenarios/mixtral-8x7b-hgx-h100-ep8.yaml"; }; then
  for o in "$perm/ro" "$perm/ro/sub" "$perm/ro/x" "$perm/ro/x/y"; do
    expect_rc 1 "unwritable -o $o" "${as_user[@]}" "$epsim" "${fast[@]}" -o "$o"
    grep -q "$o.*: Permission denied" "$work/err" && ok || bad "unwritable -o $o message: $(cat "$work/err")"
    [ -z "$(find "$perm/ro" -mindepth 1 ! -name sub)" ] && ok || bad "unwritable -o $o left files"
  done
else
  echo "test_cli: unwritable -o checks skipped (no unprivileged user)"
fi
chmod -R 755 "$perm"
rm -rf "$perm"
# A full -o (a 16 KiB tmpfs, where mounting is allowed): exit 1, errno, -o as it was.
mkdir -p "$work/full"
if mount -t tmpfs -o size=16k tmpfs "$work/full" 2>/dev/null; then
  echo old >"$work/full/results.csv"
  before=$(snap "$work/full")
  expect_rc 1 "a full -o" "$epsim" "${fast[@]}" -o "$work/full"
  grep -q "No space left on device" "$work/err" && ok || bad "full -o message: $(cat "$work/err")"
  [ "$(snap "$work/full")" = "$before" ] && ok || bad "a full -o changed -o"
  umount "$work/full"
else
  echo "test_cli: full-disk check skipped (cannot mount a tmpfs)"
fi
# SIGTERM during the simulation (a 64-GPU pair run takes many seconds): the
# stage goes, the previous results stay.
expect_rc 0 "a first run into sig" "$epsim" "${fast[@]}" -o "$work/sig"
before=$(snap "$work/sig")
"$epsim" run "$src/scenarios/qwen3-235b-a22b-hgx-h100-ep32.yaml" -o "$work/sig" --set cluster.nodes=8 \
  --set parallel.ep=64 --set sim.flows=pair >/dev/null 2>"$work/sig.err" &
pid=$!
for _ in $(seq 3000); do compgen -G "$work/sig/.epsim-tmp-*" >/dev/null && break; sleep 0.01; done
compgen -G "$work/sig/.epsim-tmp-*/platform.xml" >/dev/null && ok || bad "the platform is staged in -o/.epsim-tmp-*"
kill -TERM "$pid"
wait "$pid"
rc=$?
[ "$rc" = 143 ] && ok || bad "SIGTERM: exit $rc, wanted 143"
[ "$(snap "$work/sig")" = "$before" ] && ok || bad "SIGTERM left something in -o: $(ls -a "$work/sig")"
# Two runs into one -o at once: both complete, no temporaries clash or stay.
"$epsim" "${small[@]/#out/$work/two}" --set workload.seed=5 >/dev/null 2>&1 & p1=$!
"$epsim" "${small[@]/#out/$work/two}" --set workload.seed=6 >/dev/null 2>&1 & p2=$!
wait "$p1" && wait "$p2" && ok || bad "two runs into one -o"
[ "$(grep -vc '^#' "$work/two/results.csv")" -eq 25 ] && ok || bad "two runs: results.csv incomplete"
[ -z "$(find "$work/two" -name '.*' ! -name .)" ] && ok || bad "two runs left temporaries"

# Provenance cannot break the files: an -o with a newline, a quote, an
# apostrophe and a comma, and a model name with a quote, give one '#' line per
# line, the body of a plain run, and a trace.json that parses.
odd="$work/new
line \"q\" it's, here"
expect_rc 0 "odd -o and model name" "$epsim" "${fast[@]}" -o "$odd" --set 'model.name=Mix"tral, v1'
expect_rc 0 "plain run" "$epsim" "${fast[@]}" -o "$work/plain"
[ "$(grep -c '^#' "$odd/results.csv")" -eq 6 ] && ok || bad "escaped results.csv has 6 '#' lines"
cmp -s <(grep -v '^#' "$odd/results.csv") <(grep -v '^#' "$work/plain/results.csv") && ok ||
  bad "escaping changed the results.csv body"
grep -qF '# argv: ' "$odd/results.csv" && grep -qF ' -o "'"$work"'/new\nline \"q\" it'"'"'s, here" --set "model.name=Mix\"tral, v1"' "$odd/results.csv" &&
  ok || bad "argv escaped: $(grep '^# argv' "$odd/results.csv")"
[ -s "$odd/platform.xml" ] && ok || bad "odd -o has platform.xml"
if command -v gnuplot >/dev/null; then [ -s "$odd/phases.png" ] && ok || bad "odd -o has phases.png"; fi
if command -v python3 >/dev/null; then
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["otherData"]["argv"][-1] == "model.name=Mix\"tral, v1"' \
    "$odd/trace.json" && ok || bad "trace.json with odd argv does not parse"
else
  echo "test_cli: trace.json parse check skipped (no python3)"
fi

# Resource guards of the scenario reader: an endless file and deep nesting end
# at once with a clear message (they used to read until a 4 GiB allocation
# failed, and run libyaml for minutes).
expect_rc 1 "check /dev/zero" timeout 20 "$epsim" check /dev/zero
grep -q "^/dev/zero: cannot read: larger than 16 MiB" "$work/err" && ok || bad "/dev/zero message"
head -c 200000 /dev/zero | tr '\0' '[' >"$work/deep.yaml"
expect_rc 1 "200k nested [" timeout 20 "$epsim" check "$work/deep.yaml"
grep -q "deep.yaml:1:65: yaml: nested more than 64 levels deep" "$work/err" && ok || bad "nesting message"

# check and run agree on every bounded key at and beyond its ends (issue 8:
# these crashed, hung or deadlocked SimGrid, or check passed what run then
# refused). 0: both accept and run completes with a finite layer time; 1: both
# refuse with the key's file:line:col ("--set:2:COL" here) and valid range.
agree() { # rc key=value [key=value...]
  local want=$1 sets=(--set workload.tokens_per_gpu=64)
  shift
  for kv in "$@"; do sets+=(--set "$kv"); done
  "$epsim" check "$src/scenarios/default.yaml" "${sets[@]}" >"$work/out" 2>"$work/err"
  local check_rc=$?
  timeout 60 "$epsim" run "$src/scenarios/default.yaml" -o "$work/agree" "${sets[@]}" \
    >"$work/out" 2>"$work/err"
  local run_rc=$?
  if [ "$check_rc" -eq "$want" ] && [ "$run_rc" -eq "$want" ]; then ok; else
    bad "$*: check exit $check_rc, run exit $run_rc, wanted $want"
    tail -n 5 "$work/err" >&2
  fi
  if [ "$want" -eq 0 ]; then
    grep -q '^layer time [0-9]\{1,12\}\.[0-9][0-9] µs' "$work/out" && ok ||
      bad "$*: no sane layer time: $(grep 'layer time' "$work/out")"
  else
    grep -q "^--set:[0-9]*:[0-9]*: [a-z_]*\.[a-z_A-Z]*: .* (valid: .*)$" "$work/err" && ok ||
      { bad "$*: no --set:line:col: key: message (valid: ...)"; cat "$work/err" >&2; }
    [ ! -e "$work/agree" ] && ok || bad "$*: refused input created -o"
  fi
  rm -rf "$work/agree"
}
for key in cluster.nic_latency_us cluster.nvlink_latency_us; do
  for v in 0 0.01 1e6; do agree 0 "$key=$v"; done
  for v in 1e-20 1e-12 0.0099 1000001 2e11 1e305; do agree 1 "$key=$v"; done
done
for key in cluster.nic_GBps cluster.nvlink_GBps; do
  for v in 1e-3 1e6; do agree 0 "$key=$v"; done
  for v in 1e-300 0.000999 1000000.1 1e300; do agree 1 "$key=$v"; done
done
agree 0 model.n_experts=1024 model.top_k=1024
agree 1 model.n_experts=2048 model.top_k=1025
for v in 64 1e-300; do agree 0 workload.routing=zipf workload.zipf_exponent=$v; done
for v in 64.0001 135 150; do agree 1 workload.routing=zipf workload.zipf_exponent=$v; done
agree 0 workload.routing=hot workload.hot_experts=1 workload.hot_share=2.3e-308 model.top_k=256
agree 0 workload.routing=hot workload.hot_experts=255 workload.hot_share=0.9999999999999999
agree 0 policy.capacity_factor=1e-300
agree 0 policy.capacity_factor=1e300
agree 1 workload.tokens_per_gpu=16777216 model.top_k=1024 model.n_experts=1024 \
  model.hidden=1048576 parallel.ep=1024 cluster.nodes=128

# The peak-memory guard: a run whose estimate is above the limit is refused,
# by check and run alike, before anything large is allocated (EP 65536 needs
# ~200 GiB and was OOM-killed), with the estimate and the limit.
huge=(--set parallel.ep=65536 --set cluster.nodes=8192 --set model.n_experts=65536)
for cmd in check run; do
  expect_rc 1 "$cmd EP 65536" timeout 20 "$epsim" $cmd "$src/scenarios/default.yaml" "${huge[@]}" \
    $([ $cmd = run ] && echo "-o $work/huge")
  grep -q "this run needs about [0-9.]* GiB (plan [0-9.]* GiB, simgrid [0-9.]* GiB), above the limit of [0-9.]* GiB ([0-9]*% of the machine's [0-9.]* GiB; set it with --max-memory-GiB)" \
    "$work/err" && ok || { bad "$cmd EP 65536 message"; cat "$work/err" >&2; }
  expect_rc 1 "$cmd --max-memory-GiB 0.001" "$epsim" $cmd "$src/scenarios/default.yaml" \
    --max-memory-GiB 0.001 $([ $cmd = run ] && echo "-o $work/huge")
  grep -q "above the limit of 0.00 GiB (--max-memory-GiB)" "$work/err" && ok || bad "$cmd limit message"
done
[ ! -e "$work/huge" ] && ok || bad "a run above the memory limit created -o"
expect_rc 0 "check --max-memory-GiB 1000" "$epsim" check "$src/scenarios/default.yaml" --max-memory-GiB 1000
grep -q "^memory     about 0.0[0-9]* GiB at peak (plan 0.0[0-9]* GiB), limit 1000.0 GiB$" "$work/out" && ok ||
  bad "check prints the memory estimate"

finish test_cli
