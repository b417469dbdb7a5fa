"""The one plan type (graphc/planning/plan.py): every schedule and every kind of compiled function
makes a ``Plan`` whose accumulators tile ``acc`` pass by pass, and whose sizes the runtime
reads without knowing the schedule. Planning only: nothing here compiles with Numba."""

from __future__ import annotations

import pytest

import graphc as gc
from graphc.planning import blocked, schedule
from graphc.compile import make_plan
from graphc.ir.graph import Graph
from graphc.planning.plan import Accumulator, Blocked, Fused, Plan
from graphc.timings import Timings


def _mlp(width: int):
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    hidden, out = gc.nn.Linear(3, width, name="h"), gc.nn.Linear(width, 1, name="o")
    pred = gc.flatten(out(gc.tanh(hidden(X))))
    return pred, gc.mean((pred - y) ** 2) + gc.log(gc.sum(gc.exp(pred)))  # a sum read by a later pass


def _plans() -> dict[str, Plan]:
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.param("a"), gc.param("b")
    newton = gc.sum((a * gc.exp(b * x) - y) ** 2)
    pred, loss = _mlp(4)
    graph = Graph.from_outputs(pred)
    return {
        "fused": make_plan(loss, None, Timings(), "fused"),
        "blocked": make_plan(loss, None, Timings(), "blocked"),
        "hessian": make_plan(newton, None, Timings(), "fused", hessian=True),
        "forward fused": schedule.fuse_forward([pred, gc.sum(pred)], graph.params, graph.data),
        "forward blocked": blocked.forward_plan([pred, gc.sum(pred)], graph.params, graph.data),
    }


PLANS = _plans()


@pytest.mark.parametrize("name", list(PLANS))
def test_every_plan_is_one_type_with_accumulators_that_tile_acc(name):
    plan = PLANS[name]
    assert type(plan) is Plan and all(type(a) is Accumulator for a in plan.accumulators)
    assert isinstance(plan.lowered, Blocked if "blocked" in name else Fused)
    assert plan.schedule == ("blocked" if "blocked" in name else "fused")
    offsets = [a.offset for a in plan.accumulators]
    assert offsets == [sum(a.size for a in plan.accumulators[:k]) for k in range(len(offsets))]
    assert [a.pass_ for a in plan.accumulators] == sorted(a.pass_ for a in plan.accumulators)
    assert sum(plan.pass_sizes) == plan.n_acc and all(size > 0 for size in plan.pass_sizes)
    assert len({a.name for a in plan.accumulators}) == len(plan.accumulators)


def test_both_schedules_find_the_same_passes_and_sums():
    """log(sum(exp(pred))) needs its sum before its gradient: two passes either way, and the
    same number of summed values (fused: one scalar each; blocked: arrays of them)."""
    fused, blocked_ = PLANS["fused"], PLANS["blocked"]
    assert len(fused.pass_sizes) == len(blocked_.pass_sizes) == 2
    assert fused.layout == blocked_.layout and fused.n_grads == blocked_.n_grads == 4 * 3 + 4 + 4 + 1
    assert fused.n_theta == blocked_.n_theta == fused.n_grads


def test_sizes_say_what_the_function_returns():
    hessian, forward = PLANS["hessian"], PLANS["forward fused"]
    assert hessian.n_hessian == 3 and hessian.n_grads == 2 + 3  # the gradient, then the upper triangle
    assert forward.forward and forward.n_grads == 0 and [r.shape for r in forward.results] == [(gc.N,), ()]
    assert not PLANS["fused"].forward and PLANS["fused"].results == []


def test_a_plan_pickles_without_its_per_process_tables():
    """The tables keyed by node ids are made on first use and left out of the pickle (the
    plan cache's round trip through another process: tests/test_plancache.py)."""
    plan = PLANS["blocked"]
    assert plan.acc_of and plan.lowered.materialize
    assert "acc_of" in vars(plan) and "materialize" in vars(plan.lowered)
    assert "acc_of" not in plan.__getstate__() and "materialize" not in plan.lowered.__getstate__()
    assert {id(n) for n in plan.lowered.kept} == plan.lowered.materialize
