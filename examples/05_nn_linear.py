"""Tutorial form 5 ("nn.Module"): nn.Linear(3, 1) on (x, x^2, x^3) with MSELoss(reduction="sum").

`x[:, None] ** np.array([1, 2, 3])` broadcasts (N, 1) against (3,) to (N, 3), as
`x.unsqueeze(-1).pow(p)` does in torch. The layer's parameters are named
"lin.weight" (1, 3) and "lin.bias" (1,); `lin.init(seed)` gives torch's default start.
"""

import math

import numpy as np

import graphc as gc


def main(steps: int = 2000, seed: int = 0, verbose: bool = True):
    x = np.linspace(-math.pi, math.pi, 2000)
    y = np.sin(x)

    xs, ys = gc.data("x"), gc.data("y")
    xx = xs[:, None] ** np.array([1, 2, 3])
    lin = gc.nn.Linear(3, 1, name="lin")
    y_pred = gc.flatten(lin(xx))
    loss = gc.nn.mse_loss(y_pred, ys, reduction="sum")

    init = lin.init(seed)
    res = gc.fit(loss, data={"x": x, "y": y}, init=init, optimizer=gc.SGD(lr=1e-6), steps=steps, log_every=100)
    if verbose:
        for t, value in res.history:
            print(t, value)
        w, bias = res.params["lin.weight"], res.params["lin.bias"]
        print(f"Result: y = {bias[0]} + {w[0, 0]} x + {w[0, 1]} x^2 + {w[0, 2]} x^3")
    return init, res


if __name__ == "__main__":
    main()
