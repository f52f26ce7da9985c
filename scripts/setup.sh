#!/usr/bin/env bash
# Installs what ambiseg needs on Debian 12 (idempotent). As root it runs apt-get; as any
# other user it prints the exact apt-get line and stops.
set -euo pipefail
PACKAGES=(build-essential cmake ccache pkg-config
  libxtensor-dev libopenblas-openmp-dev
  nlohmann-json3-dev catch2 libbenchmark-dev libpng-dev libjpeg-dev libstb-dev
  libopenmpi-dev openmpi-bin python3-yaml python3-venv)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "ambiseg setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "ambiseg setup: missing packages. Run as root:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
