"""Training conveniences: a progress bar and a callback (stepping mode), a checkpoint
that resumes bit for bit, and the loss curve saved as a PNG.

    python examples/training.py [output folder]

The checkpoint and the PNG go to the output folder, by default outputs/ (git-ignored).
"""

import math
import sys
from pathlib import Path

import numpy as np

import graphc as gc

out = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs")  # git-ignored
out.mkdir(parents=True, exist_ok=True)

x, y = gc.data("x"), gc.data("y")
a, b, c, d = gc.params("a b c d")
loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
x_data = np.linspace(-math.pi, math.pi, 2000)
data = {"x": x_data, "y": np.sin(x_data)}
init = {"a": 0.3, "b": -0.2, "c": 0.1, "d": 0.05}
adam = gc.Adam(lr=1e-3, schedule=gc.StepLR(step_size=5000, gamma=0.5))


def report(step, loss_value, params):
    if step % 5000 == 4999:
        print(f"  step {step}: loss {loss_value:.6f}")
    return math.isfinite(loss_value)  # returning False stops training


# first half, stepping mode: progress bar, callback; then save a checkpoint
first = gc.fit(loss, data, init, optimizer=adam, steps=10_000, log_every=100, progress=True, callback=report)
path = first.save(out / "cubic_checkpoint.npz")

# later (another process, say): load it and continue where it stopped
ck = gc.load(path)
second = gc.fit(loss, data, ck.params, optimizer=ck.optimizer, state=ck.state, steps=10_000, log_every=100)

# the same 20,000 steps in one compiled call give the very same numbers
whole = gc.fit(loss, data, init, optimizer=adam, steps=20_000, log_every=100)
assert whole.history == first.history + second.history and whole.params == second.params
print(f"resumed run == uninterrupted run; final loss {second.loss:.6f}, params {second.params}")

try:
    whole.plot_history(out / "training_history.png")
    print(f"saved {out / 'training_history.png'}")
except gc.GraphcError as e:  # matplotlib missing
    print(e)
