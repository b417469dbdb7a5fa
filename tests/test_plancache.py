"""The plan cache: a warm process skips SymPy; damaged or stale entries are rebuilt, never used."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import graphc as gc
from graphc.planning import plancache
from graphc.compile import Timings
from graphc.ir.graph import resolve_wrt
from graphc.ir.graph import Graph, Node, toposort

from . import strategies  # noqa: F401 - private cache dir when run alone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XS = np.linspace(-1.0, 1.0, 101)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_PLAN_CACHE", raising=False)
    # these tests read the plan cache in this process: no in-process memo in front of it
    monkeypatch.setattr(sys.modules["graphc.compile"], "MEMO", False)
    return tmp_path


def build(tag: str, k: float = 2.0) -> gc.Node:
    x, p = gc.data("x"), gc.param(f"p_{tag}")
    return gc.sum((p * gc.sin(x) - k * x) ** 2)


def run(f: gc.Compiled) -> float:
    (name,) = f.params
    return f(x=XS, **{name: 0.5}).loss


def key(loss: gc.Node, wrt=None, **args) -> str:
    graph = Graph.from_outputs(loss)
    return plancache.fingerprint(graph, loss, resolve_wrt(graph, wrt), args)


def entries(cache) -> list:
    return sorted((cache / "plans").glob("*.plan"))


# ---- a second process ---------------------------------------------------------------------
WARM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc import autodiff, codegen
    from graphc.planning import schedule

    if sys.argv[1] == "warm":  # a hit must not differentiate, schedule or print anything
        def refuse(*args, **kwargs):
            raise AssertionError("SymPy work in a warm process")
        autodiff.gradients = schedule.fuse = codegen.emit = refuse
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    xs = np.linspace(-np.pi, np.pi, 200)
    res = gc.fit(loss, data={"x": xs, "y": np.sin(xs)}, init={"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
                 optimizer=gc.SGD(lr=1e-4), steps=20, log_every=5)
    assert res.compiled.plan.loss is loss and [p for p in res.compiled.plan.wrt] == [a, b, c, d]
    print(json.dumps({"timings": res.compiled.timings, "history": [v.hex() for _, v in res.history],
                      "params": {k: v.hex() for k, v in res.params.items()}}))
""")


def test_a_warm_process_skips_sympy_and_gets_the_same_bits(tmp_path):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("GRAPHC_PLAN_CACHE", None)
    runs = [subprocess.run([sys.executable, "-c", WARM, kind], env=env, capture_output=True, text=True,
                           timeout=300) for kind in ("cold", "warm")]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    cold, warm = (json.loads(r.stdout) for r in runs)
    assert cold["timings"]["plan"] == "miss" and "autodiff" in cold["timings"]
    assert warm["timings"]["plan"] == "hit" and warm["timings"]["cache"] == "hit"
    assert not {"autodiff", "schedule", "cse", "codegen"} & set(warm["timings"])
    assert warm["history"] == cold["history"] and warm["params"] == cold["params"]


BLOCKED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc import autodiff, codegen, nn
    from graphc.planning import blocked

    if sys.argv[1] == "warm":  # a hit must not differentiate, plan or print anything
        def refuse(*args, **kwargs):
            raise AssertionError("planning in a warm process")
        autodiff.gradients = blocked.plan = codegen.emit = refuse
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    model = nn.Sequential(nn.Linear(3, 64, name="l0"), nn.Tanh(), nn.Linear(64, 1, name="l1"))
    loss = nn.mse_loss(gc.flatten(model(X)), y, reduction="sum")  # 192 weights: "auto" picks blocked
    init = model.init(0)
    rng = np.random.default_rng(0)
    Xs, ys = rng.standard_normal((300, 3)), rng.standard_normal(300)
    f = gc.compile(loss)
    r = f(X=Xs, y=ys, **init)
    res = gc.fit(loss, data={"X": Xs, "y": ys}, init=init, optimizer=gc.Adam(lr=1e-2), steps=20, log_every=5)
    assert f.schedule == res.compiled.schedule == "blocked" and f.plan.loss is loss
    hexed = lambda v: np.asarray(v, dtype=float).ravel().tolist()
    print(json.dumps({"timings": [f.timings, res.compiled.timings], "source": [f.source, res.source],
                      "loss": r.loss.hex(),
                      "grads": {k: [x.hex() for x in hexed(v)] for k, v in r.grads.items()},
                      "history": [v.hex() for _, v in res.history],
                      "params": {k: [x.hex() for x in hexed(v)] for k, v in res.params.items()}}))
