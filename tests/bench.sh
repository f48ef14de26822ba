#!/usr/bin/env bash
# Times `epsim run` on the DeepSeek-V3 layer with Zipf-skewed routing at EP 8,
# 64, 256 and 1024 on HGX H800 nodes, and EP64 on one GB200 NVL72 rack.
# Prints wall seconds and peak resident memory per run. Not a test.
#   tests/bench.sh [path/to/epsim]   (default: build/epsim)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
epsim=${1:-$root/build/epsim}
[ -x /usr/bin/time ] || { echo "bench: needs GNU time (apt-get install time)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Zipf 0.8 over DeepSeek-V3's 256 experts gives a per-GPU max/mean load of 2.7
# at EP32, close to TensorRT-LLM's measured 2.56 for DeepSeek-R1 without EPLB
# (shared/research/data/load_balance.csv).
zipf=(--set workload.routing=zipf --set workload.zipf_exponent=0.8)
printf '%-26s %6s %8s %10s %12s %12s\n' "case" "GPUs" "flows" "wall_s" "peak_MiB" "layer_us"
run() { # name gpus scenario args...
  local name=$1 gpus=$2 scenario=$3
  shift 3
  /usr/bin/time -f "%e %M" -o "$out/time" "$epsim" run "$scenario" -o "$out/$name" "$@" \
    >"$out/$name.log" 2>&1 || { echo "bench: $name failed:"; cat "$out/$name.log"; exit 1; }
  read -r wall kib <"$out/time"
  local flows layer
  flows=$(sed -n 's/^# backend: simgrid\///p' "$out/$name/results.csv")
  layer=$(sed -n 's/^layer time \([0-9.]*\) .*/\1/p' "$out/$name.log")
  printf '%-26s %6d %8s %10.2f %12.0f %12s\n' "$name" "$gpus" "$flows" "$wall" \
    "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$layer"
}
for nodes in 1 8 32; do
  gpus=$((nodes * 8))
  run "dsv3-hgx-h800-ep$gpus" $gpus "$root/scenarios/default.yaml" \
    --set cluster.nodes=$nodes --set parallel.ep=$gpus "${zipf[@]}"
done
# DeepSeek-V3 has 256 experts, so EP1024 needs more: 1024 experts of the same shape.
run "dsv3-1024experts-ep1024" 1024 "$root/scenarios/default.yaml" --set cluster.nodes=128 \
  --set parallel.ep=1024 --set model.n_experts=1024 "${zipf[@]}"
run "dsv3-gb200-nvl72-ep64" 64 "$root/scenarios/deepseek-v3-gb200-nvl72-ep64.yaml" "${zipf[@]}"
# The same layer with one flow per GPU pair: same layer time, exact per-pair sharing.
run "dsv3-gb200-nvl72-ep64-pair" 64 "$root/scenarios/deepseek-v3-gb200-nvl72-ep64.yaml" \
  "${zipf[@]}" --set sim.flows=pair
