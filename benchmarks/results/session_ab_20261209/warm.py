"""Compile what each tree compiles once per installation before timing: last session's warm.py
(graphc's math helpers in both dtypes, the Levenberg-Marquardt kernel), then a blocked model,
for the array helpers' signatures."""
import os

import numpy as np

import graphc as gc
from graphc import nn

HERE = os.path.dirname(os.path.abspath(__file__))
exec(open(os.path.join(HERE, "..", "session_ab_20261208", "warm.py")).read())
rng = np.random.default_rng(0)
# a blocked model (a layer of 64 units or more), with and without mini-batches, in both dtypes:
# compiles graphc's array helpers for the layouts blocked plans use (once per installation,
# as a machine's first wide model would); not one of bench_latency's models
X4, T2 = gc.data("X", shape=(None, 4)), gc.data("T", shape=(None, 2))
wide = nn.Sequential(nn.Linear(4, 80, name="w1"), nn.Tanh(), nn.Linear(80, 2, name="w2"))
wloss = nn.cross_entropy(wide(X4), T2)
wdata = {"X": rng.normal(size=(300, 4)), "T": np.eye(2)[rng.integers(0, 2, 300)]}
for dtype in ("float64", "float32"):
    gc.fit(wloss, wdata, wide.init(0), optimizer=gc.SGD(lr=1e-3), steps=2, dtype=dtype)
    gc.fit(wloss, wdata, wide.init(0), optimizer=gc.SGD(lr=1e-3), steps=2, dtype=dtype, batch_size=64, shuffle=True)
print("warm (blocked)")