""")


def test_a_blocked_plan_hits_in_a_fresh_process_with_the_same_bits(tmp_path):
    """gc.compile and gc.fit of a width-64 MLP: the second process plans nothing."""
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("GRAPHC_PLAN_CACHE", None)
    runs = [subprocess.run([sys.executable, "-c", BLOCKED, kind], env=env, capture_output=True, text=True,
                           timeout=600) for kind in ("cold", "warm")]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    cold, warm = (json.loads(r.stdout) for r in runs)
    for before, after in zip(cold["timings"], warm["timings"]):
        assert before["plan"] == "miss" and after["plan"] == "hit" and after["cache"] == "hit"
        assert "codegen" in before and not {"autodiff", "schedule", "codegen"} & set(after)
    assert "autodiff" in cold["timings"][0]
    assert warm["source"] == cold["source"]
    for k in ("loss", "grads", "history", "params"):
        assert warm[k] == cold[k], k


# ---- in this process ----------------------------------------------------------------------
def _blocked_model(tag: str):
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    P3 = gc.function(f"P3_{tag}", lambda z: (5 * z**3 - 3 * z) / 2)  # a derivative op autodiff makes
    hidden = gc.nn.Linear(3, 4, name=f"l0_{tag}")
    out = gc.nn.Linear(4, 1, name=f"l1_{tag}")
    return gc.nn.mse_loss(gc.flatten(out(P3(gc.tanh(hidden(X))))), y, reduction="mean")


def _kept(plan) -> list[int]:
    """Positions (in the plan's own topological order) of the nodes a block keeps in arrays."""
    order = toposort([plan.loss] + [g for g in plan.lowered.grads.values() if g is not None])
    return [k for k, n in enumerate(order) if id(n) in plan.lowered.materialize]


def test_a_blocked_plan_hits_in_this_process(cache, monkeypatch):
    loss = _blocked_model("hit")
    first = gc.compile(loss, schedule="blocked")
    assert first.timings["plan"] == "miss" and len(entries(cache)) == 1
    again = gc.compile(loss, schedule="blocked")
    assert again.timings["plan"] == "hit" and not {"autodiff", "schedule", "codegen"} & set(again.timings)
    plan = again.plan
    assert plan.schedule == "blocked" and plan is not first.plan and again.source == first.source
    assert plan.loss is loss and all(p is q for p, q in zip(plan.wrt, first.plan.wrt))
    assert plan.data[0] is first.plan.data[0]  # the caller's leaves, not copies
    assert _kept(plan) == _kept(first.plan) and plan.lowered.materialize  # ids of the loaded nodes
    assert [a.node.op for a in plan.accumulators] == [a.node.op for a in first.plan.accumulators]
    assert all(plan.acc_of[id(a.node)] is a for a in plan.accumulators)
    assert {"layout", "zero_grads", "lowered"} <= set(vars(plan)) and {"rows", "blas", "kept"} <= set(vars(plan.lowered))
    assert (plan.lowered.rows, plan.lowered.blas, plan.layout) == (first.plan.lowered.rows, first.plan.lowered.blas, first.plan.layout)
    # the forward nodes the gradients read are the caller's own; the rest was rebuilt from the entry
    forward = {id(n) for n in toposort([loss])}
    grad = plan.lowered.grads[plan.wrt[0].name]
    assert any(id(n) in forward and n.op == "elementwise" for n in toposort([grad]))
    assert str(again.gradients) == str(first.gradients)  # inspection reads the loaded plan
    monkeypatch.setenv("GRAPHC_PLAN_CACHE", "0")
    assert gc.compile(loss, schedule="blocked").source == first.source  # = an uncached compile


@dataclass
class Chain:
    """A stand-in plan that made a chain of nodes of its own, far deeper than pickle recurses."""

    loss: Node
    wrt: list
    zero_grads: list
    chain: Node


def test_a_plans_own_nodes_are_stored_flat_however_deep(cache):
    loss = build("deep")
    (p,) = Graph.from_outputs(loss).params
    inner = loss.inputs[0]  # a node of the caller's graph that is no leaf

    def made():
        chain = inner
        for _ in range(5000):
            chain = gc.tanh(chain) * p
        return Chain(loss, [p], [], chain), "source"

    plan, _ = plancache.get(made, loss, None, Timings(), kind="deep")
    timings = Timings()
    again, source = plancache.get(lambda: pytest.fail("rebuilt"), loss, None, timings, kind="deep")
    assert timings["plan"] == "hit" and source == "source"
    nodes = toposort([again.chain])
    assert len(nodes) == len(toposort([plan.chain])) and again.chain is not plan.chain
    assert any(n is inner for n in nodes) and any(n is p for n in nodes)  # references, not copies
    ops = {n.attr("fn") for n in nodes if n.op == "elementwise"}
    assert {"tanh", "mul"} <= {op.name for op in ops} and all(gc.ir.ops.ELEMENTWISE[op.name] is op for op in ops)


def test_a_hit_returns_the_callers_nodes_and_the_same_source(cache):
    loss = build("nodes")
    first = gc.compile(loss)
    assert first.timings["plan"] == "miss" and len(entries(cache)) == 1
    again = gc.compile(loss)
    assert again.timings["plan"] == "hit" and "autodiff" not in again.timings
    assert again.source == first.source and again.plan.loss is loss
    assert again.plan.wrt[0] is first.plan.wrt[0]
    assert run(again) == run(first)
    assert again.gradients.keys() == first.gradients.keys()  # inspection works on a cached plan
    assert again.latex() == first.latex()


def test_a_graph_built_again_hits_the_entry(cache):
    gc.compile(build("rebuilt"))
    again = gc.compile(build("rebuilt"))  # new nodes, same structure and names
    assert again.timings["plan"] == "hit"
    assert run(again) == pytest.approx(float(np.sum((0.5 * np.sin(XS) - 2 * XS) ** 2)), rel=1e-12)


def _payload_with(data: bytes) -> bytes:
    return plancache.MAGIC + hashlib.sha256(data).digest() + data


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flipped byte", "empty", "bad pickle",
                                    "another graph's entry"])
