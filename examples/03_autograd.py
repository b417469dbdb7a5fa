"""Tutorial form 3 ("autograd"): gradients computed for you, the update written by you.

`gc.compile(loss)` is graphc's `loss.backward()`: one call returns the loss and every
gradient. This form keeps the tutorial's Python loop and its manual SGD update, so each
step is one call into compiled code; `gc.fit` (form 1) compiles the loop as well.
"""

import math

import numpy as np

import graphc as gc


def main(steps: int = 2000, seed: int = 0, verbose: bool = True):
    x = np.linspace(-math.pi, math.pi, 2000)
    y = np.sin(x)
    rng = np.random.default_rng(seed)
    p = dict(zip("abcd", rng.standard_normal(4)))
    init = dict(p)

    xs, ys = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * xs + c * xs**2 + d * xs**3 - ys) ** 2)
    f = gc.compile(loss, wrt=[a, b, c, d])

    learning_rate = 1e-6
    history = []
    for t in range(steps):
        r = f(x=x, y=y, **p)  # forward and backward in one fused pass
        if t % 100 == 99:
            history.append((t, r.loss))
            if verbose:
                print(t, r.loss)
        for name, g in r.grads.items():
            p[name] -= learning_rate * g
    if verbose:
        print(f"Result: y = {p['a']} + {p['b']} x + {p['c']} x^2 + {p['d']} x^3")
    return init, p, history


if __name__ == "__main__":
    main()
