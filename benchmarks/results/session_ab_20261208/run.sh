#!/bin/bash
# A/B in one run: NEW = /work/main (this session's end), OLD = /tmp/before (671bd5b, its start).
# Each pair runs back to back, so both see the same load. 2 shared cores: medians.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/sab8/out}; rm -rf $OUT; mkdir -p $OUT
PY=/work/main/.venv/bin/python
root() { if [ $1 = new ]; then echo /work/main; else echo /tmp/before; fi; }
for side in new old; do (cd /tmp && PYTHONPATH=$(root $side) GRAPHC_CACHE_DIR=$OUT/warm-$side $PY $HERE/warm.py) > $OUT/warm-$side.log 2>&1; done
# gc.compile + f(...) (evaluate's first compile), fresh processes
for model in tutorial 3-32-1; do
  for rep in 1 2 3; do
    for side in new old; do
      (cd /tmp && PYTHONPATH=$(root $side) $PY $HERE/../core_ab_20261207/compile_times.py $model) > $OUT/compile-$side-$model-$rep.json 2>/dev/null
    done
  done
done
# k-class softmax classifiers: 3 and 10 classes, a linear model and a 2-64-k relu net
for cfg in "3 0" "10 0" "3 64" "10 64"; do
  set -- $cfg
  for side in new old; do
    (cd /tmp && PYTHONPATH=$(root $side) timeout 120 $PY $HERE/classes.py $1 $2) > $OUT/classes-$side-$1-$2.json 2>/dev/null \
      || echo "{\"k\": $1, \"hidden\": $2, \"timeout_s\": 120}" > $OUT/classes-$side-$1-$2.json
  done
done
# least squares, first fits of 4, 7, 10 parameters (fresh processes)
for side in new old; do
  r=$(root $side)
  (cd /tmp && PYTHONPATH=$r $PY /work/main/benchmarks/bench_lsq.py --sections compile --compile-repeats 3 --out $OUT/lsq-$side) > $OUT/lsq-$side.log 2>&1
done
# the tutorial loop against hand-written njit (runtime of the compiled loops)
for side in new old; do
  r=$(root $side)
  (cd $r && PYTHONPATH=$r GRAPHC_CACHE_DIR=$OUT/cache-$side $PY -m graphc bench --quick --only tutorial --no-warm --no-progress --out $OUT/bench-$side) > $OUT/bench-$side.log 2>&1
done
(cd /work/main && $PY benchmarks/bench_latency.py --models tutorial,newton3,mlp32,relu64 --repeats 3 --cold-repeats 1 \
   --no-peers --baseline /tmp/before --baseline-label "before (671bd5b)" --out $OUT/latency) > $OUT/latency.log 2>&1
cp $OUT/compile-*.json $OUT/classes-*.json $HERE/
for side in new old; do cp $OUT/bench-$side/results.json $HERE/bench-$side.json; cp $OUT/lsq-$side/*.md $HERE/lsq-$side.md 2>/dev/null; cp $OUT/lsq-$side/*.json $HERE/lsq-$side.json 2>/dev/null; done
cp $OUT/latency.json $OUT/latency.txt $HERE/
echo done
