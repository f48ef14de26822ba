#!/usr/bin/env bash
# Builds the fuzz targets with clang under ASan + UBSan + libFuzzer coverage
# (-DEPSIM_FUZZ=ON, in build-fuzz/) and runs each for SECONDS (default 60):
#   1. tests/fuzz_scenario.c, libFuzzer over the scenario loader, seeded with
#      the bundled scenarios and tests/fuzz/seeds/, dictionary
#      tests/fuzz/scenario.dict; the corpus grows in build-fuzz/fuzz-corpus/
#      and crashes land in build-fuzz/fuzz-findings/;
#   2. tests/fuzz_epsim_run.c, random valid scenarios with extreme numbers
#      through the sanitized epsim check and run; findings land in
#      build-fuzz/fuzz-findings-run/.
# The findings kept in tests/fuzz/findings/ are replayed first. Exits 1 when
# a replay fails or either fuzzer finds anything. Installs clang-14 and libclang-rt-14-dev
# (libFuzzer) when missing; the other packages are tests/setup.sh's.
#   bash tests/fuzz.sh [SECONDS]
#   FUZZ_SEED   seed of both fuzzers (default 1: the same cases each time)
#   BUILD_DIR   build directory, relative to the repository (default build-fuzz)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/${BUILD_DIR:-build-fuzz}"
seconds=${1:-60}
seed=${FUZZ_SEED:-1}

missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "epsim fuzz: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

CC=clang-14 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEPSIM_WERROR=ON \
  -DEPSIM_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_scenario fuzz_epsim_run epsim >/dev/null

rc=0
# The kept findings first: each must pass now (tests/fuzz/findings/README.md).
echo "replaying tests/fuzz/findings/" >&2
"$build/tests/fuzz_scenario" "$root"/tests/fuzz/findings/loader-*.yaml 2>"$build/fuzz_replay.log" ||
  { rc=1; grep -E '^fuzz_scenario:|^Running:' "$build/fuzz_replay.log" >&2; }
"$build/tests/fuzz_epsim_run" --epsim "$build/epsim" --timeout-s 30 \
  --findings "$build/fuzz-findings-replay" --replay "$root"/tests/fuzz/findings/run-*.yaml || rc=1

corpus=$build/fuzz-corpus
mkdir -p "$corpus" "$build/fuzz-findings"
cp "$root"/scenarios/*.yaml "$root"/tests/scenarios/*.yaml "$root"/tests/fuzz/seeds/*.yaml "$corpus/"
echo "fuzz_scenario: $seconds s" >&2
# -timeout: an input that takes 10 s is a hang; inputs up to 64 KiB.
if ! "$build/tests/fuzz_scenario" -max_total_time="$seconds" -seed="$seed" -timeout=10 \
  -rss_limit_mb=2048 -max_len=65536 -dict="$root/tests/fuzz/scenario.dict" \
  -artifact_prefix="$build/fuzz-findings/" -print_final_stats=1 "$corpus" 2>"$build/fuzz_scenario.log"; then
  rc=1
  grep -B 30 -m 1 'Test unit written' "$build/fuzz_scenario.log" >&2
fi
grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$build/fuzz_scenario.log" >&2 || true

echo "fuzz_epsim_run: $seconds s" >&2
"$build/tests/fuzz_epsim_run" --epsim "$build/epsim" --seed "$seed" --time-s "$seconds" \
  --timeout-s 20 --findings "$build/fuzz-findings-run" || rc=1
exit $rc
