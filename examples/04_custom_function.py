"""Tutorial form 4 ("torch.autograd.Function"): y = a + b * P3(c + d x), P3(z) = (5 z^3 - 3 z) / 2.

A custom function is one line. SymPy derives its derivative, or you give it, as
`backward` does in torch; a given derivative is the one used. (The tutorial's
`a + v * p3(...)` means b; like the original, it starts from a=0, b=-1, c=0, d=0.3.)
"""

import math

import numpy as np

import graphc as gc

P3 = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2)  # SymPy derives P3'
P3_given = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2, derivative=lambda z: 1.5 * (5 * z**2 - 1))


def main(steps: int = 2000, derivative: str = "sympy", verbose: bool = True):
    x = np.linspace(-math.pi, math.pi, 2000)
    y = np.sin(x)
    init = {"a": 0.0, "b": -1.0, "c": 0.0, "d": 0.3}
    p3 = P3 if derivative == "sympy" else P3_given

    xs, ys = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    y_pred = a + b * p3(c + d * xs)
    loss = gc.sum((y_pred - ys) ** 2)

    res = gc.fit(loss, data={"x": x, "y": y}, init=init, optimizer=gc.SGD(lr=5e-6), steps=steps, log_every=100)
    if verbose:
        for t, value in res.history:
            print(t, value)
        p = res.params
        print(f"Result: y = {p['a']} + {p['b']} * P3({p['c']} + {p['d']} x)")
    return init, res


if __name__ == "__main__":
    main(derivative="sympy")
    main(derivative="given")
