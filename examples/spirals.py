"""A classifier: two interleaved spirals, cross-entropy on class logits, accuracy printed.

The data are generated here: class k's points lie on the spiral r = t, angle t + k*pi, with
noise. Model: Linear(2, 64) -> tanh -> Linear(64, 2); the targets are the class labels
themselves (ints bound as data, as torch's CrossEntropyLoss takes them); mini-batches of 128,
shuffled each epoch; gc.nn.accuracy scores the predictions.
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
    X, y = gc.data("X", shape=(None, 2)), gc.data("y")  # y: class indices 0/1
    model = nn.Sequential(nn.Linear(2, width, name="l1"), nn.Tanh(), nn.Linear(width, 2, name="l2"))
    logits = model(X)
    loss = nn.cross_entropy(logits, y)
    res = gc.fit(loss, data={"X": xs, "y": labels}, init=model.init(seed),
                 optimizer=gc.Adam(lr=lr), epochs=epochs, batch_size=batch_size, shuffle=True, seed=seed,
                 log_every=max(1, epochs * -(-n // batch_size) // 10))
    accuracy = nn.accuracy(predict(res.params, xs), labels)
    if verbose:
        for t, value in res.history:
            print(f"step {t:6d}  batch cross-entropy {value:.4f}")
        print(f"training accuracy: {accuracy:.1%} on {n} points")
    return res, accuracy


def predict(params: dict, xs: np.ndarray) -> np.ndarray:
    """Class logits (N, 2) from the trained parameters (plain numpy forward pass)."""
    h = np.tanh(xs @ params["l1.weight"].T + params["l1.bias"])
    return h @ params["l2.weight"].T + params["l2.bias"]


if __name__ == "__main__":
    main()
