"""Tutorial form 2 ("tensors"): the same fit in float32, on the device you choose.

torch picks a device with `device = torch.device("cpu")`; graphc picks a target:
"cpu" (one core), "parallel" (all cores) or "cuda". dtype="float32" stores data and
parameters in float32; sums still accumulate in float64.
"""

import math

import numpy as np

import graphc as gc


def main(steps: int = 2000, seed: int = 0, target: str = "parallel", dtype: str = "float32", verbose: bool = True):
    x = np.linspace(-math.pi, math.pi, 2000).astype(dtype)
    y = np.sin(x)
    rng = np.random.default_rng(seed)
    init = dict(zip("abcd", rng.standard_normal(4)))

    xs, ys = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * xs + c * xs**2 + d * xs**3 - ys) ** 2)

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
