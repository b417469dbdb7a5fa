"""fit(): the whole training loop (every step, the update, the loss history) compiled into
one Numba function. By default it is called once; in stepping mode (progress bar, callback,
early stopping) it is called in chunks that end on logged steps, which gives the same
numbers bit for bit because the chunks carry the optimizer state and step count along."""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Mapping  # not typing's: isinstance checks against it are slower
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import codegen, forward, targets
from ..runtime import cuda as cuda_runtime, distributed
from ..tools import notebook
from ..planning import plancache
from ..compile import Compiled, Timings, make_plan, memo_get, memo_put, wrt_key
from ..errors import BindingError, GraphcError, NonFiniteLoss, UnsupportedError
from ..ir.graph import N, Node
from .optim import SGD
from ..runtime.binding import check_names, dtype_name, merge
from .validation import InLoop, Validator

LONG_RUN = 2e8  # steps * samples above which the automatic progress bar shows (about a second)


@dataclass
class FitResult:
    """``params`` ({name: float | ndarray}), ``history`` ([(step, loss), ...]) and more.

    ``state`` holds the optimizer state ({"count": steps done, slot: array}); pass it back
    as ``fit(..., init=res.params, optimizer=res.optimizer, state=res.state)`` to continue
    exactly where this run stopped. ``stopped`` says why a run ended early ("tol",
    "callback", "nonfinite") or is None.
    """

    params: dict[str, Any]
    history: list[tuple[int, float]]
    steps: int
    seconds: float
    optimizer: Any
    state: dict[str, Any] = field(repr=False, default_factory=dict)
    compiled: Compiled | None = field(repr=False, default=None)
    dtype: str = "float64"
    stopped: str | None = None
    val_history: list[tuple[int, float]] = field(default_factory=list)  # fit(val_data=...): (t, loss)

    @property
    def loss(self) -> float | None:
        """The last logged loss."""
        return self.history[-1][1] if self.history else None

    @property
    def source(self) -> str:
        return self.compiled.source if self.compiled else ""

    def save(self, path: Any) -> str:
        """Write params, optimizer state and history to ``path`` (.npz); see gc.load."""
        from .checkpoint import save  # imported when first used (not by import graphc)

        return save(self, path)

    def _repr_markdown_(self) -> str:  # a notebook shows the parameters (tools/notebook.py)
        return notebook.fit_markdown(self)

    def _repr_html_(self) -> str:  # ... and the loss curve, inline
        return notebook.fit_html(self)

    def predict(self, expr: Any, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Any:
        """``expr`` (an expression, or a tuple of them) on new ``data`` with the fitted
        parameters bound: an ndarray of its shape (a tuple of them). Compiled once per
        expression; runs on the fit's target (cpu for a loaded checkpoint)."""
        target = self.compiled.target if self.compiled is not None else "cpu"
        return forward.predict(expr, self.params, merge(data, kwargs), target, self.dtype)

    def plot_history(self, path: Any = None, ax: Any = None) -> Any:
        """The loss curve on a log scale (matplotlib); saved to ``path`` if given."""
        from ..tools.plot import plot_history

        return plot_history(self, path, ax)


def load(path: Any) -> FitResult:
    """A checkpoint written by ``res.save(path)``, as a FitResult whose params, optimizer and
    state continue training bit for bit (no compiled module)."""
    from .checkpoint import read

    return FitResult(**read(path))


def fit(
    loss: Node,
    data: Mapping[str, Any],
    init: Mapping[str, Any],
    optimizer: Any = None,
    steps: int | None = None,
    log_every: int = 100,
    target: str = "cpu",
    dtype: str = "float64",
    wrt: Sequence[Node] | None = None,
    check_finite: bool = True,
    state: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    callback: Callable[[int, float, dict], Any] | None = None,
    tol: float | None = None,
    client: Any = None,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    epochs: int | None = None,
    schedule: str = "auto",
    val_data: Mapping[str, Any] | None = None,
    patience: int | None = None,
    restore_best: bool = False,
) -> FitResult:
    """Train the parameters of ``loss`` with ``optimizer`` for ``steps`` steps.

    ``history`` holds ``(t, loss_t)`` for each step t with ``t % log_every == log_every - 1``
    and for the last step, ``loss_t`` taken before update t; t counts from ``state["count"]``
    when resuming. A NaN or infinite loss stops training with a NonFiniteLoss error
    (``check_finite=False`` returns the partial result instead). ``progress`` (tqdm bar;
    None = only for long runs in a terminal), ``callback(step, loss, params)`` at each log
    (returning False stops) and ``tol`` (stop once a logged loss is <= tol) run the compiled
    loop in chunks.
    Dask arrays in ``data`` train where their chunks live (``client``: a dask.distributed
    Client; default: the current scheduler); see graphc.runtime.distributed.

    ``batch_size=B`` trains on mini-batches inside the compiled loop: step t uses batch
    t % nb of epoch t // nb (nb = ceil(N / B); the last batch of an epoch may be smaller);
    ``shuffle=True`` draws a permutation per epoch from (``seed``, epoch). ``epochs=E``
    runs E * nb steps instead of ``steps`` (default 1000). With Dask data a batch is a
    group of whole chunks (see graphc.runtime.distributed.trainer).

    ``val_data`` (inputs like ``data``) adds the loss on it at every logged step t, at the
    parameters of that step's training loss, to ``res.val_history``; ``patience=P`` stops
    after P logged steps without a better validation loss (``res.stopped == "patience"``), and
    ``restore_best=True`` returns the parameters of the best one. On the cpu and parallel
    targets this runs inside the compiled loop (graphc/training/validation.py says where else).

    ``schedule``: "auto", "fused" or "blocked", as in ``gc.compile``.
    """
    if isinstance(optimizer, type):  # gc.Adam, not gc.Adam(lr=...): fails deep in codegen otherwise
        raise GraphcError(f"fit: optimizer={optimizer.__name__} is a class; pass an instance: "
                          f"optimizer=gc.{optimizer.__name__}(lr=...)")
    dtype = dtype_name(dtype)  # np.float32 as "float32"
    optimizer = SGD(lr=1e-3) if optimizer is None else optimizer
    _check_batches(batch_size, shuffle, seed, epochs, steps, target, data)
    steps = 1000 if steps is None and epochs is None else steps
    _check_args(0 if steps is None else steps, log_every, data, init, callback, tol)
    dask = isinstance(data, Mapping) and distributed.uses_dask(data)
    inside = val_data is not None and not dask and not targets.get(target).device  # validated in the loop
    compiled = _compiled(loss, wrt, target, dtype, optimizer, batches=batch_size is not None and not dask,
                         schedule=schedule, validate=inside)
    if batch_size is not None and not dask:  # export() gives the exported fit these defaults
        compiled.batching = {"batch_size": int(batch_size), "shuffle": bool(shuffle), "seed": int(seed)}
    plan, binder = compiled.plan, compiled.binder
    if not (data.keys() == binder.input_names and init.keys() == binder.param_names):
        check_names(plan, {**data, **init}, [])
        _check_split(plan, data, init)
    validator: InLoop | Validator | None = None
    if val_data is not None:
        validator = (InLoop(compiled, val_data, patience, restore_best) if inside
                     else Validator(loss, val_data, target, dtype, patience, restore_best))
    if batch_size is not None and dask:  # a batch is a seeded group of whole chunks
        batching = (int(batch_size), bool(shuffle), int(seed))
        train, n_samples, per_epoch = distributed.trainer(compiled, data, client, batching)
        steps = epochs * per_epoch if epochs is not None else steps
    elif batch_size is not None:  # each step gathers its batch inside the compiled loop
        arrays, n_samples = binder.data(data)
        _check_sample_axes(plan)
        train = _trainer(compiled, tuple(arrays), (int(batch_size), bool(shuffle), int(seed)), validator)
        steps = epochs * -(-n_samples // batch_size) if epochs is not None else steps
        n_samples = min(n_samples, batch_size)
    elif targets.get(target).device:  # data copied to the device once; every step runs there
        train, n_samples = cuda_runtime.trainer(compiled, data)
    elif dask:  # the chunks stay where they live; the loop runs here
        train, n_samples, _ = distributed.trainer(compiled, data, client)
    else:
        arrays, n_samples = binder.data(data)
        train = _trainer(compiled, tuple(arrays), (), validator)
    if steps is None:  # epochs without batches: one step per epoch
        steps = epochs
    slots, count = _initial_state(optimizer, binder.n_grads, state)
    loop = _Loop(compiled, train, binder.theta(init), optimizer, slots, count, validator if inside else None)
    bar = _progress_bar(progress, steps, (n_samples or 1) * steps)
    host = validator is not None and not inside  # validated from Python between chunks (training/validation.py)
    stepping = bar is not None or callback is not None or tol is not None or host
    every_log = callback is not None or tol is not None or host
    chunk = log_every if every_log else log_every * max(1, steps // (100 * log_every))  # ~100 bar updates
    history: list[tuple[int, float]] = []
    loop.compile()  # res.seconds is the training loop's time, not Numba's (that is in timings["numba"])
    stopped, start = None, time.perf_counter()
    try:
        for t0, n, period in _chunks(count, steps, log_every, chunk if stepping else None):
            if not host:
                done, logged = loop.run(t0, n, period)
            else:  # one logged step, the piece's last: validate at its parameters, then run it
                done, logged = loop.run(t0, n - 1, n)
                if done == n - 1:
                    validator(t0 + n - 1, loop.params())
                    last, logged = loop.run(t0 + n - 1, 1, 1)
                    done += last
            history += logged
            if bar is not None:
                bar.update(done)
                val = {"val": f"{validator.history[-1][1]:.6g}"} if validator is not None and validator.history else {}
                bar.set_postfix(loss=f"{logged[-1][1]:.6g}" if logged else None, **val, refresh=False)
            patience_out = validator is not None and validator.exhausted
            if done < n and not (inside and patience_out):  # (the loop returns after a step out of patience)
                stopped = "nonfinite"
            else:
                stopped = _early_stop(logged, tol, callback, loop)
            if not stopped and patience_out:
                stopped = "patience"
            if stopped:
                break
    finally:
        if bar is not None:
            bar.close()
    result = loop.result(history, time.perf_counter() - start, stopped, dtype)
    if validator is not None:
        result.val_history = validator.history
        result.params = validator.best_params() or result.params
    if stopped == "nonfinite" and check_finite:
        raise _nonfinite(loop, result, data)
    return result


class _Loop:
    """The training function (``train(theta, hyper, state, count, steps, log_every, history)``,
    the compiled one bound to its data) with the arrays it updates in place between calls;
    ``validator``: where a compiled loop that validates leaves the validation losses."""

    def __init__(self, compiled: Compiled, train: Callable[..., int], theta: np.ndarray, optimizer: Any,
                 slots: np.ndarray, count: int, validator: InLoop | None = None) -> None:
        self.compiled, self.train, self.theta, self.optimizer = compiled, train, theta, optimizer
        self.validator = validator
        self.slots, self.count, self.start_count = slots, count, count
        self.hyper = np.array(list(optimizer.hyper.values()), dtype=np.float64)
        self.initial = (theta.copy(), slots.copy())

    def compile(self) -> None:
        """Have Numba compile the training function before it is timed: a call of 0 steps on
        copies (the cpu targets; the cuda and Dask trainers launch nothing for 0 steps)."""
        self.train(self.theta.copy(), self.hyper, self.slots.copy(), self.count, 0, 1, np.zeros(0))

    def run(self, t0: int, n: int, period: int) -> tuple[int, list[tuple[int, float]]]:
        """``n`` steps from global step t0, logging local steps s with s % period == period - 1."""
        history = np.zeros(n // period)
        done = int(self.train(self.theta, self.hyper, self.slots, self.count, n, period, history))
        self.count += done
        if done >= n:
            kept = len(history)
        elif self.validator is not None and self.validator.exhausted:  # patience: after logged step done - 1
            kept = done // period
        else:  # a non-finite loss at step done (logged if on the grid)
            kept = (done + 1) // period
        logged = [(t0 + k * period + period - 1, float(v)) for k, v in enumerate(history[:kept])]
        if self.validator is not None:
            self.validator.record([t for t, _ in logged])
        return done, logged

    def params(self, theta: np.ndarray | None = None) -> dict[str, Any]:
        return self.compiled.binder.params(self.theta if theta is None else theta)

    def result(self, history: list, seconds: float, stopped: str | None, dtype: str) -> FitResult:
        state = {"count": self.count, **{s: self.slots[j].copy() for j, s in enumerate(self.optimizer.slots)}}
        return FitResult(self.params(), history, self.count - self.start_count, seconds, self.optimizer,
                         state, self.compiled, dtype, stopped)

    def last_finite(self) -> tuple[dict[str, Any], int]:
        """Parameters of the last step whose loss was finite (replayed from the start if needed)."""
        stop = self.count
        if np.all(np.isfinite(self.theta)):
            return self.params(), stop
        theta, slots = self.initial[0].copy(), self.initial[1].copy()
        n = max(stop - 1 - self.start_count, 0)
        if n:
            self.train(theta, self.hyper, slots, self.start_count, n, n + 1, np.zeros(0))
        return self.params(theta), self.start_count + n


def _chunks(start: int, steps: int, log_every: int, size: int | None) -> Iterator[tuple[int, int, int]]:
    """(first global step, length, log period) pieces covering ``steps`` steps from ``start``.

    A piece that starts off the log grid runs to the next logged step with period = its
    length, so the compiled loop (which logs by local step) logs the right global steps;
    a last piece that ends off the grid is one piece with period = its length, so the last
    step is always logged (``res.loss`` is never None after a step).
    """
    t, end = start, start + steps
    while t < end:
        head = log_every - t % log_every
        if head < log_every:
            n, period = head, head
        else:
            n, period = (size or end - t), log_every
        n = min(n, end - t)
        if n < period:  # the run ends off the log grid: its last step is logged too
            period = n
        elif n % period:  # the logged steps first; the rest is the next (and last) piece
            n -= n % period
        yield t, n, period
        t += n


def _early_stop(logged: list, tol: float | None, callback: Callable | None, loop: _Loop) -> str | None:
    if not logged:
        return None
    step, loss = logged[-1]
    if tol is not None and loss <= tol:
        return "tol"
    if callback is not None and callback(step, loss, loop.params()) is False:
        return "callback"
    return None


def _progress_bar(progress: bool | None, steps: int, work: float) -> Any:
    if progress is False or steps == 0:
        return None
    if progress is None and not (work >= LONG_RUN and getattr(sys.stderr, "isatty", lambda: False)()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise GraphcError("fit(progress=True) needs tqdm: pip install 'graphc[progress]'") from None
        return None
    return tqdm(total=steps, desc="graphc fit", unit="step", leave=True)


def _initial_state(optimizer: Any, n_grads: int, state: Mapping[str, Any] | None) -> tuple[np.ndarray, int]:
    slots = np.array([[optimizer.initial_state(s) if hasattr(optimizer, "initial_state") else 0.0] * n_grads
                      for s in optimizer.slots], dtype=np.float64).reshape(len(optimizer.slots), n_grads)
    if state is None:
        return slots, 0
    if not isinstance(state, Mapping):
        raise GraphcError(f"fit: state must be a dict like res.state, got {type(state).__name__}")
    unknown = [k for k in state if k != "count" and k not in optimizer.slots]
    if unknown:
        raise GraphcError(f"fit: state has slot {unknown[0]!r}, unused by {type(optimizer).__name__} "
                          f"(its slots: {list(optimizer.slots) or 'none'})")
    count = state.get("count", 0)
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise GraphcError(f"fit: state['count'] must be an integer >= 0, got {count!r}")
    for j, s in enumerate(optimizer.slots):
        if s not in state:
            raise GraphcError(f"fit: state lacks slot {s!r} of {type(optimizer).__name__}")
        value = np.asarray(state[s], dtype=np.float64)
        if value.shape != (n_grads,):
            raise GraphcError(f"fit: state[{s!r}] has shape {value.shape}; expected ({n_grads},)")
        slots[j] = value
    return slots, int(count)


def _check_args(steps: Any, log_every: Any, data: Any, init: Any, callback: Any, tol: Any) -> None:
    for what, value in (("steps", steps), ("log_every", log_every)):
        least = 0 if what == "steps" else 1
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise GraphcError(f"fit: {what} must be an integer >= {least}, got {value!r}")
    if not isinstance(data, Mapping) or not isinstance(init, Mapping):
        raise GraphcError("fit: data and init must be dicts of {name: value}")
    if callback is not None and not callable(callback):
        raise GraphcError(f"fit: callback must be callable as callback(step, loss, params), got {callback!r}")
    if tol is not None and (not isinstance(tol, (int, float)) or isinstance(tol, bool) or math.isnan(tol)):
        raise GraphcError(f"fit: tol must be a number, got {tol!r}")


def _nonfinite(loop: _Loop, result: FitResult, data: Mapping[str, Any]) -> NonFiniteLoss:
    params, at = loop.last_finite()
    result.params = params
    why = _at_start(loop, data) if loop.count == loop.start_count else ""
    err = NonFiniteLoss(
        f"the loss became non-finite at step {loop.count}; training stopped there.{why} Last finite "
        f"parameters (those of step {at}): {_short(params)} (also in err.result)"
    )
    err.result = result
    return err


def _at_start(loop: _Loop, data: Mapping[str, Any]) -> str:
    """Why the loss is non-finite before any update: the values it started from, or the loss itself."""
    bad = [f"data {k!r}" for k, v in data.items() if _not_finite(v)]
    bad += [f"init {k!r}" for k, v in loop.params(loop.initial[0]).items() if _not_finite(v)]
    if bad:
        return f" It started from non-finite values: {', '.join(bad)} hold(s) NaN or inf."
    return (" Data and initial values are finite, so the loss is non-finite at the start itself: log or "
            "sqrt of a negative number, a division by 0, an overflow, or a class label outside 0 .. C-1 "
            "(gc.nn.cross_entropy, nll_loss)?")


def _not_finite(value: Any) -> bool:
    if not isinstance(value, (np.ndarray, np.generic, list, tuple, float, int)):
        return False  # a Dask array is not computed here
    arr = np.asarray(value)
    return arr.dtype.kind == "f" and not bool(np.all(np.isfinite(arr)))


def _short(params: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}=array{v.shape}" if isinstance(v, np.ndarray) else f"{k}={v!r}" for k, v in params.items())
    return text if len(text) < 300 else text[:297] + "..."


def _check_split(plan: Any, data: Mapping[str, Any], init: Mapping[str, Any]) -> None:
    inputs = [d.name for d in plan.data]
    for name in data:
        if name in plan.layout:
            raise BindingError(f"{name!r} is a parameter; give its starting value in init, not data")
    for name in init:
        if name in inputs:
            raise BindingError(f"{name!r} is a data input; give it in data, not init")
    missing = [n for n in inputs if n not in data] + [n for n in plan.layout if n not in init]
    if missing:
        raise BindingError(f"fit: missing value(s) for {', '.join(map(repr, missing))}")


def _scratch(compiled: Compiled) -> tuple[np.ndarray, np.ndarray]:
    """grad and acc for a generated training loop (made here: inside, np.zeros would make
    Numba compile NumPy's allocation code too)."""
    return compiled.binder.scratch()


def _unbatched(compiled: Compiled, arrays: tuple, *args: Any) -> int:
    """The compiled ``train`` with its scratch space (grad, acc) added."""
    return compiled.run(compiled.module.train, arrays, *args, *_scratch(compiled))


def _batched(compiled: Compiled, arrays: tuple, batching: tuple, *args: Any) -> int:
    """The compiled ``train_batches`` with the ``train`` signature _Loop calls."""
    return compiled.run(compiled.module.train_batches, arrays, *args, *batching, *_scratch(compiled))


def _validated(compiled: Compiled, arrays: tuple, validator: InLoop, batching: tuple, theta: np.ndarray,
               hyper: np.ndarray, state: np.ndarray, count: int, steps: int, log_every: int,
               history: np.ndarray) -> int:
    """The compiled ``train_val`` (``train_batches_val`` with ``batching``) with the ``train``
    signature _Loop calls; its validation losses left in ``validator.logged``."""
    fn = compiled.module.train_batches_val if batching else compiled.module.train_val
    val_history = np.zeros(len(history))
    done = compiled.run(fn, arrays, validator.arrays, theta, hyper, state, count, steps, log_every, history,
                        val_history, validator.limit, validator.best, validator.state, *batching,
                        *_scratch(compiled))
    validator.logged = val_history
    return done


def _trainer(compiled: Compiled, arrays: tuple, batching: tuple, validator: Any) -> Callable[..., int]:
    """The compiled training loop for ``arrays`` (on mini-batches with ``batching``; validating
    inside with an InLoop ``validator``), as _Loop calls it."""
    if isinstance(validator, InLoop):
        return functools.partial(_validated, compiled, arrays, validator, batching)
    if batching:
        return functools.partial(_batched, compiled, arrays, batching)
    return functools.partial(_unbatched, compiled, arrays)


def _check_batches(batch_size: Any, shuffle: Any, seed: Any, epochs: Any, steps: Any, target: str, data: Any) -> None:
    if epochs is not None:
        if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 0:
            raise GraphcError(f"fit: epochs must be an integer >= 0, got {epochs!r}")
        if steps is not None:
            raise GraphcError("fit: give steps or epochs, not both")
    if batch_size is None:
        if shuffle:
            raise GraphcError("fit: shuffle=True needs batch_size")
        return
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise GraphcError(f"fit: batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise GraphcError(f"fit: seed must be an integer >= 0, got {seed!r}")
    if not targets.get(target).batches:
        runs = [t.name for t in targets.TARGETS.values() if t.batches]
        raise UnsupportedError(f"fit: batch_size runs on the {' and '.join(runs)} targets (and with Dask data)")


def _check_sample_axes(plan: Any) -> None:
    if not plan.sample_data:
        raise GraphcError("fit: batch_size needs a data input with a sample dim (None)")
    for d in plan.sample_data:
        if d.shape[0] is not N:
            raise UnsupportedError(f"fit: batch_size needs the sample dim first; {d.name!r} has shape {d.shape}")


def _compiled(loss: Node, wrt: Sequence[Node] | None, target: str, dtype: str, optimizer: Any,
              batches: bool = False, schedule: str = "auto", validate: bool = False) -> Compiled:
    if not plancache.own_optimizer(optimizer) and not all(
            hasattr(optimizer, a) for a in ("hyper", "slots", "formula")):
        raise GraphcError(f"optimizer must be a graphc optimizer such as gc.SGD(lr=...), got {optimizer!r}")
    key = ("train", wrt_key(wrt), target, dtype, schedule, plancache.optimizer_key(optimizer), batches, validate)
    compiled = memo_get(loss, key)  # trained in this process already: nothing is read or built
    if compiled is None:
        compiled = memo_put(loss, key, _build(loss, wrt, target, dtype, optimizer, batches, schedule, validate))
    compiled.optimizer = optimizer  # export() writes the training loop with it
    return compiled


def _build(loss: Node, wrt: Sequence[Node] | None, target: str, dtype: str, optimizer: Any,
           batches: bool, schedule: str, validate: bool = False) -> Compiled:
    timings = Timings()
    second_order = getattr(optimizer, "second_order", False)  # make_plan adds the Hessian (fused only)

    def build() -> tuple[Any, str]:
        plan = make_plan(loss, wrt, timings, schedule, target, hessian=second_order)
        with timings.stage("codegen"):
            source = codegen.emit(plan, target, codegen.check_dtype(dtype), optimizer, batches, validate)
        return plan, source

    plan, source = plancache.get(build, loss, wrt, timings, warn_zero_grads=not second_order, kind="train",
                                 target=target, dtype=dtype, optimizer=optimizer, batches=batches,
                                 schedule=schedule, validate=validate)
    return Compiled(plan, source, target, dtype, timings, stem="graphc_fit")


__all__ = ["fit", "FitResult"]
