#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the cuda tests on the hardware, then the GPU benchmark.
# Everything goes to benchmarks/results/gpu_check_<UTC time>.log (and gpu_bench_<time>.json).
#
#   bash benchmarks/gpu_check.sh          # real GPU: about 3-5 minutes (at most 200 s + 300 s), compiles included
#   bash benchmarks/gpu_check.sh --sim    # no GPU: Numba's CUDA simulator, tiny sizes (proves the script)
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mode=gpu
if [ "${1:-}" = "--sim" ] || [ "${1:-}" = "--quick" ]; then
    mode=sim
    export NUMBA_ENABLE_CUDASIM=1
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benchmarks/results
log=benchmarks/results/gpu_check_${mode}_$stamp.log
json=benchmarks/results/gpu_bench_${mode}_$stamp.json
status=0
{
    echo "== gpu_check $mode $stamp, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    if ! "$PY" -c "import numba, numpy, sympy, pytest" 2>/dev/null; then
        echo "missing packages for $PY: needs numba numpy sympy pytest (and numba-cuda[cu12] for a GPU)"
        exit 2
    fi
    "$PY" -c "import numba, numba.cuda as c; print('numba', numba.__version__, '| numba.cuda:', getattr(c, 'implementation', '?'), '| available:', c.is_available())"

    echo "== tests: pytest -m cuda tests/test_cuda.py"
    if [ $mode = sim ]; then limit=900; else limit=200; fi
    timeout $limit "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider || status=1

    echo "== benchmark: benchmarks/gpu_bench.py"
    if [ $mode = sim ]; then
        timeout 600 "$PY" benchmarks/gpu_bench.py --sim --out "$json" || status=1
    else
        timeout 300 "$PY" benchmarks/gpu_bench.py --out "$json" || status=1
    fi
    echo "== exit status $status (results: $json)"
    exit $status
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
