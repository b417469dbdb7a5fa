#!/bin/bash
# A/B in one run: NEW = /work/main, OLD = /tmp/before (1349b16). Medians where repeated.
set -u
OUT=/tmp/ab/out; rm -rf $OUT; mkdir -p $OUT
PY=/work/main/.venv/bin/python
for model in tutorial 3-32-1 3-64-1 3-256-256-1; do
  for rep in 1 2 3; do
    for side in new old; do
      if [ $side = new ]; then root=/work/main; else root=/tmp/before; fi
      (cd /tmp && PYTHONPATH=$root $PY /tmp/ab/compile_times.py $model) > $OUT/compile-$side-$model-$rep.json 2>/dev/null
    done
  done
done
for side in new old; do
  if [ $side = new ]; then root=/work/main; else root=/tmp/before; fi
  (cd $root && PYTHONPATH=$root GRAPHC_CACHE_DIR=$OUT/cache-$side $PY -m graphc bench --quick --only tutorial --no-warm --no-progress --out $OUT/bench-$side) > $OUT/bench-$side.log 2>&1
  (cd $root && PYTHONPATH=$root GRAPHC_CACHE_DIR=$OUT/cache-$side $PY benchmarks/bench_mlp.py --repeats 5 --out $OUT/mlp-$side) > $OUT/mlp-$side.log 2>&1
done
echo done