def test_a_damaged_entry_is_rebuilt(cache, damage):
    loss = build("damage")
    expected = run(gc.compile(loss))
    (path,) = entries(cache)
    data = path.read_bytes()
    if damage == "another graph's entry":  # whole and checksummed, but stored under another key
        gc.compile(build("other"))
        other = next(p for p in entries(cache) if p != path)
        data = other.read_bytes()
    else:
        data = {"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b"",
                "flipped byte": data[:-1] + bytes([data[-1] ^ 1]),
                "bad pickle": _payload_with(b"\x80\x05not a pickle")}[damage]
    path.write_bytes(data)
    again = gc.compile(loss)
    assert again.timings["plan"] == "miss"
    assert run(again) == expected
    third = gc.compile(loss)  # the entry was rewritten
    assert third.timings["plan"] == "hit" and run(third) == expected


def test_an_unwritable_cache_still_compiles(cache):
    (cache / "plans").write_text("a file where the folder should be")
    f = gc.compile(build("unwritable"))
    assert f.timings["plan"] == "miss" and run(f) > 0


def test_a_changed_constant_or_function_misses(cache):
    two, three = build("const", 2.0), build("const", 3.0)
    assert key(two) != key(three) and key(two) == key(build("const", 2.0))
    f2, f3 = gc.compile(two), gc.compile(three)
    assert f3.timings["plan"] == "miss" and run(f3) != run(f2)
    assert run(f3) == pytest.approx(float(np.sum((0.5 * np.sin(XS) - 3 * XS) ** 2)), rel=1e-12)

    x, p = gc.data("x"), gc.param("p_fn")
    square = gc.function("P", lambda z: z**2)
    cube = gc.function("P", lambda z: z**3)  # the same name, another function
    g2, g3 = gc.compile(gc.sum(square(p * x))), gc.compile(gc.sum(cube(p * x)))
    assert g3.timings["plan"] == "miss"
    assert run(g2) == pytest.approx(float(np.sum((0.5 * XS) ** 2)), rel=1e-12)
    assert run(g3) == pytest.approx(float(np.sum((0.5 * XS) ** 3)), rel=1e-12)


