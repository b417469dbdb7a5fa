"""Optimizers and schedules against plain-numpy references written from torch.optim's
documented formulas (independent of graphc's generated update code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.training import optim

X = np.linspace(-math.pi, math.pi, 2000)
Y = np.sin(X)
INIT = {"a": 0.3, "b": -0.2, "c": 0.1, "d": 0.05}
STEPS, LOG = 2000, 100


@pytest.fixture(scope="module")
def loss():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


# ---- the numpy references --------------------------------------------------------------
def loss_and_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
    """The tutorial's manual numpy forward and backward pass."""
    a, b, c, d = p
    y_pred = a + b * X + c * X**2 + d * X**3
    loss = np.square(y_pred - Y).sum()
    g = 2.0 * (y_pred - Y)
    return loss, np.array([g.sum(), (g * X).sum(), (g * X**2).sum(), (g * X**3).sum()])


class TorchLR:
    """torch.optim.lr_scheduler's chainable (recursive) forms, one call per epoch."""

    def __init__(self, kind: str, base: float, **kw: float) -> None:
        self.kind, self.base, self.kw, self.lr, self.epoch = kind, base, kw, base, 0

    def step(self) -> None:
        self.epoch += 1
        e, kw = self.epoch, self.kw
        if self.kind == "step" and e % kw["step_size"] == 0:
            self.lr *= kw["gamma"]
        elif self.kind == "exp":
            self.lr *= kw["gamma"]
        elif self.kind == "cos":
            T, eta = kw["T_max"], kw["eta_min"]
            if (e - 1 - T) % (2 * T) == 0:
                self.lr += (self.base - eta) * (1 - math.cos(math.pi / T)) / 2
            else:
                self.lr = (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (self.lr - eta) + eta


def reference(update, steps: int = STEPS, sched: TorchLR | None = None) -> list[tuple[int, float]]:
    p = np.array([INIT[k] for k in "abcd"])
    state: dict = {}
    history = []
    for t in range(1, steps + 1):
        loss, g = loss_and_grad(p)
        if (t - 1) % LOG == LOG - 1:
            history.append((t - 1, loss))
        lr = sched.lr if sched else None
        p = update(p, g, t, state, lr)
        if sched:
            sched.step()
    return history


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    def update(p, g, t, st, lr_t):
        lr_t = lr if lr_t is None else lr_t
        g = g + weight_decay * p
        if momentum:
            st["b"] = g.copy() if t == 1 else momentum * st["b"] + (1 - dampening) * g
            g = g + momentum * st["b"] if nesterov else st["b"]
        return p - lr_t * g
    return update


def adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas

    def update(p, g, t, st, lr_t):
        lr_t = lr if lr_t is None else lr_t
        if decoupled:
            p = p - lr_t * weight_decay * p
        else:
            g = g + weight_decay * p
        st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g**2
        m_hat = st["m"] / (1 - b1**t)
        v_hat = st["v"] / (1 - b2**t)
        return p - lr_t * m_hat / (np.sqrt(v_hat) + eps)
    return update


def rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    def update(p, g, t, st, lr_t):
        lr_t = lr if lr_t is None else lr_t
        g = g + weight_decay * p
        st["v"] = alpha * st.get("v", 0.0) + (1 - alpha) * g**2
        v = st["v"]
        if centered:
            st["g"] = alpha * st.get("g", 0.0) + (1 - alpha) * g
            v = v - st["g"] ** 2
        if momentum:
            st["b"] = momentum * st.get("b", 0.0) + g / (np.sqrt(v) + eps)
            return p - lr_t * st["b"]
        return p - lr_t * g / (np.sqrt(v) + eps)
    return update


def adagrad(lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    def update(p, g, t, st, lr_t):
        lr_t = lr if lr_t is None else lr_t
        clr = lr_t / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * p
        st["s"] = st.get("s", initial_accumulator_value) + g**2
        return p - clr * g / (np.sqrt(st["s"]) + eps)
    return update


CASES = {
    "sgd": (gc.SGD(lr=1e-6), sgd(1e-6)),
    "sgd-momentum": (gc.SGD(lr=1e-6, momentum=0.9, dampening=0.1, weight_decay=0.01),
                     sgd(1e-6, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd-nesterov": (gc.SGD(lr=5e-7, momentum=0.8, nesterov=True, weight_decay=0.1),
                     sgd(5e-7, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "adam": (gc.Adam(lr=1e-3), adam(1e-3)),
    "adam-l2": (gc.Adam(lr=2e-3, betas=(0.8, 0.999), eps=1e-6, weight_decay=0.1),
                adam(2e-3, betas=(0.8, 0.999), eps=1e-6, weight_decay=0.1)),
    "adamw": (gc.AdamW(lr=2e-3, weight_decay=0.1), adam(2e-3, weight_decay=0.1, decoupled=True)),
    "rmsprop": (gc.RMSprop(lr=1e-4, alpha=0.999), rmsprop(1e-4, alpha=0.999)),
    "rmsprop-full": (gc.RMSprop(lr=1e-4, alpha=0.999, weight_decay=0.01, momentum=0.5, centered=True),
                     rmsprop(1e-4, alpha=0.999, weight_decay=0.01, momentum=0.5, centered=True)),
    "adagrad": (gc.Adagrad(lr=0.1, lr_decay=1e-3, weight_decay=0.01, initial_accumulator_value=0.5),
                adagrad(0.1, lr_decay=1e-3, weight_decay=0.01, initial_accumulator_value=0.5)),
}

SCHEDULED = {
    "sgd-step": (gc.SGD(lr=1e-6, schedule=gc.StepLR(step_size=300, gamma=0.5)), sgd(1e-6),
                 ("step", 1e-6, {"step_size": 300, "gamma": 0.5})),
    "adam-exp": (gc.Adam(lr=2e-2, schedule=gc.ExponentialLR(gamma=0.999)), adam(2e-2),
                 ("exp", 2e-2, {"gamma": 0.999})),
    "rmsprop-cos": (gc.RMSprop(lr=1e-4, alpha=0.999, schedule=gc.CosineAnnealingLR(T_max=700, eta_min=1e-6)),
                    rmsprop(1e-4, alpha=0.999), ("cos", 1e-4, {"T_max": 700, "eta_min": 1e-6})),
}


# Hyperparameters are chosen where training is not chaotic: RMSprop with alpha=0.99 (or Adam
# with beta1=0.8 near the optimum) amplifies a rounding difference of 1e-16 (the fused loop
# sums in another order than numpy) to 1e-4 within 2000 steps, in numpy alone.


def fit(loss, optimizer, **kw):
    return gc.fit(loss, data={"x": X, "y": Y}, init=INIT, optimizer=optimizer, steps=STEPS, log_every=LOG, **kw)


def assert_history_close(got, want, rtol):
    assert [t for t, _ in got] == [t for t, _ in want]
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=rtol, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_formulas(loss, name):
    opt, update = CASES[name]
    want = reference(update)
    res = fit(loss, opt)
    assert_history_close(res.history, want, 1e-8)
    assert res.history[-1][1] < 0.5 * res.history[0][1]  # it does train


@pytest.mark.parametrize("name", SCHEDULED)
def test_schedules_match_torch(loss, name):
    opt, update, (kind, base, kw) = SCHEDULED[name]
    want = reference(update, sched=TorchLR(kind, base, **kw))
    assert_history_close(fit(loss, opt).history, want, 1e-8)


def test_schedule_line_in_source(loss):
    src = fit(loss, SCHEDULED["sgd-step"][0]).source
    assert "lr_t = gamma**math.floor((count - 1)/step_size)*lr" in src


def test_hyperparameters_do_not_change_source(loss):
    one = fit(loss, gc.Adam(lr=1e-2))
    two = fit(loss, gc.Adam(lr=5e-3, betas=(0.5, 0.9), eps=1e-4))
    assert one.source == two.source
    assert one.history != two.history


def test_float32(loss):
    res = fit(loss, gc.Adam(lr=1e-2), dtype="float32")
    assert isinstance(res.params["a"], float)
    want = reference(adam(1e-2))
    np.testing.assert_allclose(res.history[-1][1], want[-1][1], rtol=1e-3)


@pytest.mark.parametrize("make, match", [
    (lambda: gc.SGD(lr=-1.0), "lr"),
    (lambda: gc.Adam(lr=1e-3, betas=(0.9, 1.5)), "betas"),
    (lambda: gc.RMSprop(alpha=2.0), "alpha"),
    (lambda: gc.Adagrad(eps=float("nan")), "eps"),
    (lambda: gc.SGD(lr=1.0, nesterov=True), "nesterov"),
    (lambda: gc.StepLR(step_size=0), "step_size"),
    (lambda: gc.CosineAnnealingLR(T_max=2.5), "T_max"),
    (lambda: gc.Adam(schedule="cosine"), "schedule"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(gc.GraphcError, match=match):
        make()


def test_state_slots(loss):
    res = fit(loss, gc.Adam(lr=1e-2))
    assert set(res.state) == {"count", "exp_avg", "exp_avg_sq"}
    assert res.state["count"] == STEPS and res.state["exp_avg"].shape == (4,)


# ---- the update expressions, at a point, vs torch's documented formulas ------------------
# Each optimizer's update(p, g, state, t) is SymPy; evaluated here with sympy at one point and
# compared with the formula of torch.optim's documentation, written out independently.
PT, GT = 0.7, -0.3  # the parameter element and its gradient
STATE0 = {"momentum_buffer": 0.25, "exp_avg": 0.05, "exp_avg_sq": 0.02, "square_avg": 0.04,
          "grad_avg": -0.1, "sum": 0.5}


def evaluate(opt, t: int) -> tuple[float, dict[str, float]]:
    """opt.update at p=PT, g=GT, state=STATE0, step t, lr_t=lr, with its hyperparameters' values."""
    p, g, step = sp.symbols("p_ g_ t_", real=True)  # update is written for any symbols
    state = {s: sp.Symbol(f"old_{s}", real=True) for s in opt.slots}
    upd = opt.update(p, g, state, step)
    at = {p: PT, g: GT, step: t, optim.LR_T: opt.hyper["lr"]}
    at |= {optim.hyper_symbol(k): v for k, v in opt.hyper.items()}
    at |= {state[s]: STATE0[s] for s in opt.slots}
    assert set(upd.state) == set(opt.slots)
    return float(upd.param.subs(at)), {s: float(e.subs(at)) for s, e in upd.state.items()}


def torch_sgd(t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    g = GT + weight_decay * PT
    new = {}
    if momentum:
        b = g if t == 1 else momentum * STATE0["momentum_buffer"] + (1 - dampening) * g
        new["momentum_buffer"] = b
        g = g + momentum * b if nesterov else b
    return PT - lr * g, new


def torch_adam(t, lr, betas, eps, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    p, g = PT, GT
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = b1 * STATE0["exp_avg"] + (1 - b1) * g
    v = b2 * STATE0["exp_avg_sq"] + (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return p - lr * m_hat / (math.sqrt(v_hat) + eps), {"exp_avg": m, "exp_avg_sq": v}


def torch_rmsprop(t, lr, alpha, eps, weight_decay=0.0, momentum=0.0, centered=False):
    g = GT + weight_decay * PT
    v = alpha * STATE0["square_avg"] + (1 - alpha) * g**2
    new, v_tilde = {"square_avg": v}, v
    if centered:
        new["grad_avg"] = ga = alpha * STATE0["grad_avg"] + (1 - alpha) * g
        v_tilde = v - ga**2
    if momentum:
        new["momentum_buffer"] = b = momentum * STATE0["momentum_buffer"] + g / (math.sqrt(v_tilde) + eps)
        return PT - lr * b, new
    return PT - lr * g / (math.sqrt(v_tilde) + eps), new


def torch_adagrad(t, lr, lr_decay, weight_decay, eps):
    g = GT + weight_decay * PT
    clr = lr / (1 + (t - 1) * lr_decay)
    s = STATE0["sum"] + g**2
    return PT - clr * g / (math.sqrt(s) + eps), {"sum": s}


FORMULAS = {
    "sgd": (gc.SGD(lr=0.1), lambda t: torch_sgd(t, 0.1)),
    "sgd-momentum": (gc.SGD(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
                     lambda t: torch_sgd(t, 0.1, 0.9, 0.1, 0.01)),
    "sgd-nesterov": (gc.SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1),
                     lambda t: torch_sgd(t, 0.1, 0.8, 0.0, 0.1, nesterov=True)),
    "adam": (gc.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-3), lambda t: torch_adam(t, 0.01, (0.8, 0.99), 1e-3)),
    "adam-l2": (gc.Adam(lr=0.01, eps=1e-3, weight_decay=0.1),
                lambda t: torch_adam(t, 0.01, (0.9, 0.999), 1e-3, weight_decay=0.1)),
    "adamw": (gc.AdamW(lr=0.01, eps=1e-3, weight_decay=0.2),
              lambda t: torch_adam(t, 0.01, (0.9, 0.999), 1e-3, weight_decay=0.2, decoupled=True)),
    "rmsprop": (gc.RMSprop(lr=0.01, alpha=0.9, eps=1e-3), lambda t: torch_rmsprop(t, 0.01, 0.9, 1e-3)),
    "rmsprop-full": (gc.RMSprop(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.5, centered=True),
                     lambda t: torch_rmsprop(t, 0.01, 0.9, 1e-3, 0.1, 0.5, centered=True)),
    "adagrad": (gc.Adagrad(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-3),
                lambda t: torch_adagrad(t, 0.1, 0.01, 0.1, 1e-3)),
    "adagrad-plain": (gc.Adagrad(lr=0.1), lambda t: torch_adagrad(t, 0.1, 0.0, 0.0, 1e-10)),
}


@pytest.mark.parametrize("name", FORMULAS)
@pytest.mark.parametrize("t", [1, 2, 7])
def test_update_expressions_are_torchs_formulas(name, t):
    opt, formula = FORMULAS[name]
    got_p, got_state = evaluate(opt, t)
    want_p, want_state = formula(t)
    assert got_p == pytest.approx(want_p, rel=1e-14, abs=0)
    assert got_state == pytest.approx(want_state, rel=1e-14, abs=0)


def test_newton_update_steps_along_the_solved_direction():
    opt = gc.Newton(lr=0.5, damping=1e-3)
    assert (opt.order, gc.SGD(lr=1.0).order) == (2, 1)  # the capability, declared
    assert evaluate(opt, 3) == (pytest.approx(PT - 0.5 * GT, rel=1e-15), {})  # g: the direction delta
    assert opt.expressions().shift == optim.hyper_symbol("damping")  # added to H's diagonal


@pytest.mark.parametrize("name", SCHEDULED)
def test_schedule_lr_expression_is_torchs(name):
    opt, _, (kind, base, kw) = SCHEDULED[name]
    t = sp.Symbol("t", integer=True, positive=True)
    lr = opt.learning_rate(t).subs({optim.hyper_symbol(k): v for k, v in opt.hyper.items()})
    torch_lr = TorchLR(kind, base, **kw)  # the chainable form, stepped once per epoch
    for step in range(1, 1500):  # step t (1-based) runs at epoch t - 1
        assert float(lr.subs(t, step)) == pytest.approx(torch_lr.lr, rel=1e-12), step
        torch_lr.step()


def test_lr_is_the_hyperparameter_without_schedule():
    assert gc.Adam(lr=0.1).learning_rate(optim.COUNT) == optim.hyper_symbol("lr")


def test_update_symbols_are_hyperparameters_not_numbers():
    step = gc.Adam(lr=0.125, betas=(0.375, 0.625), eps=0.0625).expressions()
    exprs = [step.lr, step.update.param, *step.update.state.values()]
    numbers = {float(a) for e in exprs for a in e.atoms(sp.Number)}
    assert not numbers & {0.125, 0.375, 0.625, 0.0625}
    names = {str(s) for e in exprs for s in e.free_symbols}
    assert names == {"p", "g", "count", "lr_t", "lr", "beta1", "beta2", "eps",
                     "state_exp_avg", "state_exp_avg_sq"}


def test_structure_keys_the_plan_cache_not_the_numbers():
    assert gc.Adam(lr=1e-2).structure() == gc.Adam(lr=5e-3, betas=(0.5, 0.9), eps=1e-4).structure()
    distinct = [gc.Adam(), gc.Adam(weight_decay=0.1), gc.AdamW(), gc.SGD(lr=1.0),
                gc.SGD(lr=1.0, momentum=0.9), gc.SGD(lr=1.0, momentum=0.9, nesterov=True),
                gc.RMSprop(), gc.RMSprop(centered=True),
                gc.Adagrad(), gc.Adagrad(lr_decay=0.1), gc.Newton(),
                gc.SGD(lr=1.0, schedule=gc.StepLR(10)), gc.SGD(lr=1.0, schedule=gc.ExponentialLR(0.9))]
    assert len({opt.structure() for opt in distinct}) == len(distinct)


def test_update_may_only_use_its_own_hyperparameters():
    class Broken(gc.SGD):
        def update(self, p, g, state, t):
            return optim.Update(p - self.h.lr_t * self.h.momentum * g)  # no momentum: not passed

    with pytest.raises(gc.GraphcError, match="Broken: its update uses h.momentum"):
        Broken(lr=1.0).expressions()


def test_update_is_printed_through_the_printer(loss):
    src = fit(loss, gc.SGD(lr=1e-6)).source
    assert "    for idx in range(4):\n        theta[idx] -= lr_t*grad[idx]\n" in src
    src = fit(loss, CASES["adam"][0]).source
    assert "exp_avg = beta1*state[0, idx] + (1 - beta1)*grad[idx]" in src
    assert "state[0, idx] = exp_avg" in src


@pytest.mark.parametrize("name", ["g", "lr", "exp_avg"])
def test_train_inlines_the_update_unless_it_assigns_a_data_name(name):
    """train holds update's lines, unless one of update's locals (lr: a hyperparameter's,
    exp_avg: a slot's new value) is a data array's name, which the whole loop reads."""
    xs, ys = gc.data(name), gc.data("y")
    a, b = gc.params("a b")
    x = np.linspace(-1.0, 1.0, 101)
    res = gc.fit(gc.sum((a + b * xs - ys) ** 2), data={name: x, "y": 2.0 * x + 0.5},
                 init={"a": 0.0, "b": 0.0}, optimizer=gc.Adam(lr=0.05), steps=300, log_every=100)
    train = res.compiled.source.split("def train(")[1]
    assert ("update(theta, grad, hyper, state, count)" in train) == (name != "g")
    assert res.params["b"] == pytest.approx(2.0, abs=0.05)


# ---- second order ------------------------------------------------------------------------
def test_newton_reaches_least_squares_optimum(loss):
    A = np.stack([X**0, X, X**2, X**3], axis=1)
    best = np.linalg.lstsq(A, Y, rcond=None)[0]
    res = gc.fit(loss, data={"x": X, "y": Y}, init=INIT, optimizer=gc.Newton(), steps=10, log_every=1)
    got = np.array([res.params[k] for k in "abcd"])
    np.testing.assert_allclose(got, best, rtol=0, atol=1e-8)
    best_loss = float(np.square(A @ best - Y).sum())
    assert abs(res.history[1][1] - best_loss) <= 1e-8 * best_loss  # one step on a quadratic
    assert "solve(hess, delta)" in res.source


def test_damped_newton_converges(loss):
    res = gc.fit(loss, data={"x": X, "y": Y}, init=INIT, optimizer=gc.Newton(lr=0.9, damping=1e-3),
                 steps=10, log_every=1)
    A = np.stack([X**0, X, X**2, X**3], axis=1)
    best = np.linalg.lstsq(A, Y, rcond=None)[0]
    np.testing.assert_allclose([res.params[k] for k in "abcd"], best, atol=1e-7)


def test_newton_nonlinear_hessian():
    # exp(w * x) fit: the Hessian depends on w (and on a) through the data
    x, y = gc.data("x"), gc.data("y")
    a, w = gc.params("a w")
    xs = np.linspace(0, 1, 50)
    ys = 2.0 * np.exp(0.7 * xs)
    loss = gc.sum((a * gc.exp(w * x) - y) ** 2)
    res = gc.fit(loss, data={"x": xs, "y": ys}, init={"a": 1.5, "w": 0.5}, optimizer=gc.Newton(),
                 steps=10, log_every=1)
    assert res.params["a"] == pytest.approx(2.0, abs=1e-10)
    assert res.params["w"] == pytest.approx(0.7, abs=1e-10)


def test_newton_rejects_tensor_parameters():
    xx, y = gc.data("xx", shape=(None, 3)), gc.data("y")
    W = gc.param("W", shape=(3,))
    loss = gc.sum((xx @ W - y) ** 2)
    with pytest.raises(gc.GraphcError, match="'W'"):
        gc.fit(loss, data={"xx": np.ones((4, 3)), "y": np.ones(4)}, init={"W": np.zeros(3)},
               optimizer=gc.Newton(), steps=1)


def test_newton_on_a_subset_keeps_the_others(loss):
    nodes = {p.name: p for p in gc.Graph.from_outputs(loss).params}
    res = gc.fit(loss, data={"x": X, "y": Y}, init=INIT, optimizer=gc.Newton(), steps=3, log_every=1,
                 wrt=[nodes["c"], nodes["a"]])
    assert res.params["b"] == INIT["b"] and res.params["d"] == INIT["d"]
    A = np.stack([X**2, X**0], axis=1)
    best = np.linalg.lstsq(A, Y - INIT["b"] * X - INIT["d"] * X**3, rcond=None)[0]
    np.testing.assert_allclose([res.params["c"], res.params["a"]], best, atol=1e-8)
