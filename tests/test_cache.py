"""The on-disk cache: damaged entries are detected and rebuilt; versions invalidate; `cache clear`."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import graphc as gc
from graphc.runtime import loader

from . import strategies  # noqa: F401 - private cache dir when run alone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XS = np.linspace(-1.0, 1.0, 101)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    return tmp_path


def build(tag: str) -> gc.Node:
    x, p = gc.data("x"), gc.param(f"p_{tag}")
    return gc.sum((p * gc.sin(x) - x) ** 2)


def expected(p: float) -> float:
    return float(np.sum((p * np.sin(XS) - XS) ** 2))


def load(loss: gc.Node) -> gc.Compiled:
    """Compile as a new process would: forget the module this process already imported."""
    f = gc.compile(loss)
    sys.modules.pop(f.module.__name__, None)
    return gc.compile(loss)


def run(f: gc.Compiled) -> float:
    (name,) = f.params
    return f(x=XS, **{name: 0.5}).loss


def numba_files(f: gc.Compiled, suffix: str) -> list:
    path = f.path
    pycache = os.path.join(os.path.dirname(path), "__pycache__")
    stem = os.path.basename(path)[:-3]
    return sorted(os.path.join(pycache, n) for n in os.listdir(pycache) if n.startswith(stem) and n.endswith(suffix))


def test_second_load_is_a_hit(cache):
    loss = build("hit")
    assert run(gc.compile(loss)) == pytest.approx(expected(0.5), rel=1e-12)
    again = load(loss)
    assert again.timings["cache"] == "hit"
    assert run(again) == pytest.approx(expected(0.5), rel=1e-12)
    assert again.module.evaluate._cache_misses.total() == 0  # Numba loaded machine code


@pytest.mark.parametrize("damage", ["truncate", "other code"])  # any mismatch takes one path
def test_damaged_generated_source_is_rewritten(cache, damage, tmp_path):
    loss = build(f"py_{damage.replace(' ', '_')}")
    f = gc.compile(loss)
    run(f)
    source = f.source
    marker = tmp_path / "marker"
    text = {"truncate": source[: len(source) // 2], "garbage": "\x00\x01 not python (",
            "empty": "", "other code": f"open({str(marker)!r}, 'w').close()\n"}[damage]
    with open(f.path, "w", encoding="utf-8") as fh:
        fh.write(text)
    again = load(loss)
    assert again.timings["cache"] == "miss"
    assert run(again) == pytest.approx(expected(0.5), rel=1e-12)
    with open(again.path, encoding="utf-8") as fh:
        assert fh.read() == source
    assert not marker.exists()  # the altered file was never imported


@pytest.mark.parametrize("suffix", [".nbi", ".nbc"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_numba_cache_is_rebuilt(cache, suffix, damage):
    loss = build(f"nb_{suffix[1:]}_{damage}")
    f = gc.compile(loss)
    run(f)
    files = numba_files(f, suffix)
    assert files
    for path in files:
        with open(path, "rb") as fh:
            data = fh.read()
        with open(path, "wb") as fh:
            fh.write({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    again = load(loss)
    assert again.timings["cache"] == "miss"
    assert run(again) == pytest.approx(expected(0.5), rel=1e-12)
    third = load(loss)  # the rebuilt entry is whole again
    assert third.timings["cache"] == "hit" and run(third) == pytest.approx(expected(0.5), rel=1e-12)


def test_stale_temporary_files_do_no_harm(cache):
    loss = build("tmp")
    f = gc.compile(loss)
    run(f)
    for path in numba_files(f, ".nbi"):
        with open(path + ".tmp.deadbeef", "wb") as fh:
            fh.write(b"half a write")
    assert run(load(loss)) == pytest.approx(expected(0.5), rel=1e-12)


@pytest.mark.parametrize("module, attr", [(loader, "__version__"), (numba, "__version__"), (np, "__version__")])
def test_a_new_version_invalidates_entries(cache, monkeypatch, module, attr):
    loss = build("version")
    f = gc.compile(loss)
    run(f)
    key = loader.cache_key(f.source)
    monkeypatch.setattr(module, attr, getattr(module, attr) + ".post1")
    assert loader.cache_key(f.source) != key
    if module is loader:  # one real rebuild (the others differ the same way: in the key)
        again = load(loss)
        assert again.timings["cache"] == "miss" and again.path != f.path
        assert run(again) == pytest.approx(expected(0.5), rel=1e-12)


def test_cli_cache_info_and_clear(cache):
    run(gc.compile(build("cli")))
    assert list(cache.glob("*.py"))
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    info = subprocess.run([sys.executable, "-m", "graphc", "cache", "info"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0 and "1 module(s)" in info.stdout, info.stdout + info.stderr
    clear = subprocess.run([sys.executable, "-m", "graphc", "cache", "clear"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert clear.returncode == 0 and "removed" in clear.stdout, clear.stdout + clear.stderr
    assert not cache.exists() or not any(cache.rglob("*"))
    assert run(load(build("cli"))) == pytest.approx(expected(0.5), rel=1e-12)  # usable again