def test_the_key_covers_every_argument_and_nothing_else():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.sum((a + b * x - y) ** 2)
    base = key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=False)
    different = [
        key(loss, target="parallel", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=False),
        key(loss, target="cpu", dtype="float32", optimizer=gc.SGD(lr=0.1), batches=False),
        key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1, momentum=0.9), batches=False),
        key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1, nesterov=True, momentum=0.9),
            batches=False),
        key(loss, target="cpu", dtype="float64", optimizer=gc.Adam(lr=0.1), batches=False),
        key(loss, target="cpu", dtype="float64",
            optimizer=gc.SGD(lr=0.1, schedule=gc.StepLR(step_size=10)), batches=False),
        key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=True),
        key(loss, [a], target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=False),
        key(loss, [b, a], target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=False),
        key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1), batches=False, schedule="blocked"),
        key(gc.sum((a + b * x - y) ** 2) + 0.0, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1),
            batches=False),
        key(gc.sum((b + a * x - y) ** 2), target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.1),
            batches=False),
    ]
    assert len({base, *different}) == len(different) + 1
    # run-time numbers are not in the key: a new learning rate reuses the entry
    assert key(loss, target="cpu", dtype="float64", optimizer=gc.SGD(lr=0.5), batches=False) == base


def test_a_derivative_override_is_in_the_key():
    x, p = gc.data("x"), gc.param("p")
    plain = gc.function("Q", lambda z: z**2)
    given = gc.function("Q", lambda z: z**2, derivative=lambda z: 2 * z)
    other = gc.function("Q", lambda z: z**2, derivative=lambda z: 3 * z)
    keys = {key(gc.sum(f(p * x))) for f in (plain, given, other)}
    assert len(keys) == 3


def test_a_hit_still_warns_about_unused_parameters(cache):
    x = gc.data("x")
    a, unused = gc.params("a_warn unused_warn")
    loss = gc.sum((a * x) ** 2)
    with pytest.warns(UserWarning, match="unused_warn"):
        gc.compile(loss, wrt=[a, unused])
    plancache._WARNED.clear()  # as in a new process
    with pytest.warns(UserWarning, match="unused_warn"):
        f = gc.compile(loss, wrt=[a, unused])
    assert f.timings["plan"] == "hit"
    assert f(x=XS, a_warn=0.5, unused_warn=1.0).grads["unused_warn"] == 0.0


def test_errors_are_the_same_with_the_cache(cache):
    x = gc.data("x")
    with pytest.raises(gc.GraphcError, match="must be a scalar"):
        gc.fit(x * gc.param("a"), data={"x": np.ones(2)}, init={"a": 1.0}, steps=1)
    with pytest.raises(gc.InvalidName, match="two different inputs"):
        gc.compile(gc.sum(gc.data("x") + gc.data("x")))


def test_what_cannot_be_stored_is_built_as_before(cache):
    loss = build("stray")

    class Holder:  # a plan that pickle refuses: a local class, holding a lambda
        def __init__(self):
            self.loss, self.wrt, self.zero_grads, self.stray = loss, [], [], lambda: loss

    timings = Timings()
    plan, source = plancache.get(lambda: (Holder(), "source"), loss, None, timings, kind="test")
    assert source == "source" and timings["plan"] == "miss" and not entries(cache)


def test_the_cache_can_be_turned_off(cache, monkeypatch):
    monkeypatch.setenv("GRAPHC_PLAN_CACHE", "0")
    f = gc.compile(build("off"))
    assert f.timings["plan"] == "off" and "autodiff" in f.timings and not entries(cache)


def test_fit_with_newton_and_batches_hits(cache):
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.sum((a + b * x - y) ** 2)
    data, init = {"x": XS, "y": 2 * XS + 1}, {"a": 0.0, "b": 0.0}
    for kw in (dict(optimizer=gc.Newton()), dict(optimizer=gc.SGD(lr=1e-3), batch_size=32)):
        first = gc.fit(loss, data=data, init=init, steps=3, log_every=1, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = gc.fit(loss, data=data, init=init, steps=3, log_every=1, **kw)
        assert first.compiled.timings["plan"] == "miss" and again.compiled.timings["plan"] == "hit"
        assert again.params == first.params and again.history == first.history


def test_the_code_digest_covers_every_stage_of_graphc(tmp_path, monkeypatch):
    """An entry holds generated source: a change to any stage's code (the printers in
    graphc/codegen/ too, not only graphc/planning/ where this cache lives) must miss."""
    root = os.path.join(REPO, "graphc")
    assert os.path.samefile(plancache.PACKAGE, root)
    copy = tmp_path / "graphc"
    for sub in ("planning", "codegen"):
        (copy / sub).mkdir(parents=True)
        (copy / sub / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(plancache, "PACKAGE", copy)
    plancache.code_digest.cache_clear()
    try:
        before = plancache.code_digest()
        (copy / "codegen" / "a.py").write_text("A = 2\n")
        plancache.code_digest.cache_clear()
        assert plancache.code_digest() != before
    finally:
        plancache.code_digest.cache_clear()
