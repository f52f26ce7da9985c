#!/usr/bin/env bash
# The PyTorch 2.x peer's Python: a virtual environment with torch from the Python registry
# (PyPI), created on first use and reused after. Prints the interpreter's path on stdout.
#
#   benchmarks/peer/setup_venv.sh            → build/peer-venv (AMBISEG_PEER_VENV overrides)
#   AMBISEG_PEER_TORCH="torch==2.15.0"       pins another version (default: the newest 2.x)
#
# PyPI's Linux wheels of torch carry the CUDA libraries (about 3 GB installed); the CPU
# benchmarks do not use them, but the registry offers no CPU-only wheel.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${AMBISEG_PEER_VENV:-$root/build/peer-venv}
want=${AMBISEG_PEER_TORCH:-torch>=2,<3}
python=${AMBISEG_PEER_PYTHON:-python3}
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  echo "peer: creating $venv with $want (one-time, downloads from PyPI)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet "$want" numpy >&2
fi
"$venv/bin/python" - <<'PY' >&2
import torch
major = int(torch.__version__.split(".")[0])
if major < 2:
    raise SystemExit(f"peer: torch {torch.__version__} in the venv; the peer wants 2.x")
print(f"peer: torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
PY
echo "$venv/bin/python"
