"""A blocked model's warm gc.fit (300 steps), median of 5, after one fit that compiles:
relu64 (2-64-64-3, Adam, batches of 128) or mlp32 (3-32-1, N=2000) of benchmarks/latency_models.py."""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import latency_models as lm
import graphc as gc
name = sys.argv[1]
loss, kw, hand = lm.MODELS[name]()
kw["steps"] = 300
gc.fit(loss, **kw)
ts = []
for _ in range(5):
    t = time.perf_counter(); gc.fit(loss, **kw); ts.append(time.perf_counter() - t)
print(name, "warm fit median %.1f ms" % (1e3 * sorted(ts)[2]))
