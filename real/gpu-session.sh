#!/usr/bin/env bash
# Everything issue 3 needs from a GPU machine, in one command (device time is scarce):
#   bash real/gpu-session.sh OUTDIR
# from the repository root of a copy of the working tree on the GPU machine. It
#  1. probes the machine (GPU, driver, nvcc, NCCL, MPI, libyaml, PyTorch),
#  2. unpacks libyaml from .debs/ when the machine has none (see real/README.md),
#  3. builds in build-gpu/ (Release, sm_90; no -Werror: another distribution's compiler),
#  4. runs the test suite (the GPU tests moe_cuda, real_cuda, real_nccl included),
#  5. runs the kernel benchmark and its PyTorch twin, and joins them against the targets,
#  6. runs the calibration sweep (real/measurements/<gpu>/sweep.csv is this file),
#  7. runs one MoE layer for real with the NCCL backend (Mixtral, DeepSeek-V3) at EP1,
#     and DeepSeek-V3 at EP4 on four ranks sharing the GPU (--backend cuda-ipc).
# Each step runs even when an earlier one failed, with a time limit, and is logged.
# OUTDIR gets at most 8 files (the device tool's limit): summary.txt, the CSVs and
# logs.tar.gz with every log and output directory.
set -uo pipefail
out=${1:?usage: real/gpu-session.sh OUTDIR}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
work=$(mktemp -d)
summary=$out/summary.txt
: >"$summary"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
jobs=$(nproc)

note() { echo "$*" | tee -a "$summary"; }
# step NAME LIMIT_S CMD...: runs CMD with a time limit, logs to $work/NAME.log, records the outcome.
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  echo "=== $name: $*" >"$work/$name.log"
  timeout "$limit" "$@" >>"$work/$name.log" 2>&1
  rc=$?
  note "$(printf '%-14s rc=%-3d %4ds  %s' "$name" "$rc" $(($(date +%s) - t0)) "$*")"
  return $rc
}

probe() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  for c in cmake gcc mpicc mpirun pkg-config python3; do printf '%-10s %s\n' "$c" "$(command -v $c)"; done
  mpirun --version 2>&1 | head -1
  ldconfig -p | grep -E 'libnccl|libyaml|libmpi\.|libcublas\.' || true
  ls /usr/include/nccl.h /usr/local/cuda/include/nccl.h /usr/include/yaml.h 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())'
}
step probe 60 probe
note "$(grep -A1 '^name' "$work/probe.log" | tail -1)"

prefix=()
if [ ! -e /usr/include/yaml.h ] && ls .debs/libyaml*.deb >/dev/null 2>&1; then
  for f in .debs/libyaml*.deb; do dpkg -x "$f" /opt/yaml; done
  prefix+=(/opt/yaml/usr)
  export LD_LIBRARY_PATH=/opt/yaml/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  note "libyaml: unpacked from .debs into /opt/yaml"
fi
if [ ! -e /usr/include/nccl.h ] && [ ! -e /usr/local/cuda/include/nccl.h ]; then
  # PyTorch's NCCL wheel (include/ and lib/libnccl.so.2) when the system has none.
  nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null)
  if [ -n "$nccl_dir" ]; then
    prefix+=("$nccl_dir")
    export LD_LIBRARY_PATH=$nccl_dir/lib:${LD_LIBRARY_PATH:-}
    note "NCCL: from the Python wheel at $nccl_dir"
  fi
fi
prefix_list=$(IFS=';'; echo "${prefix[*]:-}")

step configure 300 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_PREFIX_PATH=$prefix_list"
note "$(grep 'epsim:' "$work/configure.log")"
step build 480 cmake --build build-gpu -j "$jobs"
step ctest 400 ctest --test-dir build-gpu --output-on-failure -j 4
grep -E 'tests passed|\*\*\*|Not Run' "$work/ctest.log" | tee -a "$summary" >/dev/null

bench=build-gpu/bench_kernels
if step bench_kernels 300 "$bench" -o "$out/bench_kernels.csv"; then
  step bench_torch 300 python3 tests/bench_kernels_torch.py --ours "$out/bench_kernels.csv" \
    -o "$out/bench_torch.csv"
  # The joined table against the issue's targets, as the closing note quotes it.
  sed -n '/^d2d copy bandwidth/,$p' "$work/bench_torch.log" >>"$summary"
fi

real=build-gpu/real/epsim-real
gpu_dir=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -c 'A-Za-z0-9\n' '-' |
          tr 'A-Z' 'a-z' | sed 's/--*/-/g; s/-$//')
step sweep 400 mpirun -np 1 "$real" scenarios/default.yaml --backend nccl --sweep \
  --sweep-experts 8,32 --sweep-tokens 8,16,32,64,128,256,512,1024,2048 -o "$work/sweep"
[ -f "$work/sweep/sweep.csv" ] && cp "$work/sweep/sweep.csv" "$out/sweep.csv" &&
  note "sweep.csv: commit it as real/measurements/$gpu_dir/sweep.csv"

step mixtral_ep1 300 mpirun -np 1 "$real" scenarios/mixtral-8x7b-hgx-h100-ep8.yaml \
  --backend nccl --set parallel.ep=1 --set workload.tokens_per_gpu=4096 -o "$work/mixtral-ep1"
step dsv3_ep1 300 mpirun -np 1 "$real" scenarios/default.yaml --backend nccl \
  --set parallel.ep=1 --check-tokens 4 -o "$work/dsv3-ep1"
# Four ranks sharing the GPU (NCCL refuses that): the multi-rank GPU path at
# DeepSeek-V3's shapes, fp8 dispatch, rows moved by CUDA IPC copies.
step dsv3_ipc_ep4 300 mpirun -np 4 "$real" scenarios/default.yaml --backend cuda-ipc \
  --set parallel.ep=4 --set workload.tokens_per_gpu=1024 -o "$work/dsv3-ipc-ep4"
for run in mixtral-ep1 dsv3-ep1; do
  [ -f "$work/$run/results.csv" ] && cp "$work/$run/results.csv" "$out/$run.results.csv"
done

tar -czf "$out/logs.tar.gz" -C "$work" . && rm -rf "$work"
note "logs: logs.tar.gz"
