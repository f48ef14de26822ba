#!/usr/bin/env bash
# Installs the Debian 12 packages epsim needs (when missing), then configures
# and builds it. Runs as root, or through sudo.
#   BUILD_DIR       build directory, relative to the repository (default: build)
#   EPSIM_SANITIZE  ON to build with AddressSanitizer + UBSan (default: OFF)
#   EPSIM_WERROR    ON to treat warnings as errors (default: ON)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/${BUILD_DIR:-build}"

packages=(cmake gcc g++ make pkg-config git libsimgrid-dev libgsl-dev libyaml-dev libcjson-dev
          gnuplot-nox libopenmpi-dev openmpi-bin time)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "epsim setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEPSIM_WERROR="${EPSIM_WERROR:-ON}" -DEPSIM_SANITIZE="${EPSIM_SANITIZE:-OFF}" >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
