"""Compile what each tree compiles once per installation before timing: graphc's helpers
(graphc/codegen/helpers, both dtypes) and the Levenberg-Marquardt kernel (graphc/lsq/levmar.py)."""
import numpy as np
import graphc as gc
from graphc import nn
xs = np.linspace(0.1, 3, 200)
X, T = gc.data("X", shape=(None, 2)), gc.data("T", shape=(None, 3))
model = nn.Sequential(nn.Linear(2, 4, name="l1"), nn.Tanh(), nn.Linear(4, 3, name="l2"), nn.ReLU())
loss = nn.cross_entropy(model(X), T) + gc.sum(gc.log1p(gc.exp(-model(X) ** 2)))
rng = np.random.default_rng(0)
data = {"X": rng.normal(size=(64, 2)), "T": np.eye(3)[rng.integers(0, 3, 64)]}
for dtype in ("float64", "float32"):
    gc.fit(loss, data, model.init(0), optimizer=gc.Adam(lr=1e-3), steps=2, dtype=dtype)
    gc.fit(loss, data, model.init(0), optimizer=gc.Adam(lr=1e-3), steps=2, dtype=dtype, batch_size=16)
x, y = gc.data("x"), gc.data("y")
b1, b2, b3 = gc.params("b1 b2 b3")
gc.fit(gc.sum((b1 * (1 - gc.exp(-b2 * x)) + b3 - y) ** 2), {"x": xs, "y": np.sin(xs)}, {"b1": 1.0, "b2": 1.0, "b3": 0.0},
       optimizer=gc.Newton(damping=1e-3), steps=2)
a, b, c, d = gc.params("a b c d")
gc.least_squares(y - (a / (1 + gc.exp(-b * (x - c))) + d), {"x": xs, "y": np.sin(xs)}, dict(a=1.0, b=1.0, c=0.0, d=0.0))
print("warm")
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
