"""A classifier: two interleaved spirals, cross-entropy on class logits, held-out accuracy.

The data are generated here: class k's points lie on the spiral r = t, angle t + k*pi, with
noise; one fifth is held out. Model: Linear(2, 64) -> tanh -> Linear(64, 2); the targets are
the class labels themselves (ints bound as data, as torch's CrossEntropyLoss takes them);
mini-batches of 128, shuffled each epoch; the loss on the held-out points is logged as it
trains (val_data); res.predict runs the trained model on them, and gc.nn.accuracy scores it.
"""

import math

import numpy as np

import graphc as gc
from graphc import nn


def spirals(n: int, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two interleaved spirals in 2-D and their labels 0/1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * math.pi  # denser towards the centre
    angle = t + labels * math.pi
    xs = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * math.pi)
    return xs + rng.normal(0.0, noise / (3 * math.pi), xs.shape), labels


def main(n: int = 4000, width: int = 64, epochs: int = 300, batch_size: int = 128, lr: float = 0.01,
         seed: int = 0, verbose: bool = True):
    xs, labels = spirals(n, seed=seed)
    held = n // 5  # the last fifth: never trained on
    train = {"X": xs[held:], "y": labels[held:]}
    X, y = gc.data("X", shape=(None, 2)), gc.data("y")  # y: class indices 0/1
    model = nn.Sequential(nn.Linear(2, width, name="l1"), nn.Tanh(), nn.Linear(width, 2, name="l2"))
    logits = model(X)
    loss = nn.cross_entropy(logits, y)
    res = gc.fit(loss, data=train, init=model.init(seed), optimizer=gc.Adam(lr=lr), epochs=epochs,
                 batch_size=batch_size, shuffle=True, seed=seed,
                 log_every=max(1, epochs * -(-(n - held) // batch_size) // 10),
                 val_data={"X": xs[:held], "y": labels[:held]})
    accuracy = nn.accuracy(res.predict(logits, X=xs[:held]), labels[:held])  # the compiled forward pass
    if verbose:
        for (t, value), (_, val) in zip(res.history, res.val_history):
            print(f"step {t:6d}  batch cross-entropy {value:.4f}  held-out {val:.4f}")
        print(f"held-out accuracy: {accuracy:.1%} on {held} points")
    return res, accuracy


if __name__ == "__main__":
    main()
