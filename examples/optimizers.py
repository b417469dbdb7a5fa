"""The tutorial's cubic fit to sin(x) with every graphc optimizer, compiled.

Prints each optimizer's loss after 2000 steps, then saves two PNGs (matplotlib needed):
optimizers_history.png (loss curves) and optimizers_fit.png (data vs the Adam model).

    python examples/optimizers.py [output folder]   (default: outputs/, git-ignored)
"""

import math
import sys
from pathlib import Path

import numpy as np

import graphc as gc

out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs")  # git-ignored
out.mkdir(parents=True, exist_ok=True)

x_data = np.linspace(-math.pi, math.pi, 2000)
y_data = np.sin(x_data)
x, y = gc.data("x"), gc.data("y")
a, b, c, d = gc.params("a b c d")
loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
data = {"x": x_data, "y": y_data}
init = {"a": 0.3, "b": -0.2, "c": 0.1, "d": 0.05}

optimizers = {
    "SGD": gc.SGD(lr=1e-6),
    "SGD momentum": gc.SGD(lr=1e-6, momentum=0.9, nesterov=True),
    "Adam": gc.Adam(lr=1e-2, schedule=gc.CosineAnnealingLR(T_max=2000)),
    "AdamW": gc.AdamW(lr=1e-2, weight_decay=1e-2),
    "RMSprop": gc.RMSprop(lr=1e-3),
    "Adagrad": gc.Adagrad(lr=0.1),
}
results = {}
for name, opt in optimizers.items():
    results[name] = gc.fit(loss, data, init, optimizer=opt, steps=2000, log_every=20)
    print(f"{name:13s} loss after 2000 steps: {results[name].loss:.6f}")

newton = gc.fit(loss, data, init, optimizer=gc.Newton(), steps=3, log_every=1)
print(f"{'Newton':13s} loss after    3 steps: {newton.history[-1][1]:.6f}  (exact Hessian)")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("matplotlib is not installed: pip install 'graphc[plot]' to save the plots")

fig, ax = plt.subplots(figsize=(7, 4.5))
for name, res in results.items():
    res.plot_history(ax=ax)
    ax.lines[-1].set_label(name)
ax.set_title("cubic fit to sin(x): loss per optimizer")
ax.legend()
fig.savefig(out / "optimizers_history.png", dpi=100, bbox_inches="tight")

p = results["Adam"].params
gc.plot_fit(x_data, y_data, lambda x, a, b, c, d: a + b * x + c * x**2 + d * x**3, p,
            path=out / "optimizers_fit.png", label="Adam, 2000 steps")
print(f"saved {out / 'optimizers_history.png'} and {out / 'optimizers_fit.png'}")
