"""Least squares' dense path: graphc's first and warm fit of bench_lsq's large models
(argv: linear|glm P N lm_max_p), in this process's BLAS environment (OPENBLAS_NUM_THREADS
unset): the lines of benchmarks/bench_lsq.py's LARGE_CHILD up to graphc's two fits."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import bench_lsq  # noqa: E402

code = bench_lsq.LARGE_CHILD.split('rows["graphc cpu"]')[0]
code += 'print(P, n, "first %.2f warm %.3f" % (first, warm))\n'
exec(compile(code, "LARGE_CHILD", "exec"))
