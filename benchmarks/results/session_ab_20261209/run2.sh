#!/bin/bash
# Second A/B of this session, after the array helpers (240fa8c): NEW = /work/main, OLD =
# /tmp/before (a9e2b52, the session's start). warm.py first compiles each tree's
# once-per-installation helpers (a blocked model included); then bench_latency with the
# peers (JAX jit, torch.compile) on PYTHONPATH.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/sab9b/out}; rm -rf $OUT; mkdir -p $OUT
PY=/work/main/.venv/bin/python
PEERS=${PEERS:-/work/jaxpkgs:/work/torchpkgs}
root() { if [ $1 = new ]; then echo /work/main; else echo /tmp/before; fi; }
for side in new old; do (cd /tmp && PYTHONPATH=$(root $side) GRAPHC_CACHE_DIR=$OUT/warm-$side $PY $HERE/warm.py) > $OUT/warm-$side.log 2>&1; done
(cd /work/main && PYTHONPATH=$PEERS $PY benchmarks/bench_latency.py --models tutorial,newton3,mlp32,relu64 --repeats 3 \
   --cold-repeats 1 --baseline /tmp/before --baseline-label "before (a9e2b52)" --out $OUT/latency2 \
   --chart $OUT/latency2.png) > $OUT/latency2.log 2>&1
cp $OUT/latency2.json $OUT/latency2.txt $OUT/warm-*.log $HERE/
cp $OUT/latency2.png $HERE/ 2>/dev/null
echo done
