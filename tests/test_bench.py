"""The benchmark suite: its workloads, its report, and `graphc bench --quick` end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from graphc.tools import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_full_suite_is_the_one_the_issue_asks_for():
    suite = {w.name: w for w in bench.workloads(quick=False)}
    assert (suite["tutorial"].n, suite["tutorial"].steps) == (2000, 2000)
    assert sorted(w.n for w in suite.values() if w.name.startswith("large")) == [10**6, 10**7]
    assert all(w.steps == 20 for w in suite.values() if w.name.startswith("large"))
    assert (suite["mlp"].n, suite["mlp"].width) == (10_000, 32)
    for w in suite.values():  # the cubic takes the tutorial's step at every N
        if w.kind == "poly":
            assert w.lr * w.n == pytest.approx(1e-6 * 2000)


def test_numpy_competitors_agree_on_a_tiny_problem():
    w = bench.Workload("tiny", "poly", 50, 30, 4e-5)
    data, init = bench.problem(w)
    ref = bench.numpy_tutorial(w, data, init)()
    assert bench.rel_err(bench.numpy_tuned(w, data, init)(), ref) < 1e-12
    assert bench.rel_err({**ref, "a": ref["a"] * (1 + 1e-3)}, ref) == pytest.approx(1e-3)


def fake_report():
    w = bench.Workload("tutorial", "poly", 2000, 2000, 1e-6)
    rows = [bench.Row("tutorial", "numpy (tutorial)", 1e-4, [1e-4], None, None, 0.0),
            bench.Row("tutorial", "njit (hand-written)", 2e-6, [2e-6], 0.5, None, 1e-16),
            bench.Row("tutorial", "graphc cpu", 2.2e-6, [2.2e-6], 2.0, 0.1, 2e-16),
            bench.Row("tutorial", "torch eager", ok=False, note="ImportError: boom")]
    report = {"machine": {"cpu": "Test CPU", "cores": 2, "numba_threads": 2, "versions": {"numpy": "2"}},
              "quick": False, "repeats": 5, "rtol": 1e-6, "skipped": ["jax jit"],
              "workloads": [{"name": w.name, "label": w.label}], "results": [vars(r) for r in rows]}
    report["summary"] = {"cpu_vs_njit": {"workload": "tutorial", "ratio": 1.1, "target": 1.3}}
    return report


def test_markdown_table_reports_ratios_errors_and_failures():
    text = bench.markdown(fake_report())
    assert "| graphc cpu | 2.2 us | 45.5x | 1.10 | 2 s | 100 ms | 2.0e-16 |" in text
    assert "| torch eager | failed: ImportError: boom |" in text
    assert "1.10x (within the 1.3x target)" in text and "skipped: jax jit" in text


def test_a_failed_warm_compile_says_why(tmp_path, monkeypatch):
    """The warm column was left empty, silently, when its process failed (issue #19)."""
    monkeypatch.setattr(bench, "_WARM", "import sys; sys.exit('boom: no graphc here')")
    times, why = bench.warm_compile_times(str(tmp_path), True, ["tutorial"], ["graphc cpu"])
    assert times == {} and why == "the warm-compile process failed (exit 1): boom: no graphc here"
    monkeypatch.setattr(bench, "_WARM", "print('hello')")
    assert bench.warm_compile_times(str(tmp_path), True, ["tutorial"], ["graphc cpu"]) == (
        {}, "the warm-compile process printed no timings: hello")
    assert bench.warm_compile_times(str(tmp_path), True, ["tutorial"], ["numpy (tutorial)"]) == ({}, "")
    report = fake_report()
    report["warm_note"] = why
    text = bench.markdown(report)
    assert "- compile (warm) not measured: the warm-compile process failed (exit 1): boom" in text


def test_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = bench.chart(fake_report(), tmp_path / "img" / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """What CI runs: every installed competitor trains and agrees with eager numpy."""
    env = dict(os.environ, PYTHONPATH=ROOT, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "graphc", "bench", "--quick", "--no-progress",
                          "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    names = {r["competitor"] for r in report["results"]}
    assert {"numpy (tutorial)", "numpy (tuned)", "njit (hand-written)", "graphc cpu", "graphc parallel"} <= names
    assert all(r["ok"] and r["max_rel_err"] <= bench.RTOL for r in report["results"])
    assert all(np.isfinite(r["step_s"]) for r in report["results"])
    graphc_rows = [r for r in report["results"] if r["competitor"].startswith("graphc")]
    assert all(r["warm_s"] is not None for r in graphc_rows)
    assert {"cpu_vs_njit", "parallel_vs_stream"} <= set(report["summary"])
    assert (tmp_path / "out" / "results.md").read_text().startswith("Machine:")
    assert (tmp_path / "out" / "benchmarks.png").exists()
