"""Tutorial form 1 ("numpy, manual gradients"): fit y = a + b x + c x^2 + d x^3 to sin(x).

In the tutorial you write the backward pass by hand. Here you write only the loss;
graphc derives the four gradients and compiles the whole training loop.
"""

import math

import numpy as np

import graphc as gc


def main(steps: int = 2000, seed: int = 0, target: str = "cpu", dtype: str = "float64", verbose: bool = True):
    x = np.linspace(-math.pi, math.pi, 2000)
    y = np.sin(x)
    rng = np.random.default_rng(seed)
    init = dict(zip("abcd", rng.standard_normal(4)))  # randomly initialize weights

    xs, ys = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    y_pred = a + b * xs + c * xs**2 + d * xs**3
    loss = gc.sum((y_pred - ys) ** 2)

    res = gc.fit(loss, data={"x": x, "y": y}, init=init, optimizer=gc.SGD(lr=1e-6),
                 steps=steps, log_every=100, target=target, dtype=dtype)
    if verbose:
        for t, value in res.history:
            print(t, value)
        p = res.params
        print(f"Result: y = {p['a']} + {p['b']} x + {p['c']} x^2 + {p['d']} x^3")
    return init, res


if __name__ == "__main__":
    main()
