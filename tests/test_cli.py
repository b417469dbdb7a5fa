"""The command line: --help everywhere, show, cache (bench has its own file)."""

import os
import subprocess
import sys
import textwrap

import pytest

import graphc as gc
from graphc.tools import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys
import graphc as gc
x, y = gc.data("x"), gc.data("y")
a, b = gc.params("a b")
f = gc.compile(gc.sum((a + b * x - y) ** 2))
print("script ran with", sys.argv[1:])
gc.compile(gc.sum((a * x - y) ** 2))
if "--fail-late" in sys.argv:
    raise RuntimeError("got past the first graph")
"""


@pytest.fixture()
def script(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "fit_line.py"
    path.write_text(textwrap.dedent(SCRIPT))
    return str(path)


@pytest.mark.parametrize("argv", [[], ["show"], ["bench"], ["demo"], ["cache"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--help"])
    assert exc.value.code == 0
    assert "usage: graphc" in capsys.readouterr().out


def test_show_prints_the_generated_source_of_each_graph(script, capsys):
    assert cli.main(["show", script, "one", "--two"]) == 0
    out, err = capsys.readouterr()
    assert "script ran with ['one', '--two']" in err  # the script's own output goes to stderr
    assert out.count("# ==== graph") == 2 and "# ==== graph 2 of 2" in out
    assert out.count("def evaluate(") == 2 and "# loss = sum((a + b*x - y)**2)" in out


def test_show_can_add_gradients_stats_and_stop_early(script, capsys):
    argv = ["show", "--max", "1", "--no-source", "--gradients", "--stats", "--graph", "--latex", "--timings",
            script, "--fail-late"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "# ==== graph 1 of 1" in out and "def evaluate(" not in out
    assert "d(loss)/d(b) = 2*x*(a + b*x - y)" in out
    assert "bytes read per sample" in out and "{ lambda" in out and "\\begin{aligned}" in out
    assert "cache" in out


def test_show_dot_prints_graphviz_text(script, capsys):
    assert cli.main(["show", "--max", "1", "--no-source", "--dot", script]) == 0
    out = capsys.readouterr().out
    body = [line for line in out.splitlines() if line and not line.startswith("#")]  # dot skips '#' lines
    assert body[0] == 'digraph "graphc" {' and body[-1] == "}"
    for name in "abxy":
        assert any(f'[label="{name}\\n' in line for line in body), name
    assert sum("->" in line for line in body) >= 8


def test_show_says_when_nothing_compiled(tmp_path, capsys):
    empty = tmp_path / "empty.py"
    empty.write_text("print('hello')\n")
    assert cli.main(["show", str(empty)]) == 1
    assert "compiled no graphs" in capsys.readouterr().err


def test_cache_info_and_clear(script, capsys):
    import graphc as gc

    u, v = gc.params("u_cli v_cli")  # a graph no other test compiles, so its file is new
    gc.compile(gc.sum((u + v * gc.data("x")) ** 2))
    assert cli.main(["cache", "info"]) == 0
    assert "1 module(s), 1 plan(s)" in capsys.readouterr().out
    assert cli.main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    cli.main(["cache", "info"])
    assert "0 module(s)" in capsys.readouterr().out


def test_python_dash_m_graphc():
    out = subprocess.run([sys.executable, "-m", "graphc", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert out.returncode == 0
    for command in ("show", "bench", "demo", "cache"):
        assert command in out.stdout


WIDE = """
import graphc as gc
from graphc import nn
X, y, s = gc.data("X", shape=(None, 3)), gc.data("y"), gc.param("s")
model = nn.Sequential(nn.Linear(3, 4, name="l0"), nn.Tanh(), nn.Linear(4, 1, name="l1"))
f = gc.compile(nn.mse_loss(gc.flatten(model(X)), y, reduction="sum") + s**2, schedule="blocked")
"""


@pytest.fixture()
def wide_script(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "wide.py"
    path.write_text(textwrap.dedent(WIDE))
    return str(path)


def test_show_gradients_of_a_blocked_model_in_index_notation(wide_script, capsys):
    argv = ["show", "--no-source", "--gradients", "--latex", "--stats", "--graph", wide_script]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "d(loss)/d(l0.weight[j, k]) = " in out and "d(loss)/d(l1.bias[j]) = " in out
    assert "d(loss)/d(s) = 2*s" in out and "Sum(" in out and "(h, 0, 3)" in out
    assert "\\frac{\\partial L}{\\partial \\mathrm{l0\\_weight}_{j,k}}" in out
    assert "blocked schedule" in out and "{ lambda" in out and "not shown" not in out


def test_show_prints_what_it_can_and_one_line_for_the_rest(wide_script, capsys, monkeypatch):
    from graphc.tools import explain

    def refuse(self, node, idx):
        raise gc.UnsupportedError("no einsum today")

    monkeypatch.setitem(explain.INDEX_RULES, "einsum", refuse)
    assert cli.main(["show", "--no-source", "--gradients", "--latex", "--stats", wide_script]) == 0
    out, err = capsys.readouterr()
    assert "d(loss)/d(s) = 2*s" in out  # its gradient has no contraction
    assert "d(loss)/d(l0.weight): not shown: no einsum today" in out
    assert "# latex: not shown: no einsum today" in out
    assert "bytes read per sample" in out and "Traceback" not in out + err
