#!/bin/bash
# A/B in one run: NEW = /work/main (this session's end), OLD = /tmp/before (f2bc4de, its start).
# Each pair runs back to back, so both see the same load. 2 shared cores: medians.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/sab/out}; rm -rf $OUT; mkdir -p $OUT
PY=/work/main/.venv/bin/python
root() { if [ $1 = new ]; then echo /work/main; else echo /tmp/before; fi; }
for model in tutorial 3-32-1 3-64-1 3-256-256-1; do
  reps=3; [ $model = 3-256-256-1 ] && reps=2
  for rep in $(seq $reps); do
    for side in new old; do
      (cd /tmp && PYTHONPATH=$(root $side) $PY $HERE/../core_ab_20261207/compile_times.py $model) > $OUT/compile-$side-$model-$rep.json 2>/dev/null
    done
  done
done
for side in new old; do
  r=$(root $side)
  (cd $r && PYTHONPATH=$r GRAPHC_CACHE_DIR=$OUT/cache-$side $PY -m graphc bench --quick --only tutorial --no-warm --no-progress --out $OUT/bench-$side) > $OUT/bench-$side.log 2>&1
done
for side in new old; do
  r=$(root $side)
  (cd $r && PYTHONPATH=$r GRAPHC_CACHE_DIR=$OUT/cache-$side $PY benchmarks/bench_mlp.py --repeats 5 --wide-repeats 3 --out $OUT/mlp-$side) > $OUT/mlp-$side.log 2>&1
done
(cd /work/main && $PY benchmarks/bench_latency.py --models tutorial,newton3,mlp32,relu64 --repeats 3 --cold-repeats 1 \
   --no-peers --baseline /tmp/before --baseline-label "before (f2bc4de)" --out $OUT/latency) > $OUT/latency.log 2>&1
for f in $OUT/compile-*.json; do cp $f $HERE/; done
for side in new old; do cp $OUT/bench-$side/results.json $HERE/bench-$side.json; cp $OUT/mlp-$side/*.json $HERE/mlp-$side.json; done
cp $OUT/latency.json $OUT/latency.txt $HERE/
$PY $HERE/summarize.py $HERE
echo done
