"""Data larger than one machine: the compiled per-chunk sums, mapped over Dask arrays.

graphc's losses are sums over samples, and so are their gradients. Each chunk of a Dask
array runs the generated ``sums_k`` function where the chunk lives; the partial sums come
back through a fixed pairwise tree (same bits every run, whatever the scheduler), and the
client finishes the loss and gradient (``finish``) and updates the parameters. Only the
parameters travel out and one small vector of sums per chunk travels back.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from . import loader, threads
from ..errors import GraphcError, ShapeError
from ..ir.graph import N, format_shape
from .binding import as_float_array

def is_dask(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "chunks")


def uses_dask(values: Mapping[str, Any]) -> bool:
    return any(is_dask(v) for v in values.values())


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:  # pragma: no cover - depends on the environment
        raise GraphcError("Dask arrays need the optional dependency: pip install 'graphc[dask]'") from None
    return dask, da


def chunk_sums(source: str, k: int, m: int, n: int, theta: np.ndarray, acc: np.ndarray,
               dtype: str, blas: bool, *blocks: Any) -> np.ndarray:
    """Run on a worker: pass k of the generated module over one chunk; returns its m sums.
    ``blas``: a blocked plan, whose np.dot runs on one BLAS thread (one core per chunk task)."""
    module, _ = loader.load(source)  # once per process: later calls find it in sys.modules
    arrays = [np.asarray(b, dtype=dtype, order="C") for b in blocks]
    out = np.zeros(m)
    length = next((a.shape[0] for a in arrays if a.ndim), 0)
    with threads.one_blas_thread(blas):
        getattr(module, f"sums_{k}")(0, length, n, *arrays, theta, acc, out)
    return out


def pairwise_sum(parts: list[np.ndarray]) -> np.ndarray:
    """Sum in a fixed pairwise tree: the bits do not depend on which chunk finished first."""
    while len(parts) > 1:
        paired = [parts[j] + parts[j + 1] for j in range(0, len(parts) - 1, 2)]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


class DaskProgram:
    """A compiled plan bound to Dask inputs: persisted chunks, one task per chunk per pass."""

    def __init__(self, compiled: Any, data: Mapping[str, Any], client: Any = None) -> None:
        dask, da = _dask()
        self.compiled, self.plan, self.client = compiled, compiled.plan, client
        self.dtype = compiled.dtype
        self.n, arrays, chunks = self._align(da, data)
        self.chunks = chunks  # samples per chunk
        arrays = list(client.persist(arrays) if client is not None else dask.persist(*arrays))
        if client is not None:  # persist returns at once; the chunks are made before step 0
            from distributed import futures_of, wait

            with client.as_current():
                wait(futures_of(arrays))
        self.blocks = self._blocks(arrays, chunks)
        self.fixed = [as_float_array(d.name, data[d.name], self.dtype) for d in self.plan.data if N not in d.shape]
        self.source = compiled.source
        self.offsets = np.cumsum([0] + self.plan.pass_sizes)

    def _align(self, da: Any, data: Mapping[str, Any]) -> tuple[int, list, tuple]:
        sample = [d for d in self.plan.data if N in d.shape]
        if not sample:
            raise GraphcError("Dask inputs need a per-sample input (a data with a None dim)")
        first = next((data[d.name] for d in sample if is_dask(data[d.name])), None)
        axis0 = sample[0].shape.index(N)
        n = int(first.shape[0] if first is not None else np.shape(data[sample[0].name])[axis0])
        chunks = first.chunks[0]
        arrays = []
        for node in sample:
            value, axis = data[node.name], node.shape.index(N)
            arr = value if is_dask(value) else da.from_array(np.asarray(value), chunks=-1)
            if arr.ndim != node.ndim or any(w is not N and w != g for w, g in zip(node.shape, arr.shape)):
                raise ShapeError(f"input {node.name!r} has shape {arr.shape}; expected {format_shape(node.shape)}")
            if arr.shape[axis] != n:
                raise ShapeError(f"input {node.name!r} has {arr.shape[axis]} samples but the others have {n}")
            if arr.dtype.kind not in "biuf":
                raise GraphcError(f"input {node.name!r} has dtype {arr.dtype}; expected real numbers")
            want = tuple(chunks if a == axis else (arr.shape[a],) for a in range(arr.ndim))
            if arr.chunks != want:
                if is_dask(value) and arr.chunks[axis] != chunks:
                    warnings.warn(f"input {node.name!r} is rechunked to match the sample chunks of the first input",
                                  stacklevel=4)
                arr = arr.rechunk(want)
            arrays.append(arr)
        if n == 0:
            raise ShapeError("the Dask inputs have 0 samples; graphc needs at least one")
        return n, arrays, chunks

    def _blocks(self, arrays: list, chunks: tuple) -> list[list]:
        """The persisted chunks' keys, one row per chunk; their graph holds the data itself."""
        self.graph = {}
        for arr in arrays:
            self.graph.update(dict(arr.__dask_graph__()))
        sample = [d for d in self.plan.data if N in d.shape]
        rows = []
        for j in range(len(chunks)):
            row = []
            for node, arr in zip(sample, arrays):
                key = arr.__dask_keys__()  # nested lists, one level per axis
                for a in range(arr.ndim):
                    key = key[j if a == node.shape.index(N) else 0]
                row.append(key)
            rows.append(row)
        return rows

    def _args(self, row: list) -> list:
        """Chunk keys and whole fixed inputs, in the generated functions' argument order."""
        sample, fixed = iter(row), iter(self.fixed)
        return [next(sample) if N in d.shape else next(fixed) for d in self.plan.data]

    def _get(self, graph: dict, key: Any) -> Any:
        if self.client is not None:
            return self.client.get(graph, key)
        from dask.base import get_scheduler
        from dask.threaded import get

        return (get_scheduler() or get)(graph, key)  # the default client if there is one, else threads

    def evaluate(self, theta: np.ndarray, grad: np.ndarray, rows: Sequence[int] | None = None) -> float:
        """One task per chunk per pass, a fixed-order sum, then finish, here on the client.
        ``rows``: only these chunks (a mini-batch; means then divide by its sample count)."""
        rows = range(len(self.blocks)) if rows is None else rows
        n = int(sum(self.chunks[j] for j in rows))
        acc = np.zeros(int(self.offsets[-1]))
        for k, m in enumerate(self.plan.pass_sizes):
            graph = dict(self.graph)
            snapshot = acc.copy()
            keys, name = [], f"graphc-sums-{uuid.uuid4().hex}"  # fresh keys: a cluster may still hold old ones
            for j in rows:
                keys.append((name, k, j))
                graph[keys[-1]] = (chunk_sums, self.source, k, m, n, theta.copy(), snapshot, self.dtype,
                                   self.plan.blas, *self._args(self.blocks[j]))
            # one round trip; the few small vectors are added here (a tree of tasks would cost
            # a scheduler round trip per level)
            acc[self.offsets[k]: self.offsets[k + 1]] = pairwise_sum(list(self._get(graph, keys)))
        return float(self.compiled.module.finish(n, *self.fixed, theta, acc, grad))


