"""First compile + call of a k-class softmax classifier in a fresh process, empty cache (a child)."""
import json, os, sys, tempfile, time
os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()
import numpy as np
import graphc as gc
from graphc import nn
k, hidden = int(sys.argv[1]), int(sys.argv[2])
X, T = gc.data("X", shape=(None, 2)), gc.data("T", shape=(None, k))
layers = [nn.Linear(2, hidden, name="l1"), nn.ReLU(), nn.Linear(hidden, k, name="l2")] if hidden else [nn.Linear(2, k, name="l1")]
model = nn.Sequential(*layers)
rng = np.random.default_rng(0)
xs, onehot = rng.normal(size=(1000, 2)), np.eye(k)[rng.integers(0, k, 1000)]
t0 = time.perf_counter()
f = gc.compile(nn.cross_entropy(model(X), T))
r = f(X=xs, T=onehot, **model.init(0))
total = time.perf_counter() - t0
print(json.dumps({"k": k, "hidden": hidden, "schedule": f.schedule, "total_s": total, "loss": float(r.loss),
                  "source_chars": len(f.source), "longest_line": max(map(len, f.source.splitlines())),
                  "stages": {s: v for s, v in f.timings.items() if isinstance(v, float)}}))
