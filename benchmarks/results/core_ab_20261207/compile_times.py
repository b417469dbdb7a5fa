"""First compile + first call in a fresh process with an empty cache (run as a child)."""
import json, os, sys, tempfile, time
os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()
t0 = time.perf_counter()
import numpy as np
import graphc as gc
from graphc import nn
t_import = time.perf_counter() - t0
which = sys.argv[1]
rng = np.random.default_rng(0)
if which == "tutorial":
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    xs = np.linspace(-3, 3, 2000)
    data, init = {"x": xs, "y": np.sin(xs)}, dict(a=0.1, b=0.2, c=0.3, d=0.4)
else:
    widths = [int(w) for w in which.split("-")]
    X, y = gc.data("X", shape=(None, widths[0])), gc.data("y")
    layers = []
    for k, (p, q) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(p, q, name=f"l{k}"))
        if k < len(widths) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    loss = nn.mse_loss(gc.flatten(model(X)), y, reduction="sum")
    data, init = {"X": rng.standard_normal((2000, widths[0])), "y": rng.standard_normal(2000)}, model.init(0)
t1 = time.perf_counter()
f = gc.compile(loss)
r = f(**data, **init)
t_compile = time.perf_counter() - t1
t2 = time.perf_counter()
res = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=1e-6), steps=10, log_every=5)
t_fit = time.perf_counter() - t2
print(json.dumps({"import": t_import, "compile+call": t_compile, "first fit": t_fit, "schedule": f.schedule}))