def evaluate(compiled: Any, bindings: Mapping[str, Any], client: Any = None) -> Any:
    """``f(x=dask_array, ...)``: loss and gradients with the data left where it lives."""
    from .binding import Result, pack_params, unpack

    program = DaskProgram(compiled, {d.name: bindings[d.name] for d in compiled.plan.data}, client)
    theta = pack_params(compiled.plan, bindings, compiled.dtype)
    grad = np.zeros(compiled.plan.n_grads)
    loss = program.evaluate(theta, grad)
    return Result(loss, unpack(compiled.plan, grad, [p.name for p in compiled.plan.wrt]))


def trainer(compiled: Any, data: Mapping[str, Any], client: Any = None,
            batching: tuple[int, bool, int] | None = None) -> tuple[Any, int, int]:
    """A drop-in for the compiled ``train`` (same arguments, same semantics) over Dask data;
    each step maps the chunks, and the generated ``update`` runs here on the client.

    ``batching = (batch_size, shuffle, seed)``: each step uses k = max(1, round(batch_size /
    first chunk's length)) whole chunks, where the data lives. Global step t takes group
    t % nb of epoch t // nb (nb = ceil(chunks / k)): chunks order[g*k:(g+1)*k], where order is
    0, 1, ... or, with shuffle, a permutation drawn from (seed, epoch) only, so resumed and
    chunked runs agree. Returns (train, samples per step, steps per epoch).
    """
    program = DaskProgram(compiled, data, client)
    update, grad = compiled.module.update, np.zeros(compiled.plan.n_grads)
    k = 1 if batching is None else max(1, round(batching[0] / program.chunks[0]))
    per_epoch = -(-len(program.chunks) // k)

    def rows(count: int) -> Sequence[int] | None:
        if batching is None:
            return None
        epoch, group = divmod(count, per_epoch)
        order = np.arange(len(program.chunks))
        if batching[1]:
            order = np.random.default_rng([batching[2], epoch]).permutation(len(program.chunks))
        return [int(j) for j in order[group * k: (group + 1) * k]]

    def train(theta: np.ndarray, hyper: np.ndarray, state: np.ndarray, count: int, steps: int,
              log_every: int, history: np.ndarray) -> int:
        for step in range(steps):
            loss = program.evaluate(theta, grad, rows(count))
            if step % log_every == log_every - 1:
                history[step // log_every] = loss
            if not np.isfinite(loss):
                return step
            count += 1
            update(theta, grad, hyper, state, count)
        return steps

    per_step = program.n if batching is None else int(sum(program.chunks[:k]))
    return train, per_step, per_epoch


__all__: Sequence[str] = ["trainer", "evaluate", "is_dask", "uses_dask"]
