#!/usr/bin/env bash
# The Python package's tests (scripts/test.sh runs this after the C++ suite):
#   scripts/test_python.sh [BUILD]   BUILD: the C++ build whose tools the tests compare
#                                    against (default build/)
# A virtual environment build/py-venv gets the build tools and pytest from the Python
# registry (once), `pip install .` builds the extension (incrementally, in build/python),
# then pytest runs python/tests with AMBISEG_CLI / AMBISEG_EVAL naming the built tools.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
VENV=${AMBISEG_PY_VENV:-build/py-venv}
PY=${AMBISEG_PYTHON:-python3}
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import nanobind, scikit_build_core, numpy, pytest" 2>/dev/null; then
  echo "python: creating $VENV (build tools, numpy and pytest from the Python registry)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "scikit-build-core>=0.10" "nanobind>=2.0" "numpy>=1.22" "pytest>=7"
fi
# No build isolation: the tools above build it, and build/python keeps the objects.
export CMAKE_BUILD_PARALLEL_LEVEL=${AMBISEG_JOBS:-$(nproc)}
"$VENV/bin/python" -m pip install --quiet --no-build-isolation .
# A wheel builds too (from the same build folder: no second compile).
rm -rf build/python/wheels
"$VENV/bin/python" -m pip wheel --quiet --no-build-isolation --no-deps -w build/python/wheels .
ls build/python/wheels/ambiseg-*.whl
export AMBISEG_CLI="$PWD/$BUILD/apps/ambiseg" AMBISEG_EVAL="$PWD/$BUILD/apps/ambiseg-eval"
[[ -x "$AMBISEG_CLI" ]] || unset AMBISEG_CLI
[[ -x "$AMBISEG_EVAL" ]] || unset AMBISEG_EVAL
cd "$VENV" && OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} ./bin/python -m pytest -q "$OLDPWD/python/tests"
