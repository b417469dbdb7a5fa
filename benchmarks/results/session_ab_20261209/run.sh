#!/bin/bash
# A/B in one run: NEW = /work/main (this session's end), OLD = /tmp/before (a9e2b52, its start).
# Each pair runs back to back, so both see the same load. 2 shared cores: medians.
# PEERS: a folder holding jax + optimistix (and torch) installed with pip --target, for the
# peer rows only (they are not graphc dependencies).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/sab9/out}; rm -rf $OUT; mkdir -p $OUT
PY=/work/main/.venv/bin/python
PEERS=${PEERS:-/work/jaxpkgs:/work/torchpkgs}
root() { if [ $1 = new ]; then echo /work/main; else echo /tmp/before; fi; }
for side in new old; do (cd /tmp && PYTHONPATH=$(root $side) GRAPHC_CACHE_DIR=$OUT/warm-$side $PY $HERE/warm.py) > $OUT/warm-$side.log 2>&1; done
# BLAS threads: the dense least-squares path and blocked nets, default environment (no
# OPENBLAS_NUM_THREADS), on an idle machine and with another process busy on one core
for load in idle busy; do
  if [ $load = busy ]; then (timeout 600 $PY -c "while 1: pass" &) ; sleep 1; fi
  for rep in 1 2; do
    for side in new old; do
      for case in "glm 300 2e4" "linear 500 1e5"; do
        (cd /tmp && PYTHONPATH=$(root $side) GRAPHC_CACHE_DIR=$OUT/cache-$side $PY $HERE/large_fit.py $case 0) >> $OUT/large-$side-$load.txt 2>&1
      done
      for model in mlp32 relu64; do
        (cd /tmp && PYTHONPATH=$(root $side) GRAPHC_CACHE_DIR=$OUT/cache-$side $PY $HERE/blocked_fit.py $model) >> $OUT/blocked-$side-$load.txt 2>&1
      done
    done
  done
  if [ $load = busy ]; then pkill -f "while 1: pass"; fi
done
# least squares against scipy and JAX (this tree)
(cd /tmp && PYTHONPATH=/work/main:$PEERS $PY /work/main/benchmarks/bench_lsq.py --sections big,small,compile \
   --big-repeats 1 --compile-repeats 3 --out $OUT/lsq) > $OUT/lsq.log 2>&1
# first compiles, warm overheads, JAX jit and torch.compile (bench_latency's peers), both trees
(cd /work/main && PYTHONPATH=$PEERS $PY benchmarks/bench_latency.py --models tutorial,newton3,mlp32,relu64 --repeats 3 \
   --cold-repeats 1 --baseline /tmp/before --baseline-label "before (a9e2b52)" --out $OUT/latency \
   --chart $OUT/latency.png) > $OUT/latency.log 2>&1
cp $OUT/large-*.txt $OUT/blocked-*.txt $OUT/latency.json $OUT/latency.txt $HERE/
cp $OUT/latency.png $HERE/ 2>/dev/null
cp $OUT/lsq/*.md $HERE/lsq.md; cp $OUT/lsq/*.json $HERE/lsq.json
echo done
