"""graphc: write the math once; SymPy derives exact gradients; Numba runs one fused loop.

    import graphc as gc
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    f = gc.compile(loss)                 # print(f.source) shows the generated code
    res = gc.fit(loss, data={"x": xs, "y": ys}, init={...}, optimizer=gc.SGD(lr=1e-6), steps=2000)
"""

from .version import __version__

from .runtime import collector as _collector  # noqa: E402

# the garbage collector pauses during this import (see runtime/collector.py: ~0.3 s of a cold start)
with _collector.paused():
    from .runtime import threads  # noqa: E402

    threads.configure()  # a threadsafe Numba threading layer, before any parallel code runs

    from . import nn  # noqa: E402
    from .ir import interop  # noqa: E402  numpy functions on nodes (np.sin(node) ...)
    from .compile import Compiled, compile  # noqa: E402
    from .errors import (  # noqa: E402
        BindingError, DTypeError, GraphcError, InvalidName, NonFiniteLoss, ShapeError, TargetError,
        UnsupportedError,
    )
    from .ir.graph import Graph, N, Node  # noqa: E402
    from .ir.ops import (  # noqa: E402
        abs, broadcast_to, concatenate, constant, cos, data, einsum, exp, flatten, function, gelu, log,
        matmul, maximum, mean, minimum, param, params, relu, reshape, sigmoid, sin, softplus, sqrt,
        stack, stop_gradient, sum, tan, tanh, transpose, where,
    )
    from .ir.ops import (  # noqa: E402  numpy's math functions (issue #16), with torch/math aliases
        acos, acosh, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, asin, asinh, atan, atan2,
        atanh, ceil, clip, cosh, erf, erfc, exp2, expm1, floor, hypot, log1p, log2, log10, logaddexp,
        round, sign, sinh, square,
    )
    from .nn import log_softmax, logsumexp, softmax  # noqa: E402
    from .training.train import load  # noqa: E402  a checkpoint (training/checkpoint.py) as a FitResult
    from .training.optim import (  # noqa: E402
        SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, ExponentialLR, Newton, RMSprop, StepLR,
    )
    from .tools.plot import plot_fit  # noqa: E402
    from .tools.drawing import draw, to_dot  # noqa: E402  the graph as Graphviz DOT / SVG
    from .forward import Forward, Prediction  # noqa: E402
    from .runtime.binding import Result  # noqa: E402
    from .training.train import FitResult, fit  # noqa: E402
_collector.freeze()

_LAZY = {"LeastSquaresResult": "lsq", "curve_fit": "lsq", "least_squares": "lsq"}  # imported on first use


def __getattr__(name: str):  # PEP 562: what a first fit does not need is imported when asked for
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")

__all__ = [
    "Adam", "BindingError", "Compiled", "DTypeError", "FitResult", "Graph", "GraphcError",
    "InvalidName", "N", "Node", "NonFiniteLoss", "Result", "SGD", "ShapeError", "TargetError",
    "UnsupportedError", "abs", "broadcast_to", "compile", "constant", "cos", "data", "einsum",
    "exp", "fit", "flatten", "function", "log", "matmul", "maximum", "mean", "minimum", "nn",
    "param", "params", "relu", "reshape", "sigmoid", "sin", "sqrt", "stack", "sum", "tan", "tanh",
    "transpose", "where",
]
# training (issue #4): more optimizers, schedules, checkpoints, plots
__all__ += [
    "Adagrad", "AdamW", "CosineAnnealingLR", "ExponentialLR", "Newton", "RMSprop", "StepLR",
    "load", "plot_fit",
]
# tensor programs (issue #3): more ops for layers and losses
__all__ += ["concatenate", "gelu", "softplus", "stop_gradient"]
# numpy semantics (issue #16): numpy's math functions, and numpy functions on nodes (ir/interop.py)
__all__ += [
    "acos", "acosh", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "asin",
    "asinh", "atan", "atan2", "atanh", "ceil", "clip", "cosh", "erf", "erfc", "exp2", "expm1", "floor",
    "hypot", "log1p", "log2", "log10", "log_softmax", "logaddexp", "logsumexp", "round", "sign", "sinh",
    "softmax", "square",
]
# using a trained model (issue #19): forward functions (gc.compile of arrays), res.predict
__all__ += ["Forward", "Prediction"]
# the graph as a picture (issue #19 item 6)
__all__ += ["draw", "to_dot"]
# nonlinear least squares (issue #20): Levenberg-Marquardt with exact Jacobians (graphc/lsq/)
__all__ += ["LeastSquaresResult", "curve_fit", "least_squares"]
