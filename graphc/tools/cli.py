"""The `graphc` command line (also `python -m graphc`): show, bench, demo, cache."""

from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
from typing import Iterator

SHOW_PARTS = ("source", "graph", "dot", "gradients", "latex", "stats", "timings")


class _Enough(Exception):
    """Raised inside the script once `--max` graphs have compiled."""


@contextlib.contextmanager
def recording(limit: int | None = None) -> Iterator[list]:
    """Collect every ``Compiled`` built while the block runs (a debugging hook, nothing more)."""
    from ..compile import Compiled

    seen: list = []
    original = Compiled.__init__

    def record(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        if all(c.source != self.source for c in seen):
            seen.append(self)
        if limit is not None and len(seen) >= limit:
            raise _Enough

    Compiled.__init__ = record
    try:
        yield seen
    finally:
        Compiled.__init__ = original


def show(script: str, args: list[str], parts: list[str], limit: int | None) -> int:
    """Run ``script`` as ``python script args...`` would, then print what it compiled."""
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        with recording(limit) as seen, contextlib.redirect_stdout(sys.stderr):
            try:
                runpy.run_path(script, run_name="__main__")
            except _Enough:
                pass
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    raise
    finally:
        sys.argv = argv
    if not seen:
        print(f"graphc show: {script} compiled no graphs", file=sys.stderr)
        return 1
    for k, compiled in enumerate(seen, 1):
        print(f"# ==== graph {k} of {len(seen)}: target={compiled.target} dtype={compiled.dtype} "
              f"file={compiled.path}")
        for part in parts:
            print(_shown(compiled, part).rstrip("\n"), end="\n\n")
    return 0


def _shown(compiled, part: str) -> str:
    """One part, or one line saying why it cannot be shown (no traceback)."""
    from ..errors import GraphcError

    try:
        return _part(compiled, part)
    except (GraphcError, RecursionError) as exc:
        return f"# {part}: not shown: {exc or type(exc).__name__}"


def _part(compiled, part: str) -> str:
    if part == "source":
        return compiled.source
    if part == "gradients":
        return _gradients(compiled)
    if part == "dot":  # Graphviz reads the "# ====" lines around it as comments
        from .drawing import to_dot

        return to_dot(compiled)
    if part == "latex":
        return compiled.latex()
    if part == "timings":
        return "\n".join(f"{k:<9} {v:.4f} s" if isinstance(v, float) else f"{k:<9} {v}"
                         for k, v in compiled.timings.items())
    return str(getattr(compiled, part))


def _gradients(compiled) -> str:
    """``d(loss)/d(a) = ...`` per parameter; a blocked plan's tensor parameter is shown at its
    index symbols (``d(loss)/d(W[j, k]) = ...``). One that cannot be shown is one line saying so."""
    from . import explain

    lines = []
    for name, expr in explain.shown_gradients(compiled.plan).items():
        if isinstance(expr, Exception):
            lines.append(f"d(loss)/d({name}): not shown: {expr or type(expr).__name__}")
        elif hasattr(expr, "variables") and hasattr(expr, "expr"):  # sympy.Lambda over the indices
            index = ", ".join(map(str, expr.variables))
            lines.append(f"d(loss)/d({name}[{index}]) = {expr.expr}")
        else:
            lines.append(f"d(loss)/d({name}) = {expr}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="graphc: a define-then-run gradient compiler")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("show", help="run a script and print the generated code of the graphs it compiles",
                       description="Run SCRIPT (with ARGS) as python would; its own output goes to stderr. "
                                   "Then print, for each distinct graph it compiled, the generated source "
                                   "(and whatever else you ask for).")
    s.add_argument("script", metavar="SCRIPT.py")
    s.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed on to the script")
    for part in SHOW_PARTS[1:]:
        dot = "the graph as Graphviz DOT text (gc.to_dot(f); pipe it to dot -Tsvg)"
        what = dot if part == "dot" else f"f.{part}"
        s.add_argument(f"--{part}", action="store_true", help=f"also print {what}")
    s.add_argument("--no-source", action="store_true", help="do not print the generated source")
    s.add_argument("--max", type=int, default=None, metavar="K",
                   help="stop the script once K graphs have compiled (skips long training runs)")

    b = sub.add_parser("bench", help="run the benchmark suite (graphc vs numpy, njit, torch, jax ...)",
                       description="Time the tutorial workloads against every competitor installed; write "
                                   "a Markdown table, a JSON file and a PNG chart.")
    from .bench import add_arguments

    add_arguments(b)

    sub.add_parser("demo", help="fit a cubic to sin(x): eager numpy vs compiled, with timings and the code",
                   description="What `make demo` runs: the tutorial's sine fit in eager numpy and in graphc.")
    c = sub.add_parser("cache", help="inspect or clear the on-disk cache of generated code and plans",
                       description="The cache lives in $GRAPHC_CACHE_DIR, else ~/.cache/graphc.")
    c.add_argument("action", choices=["info", "clear"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "show":
        parts = ([] if args.no_source else ["source"]) + [p for p in SHOW_PARTS[1:] if getattr(args, p)]
        return show(args.script, args.args, parts, args.max)
    if args.command == "bench":
        from .bench import run_cli

        return run_cli(args)
    if args.command == "demo":
        from .demo import main as demo

        demo()
        return 0
    from ..runtime import loader

    if args.action == "info":
        info = loader.cache_info()
        print(f"{info['path']}: {info['modules']} module(s), {info['plans']} plan(s), {info['files']} file(s), "
              f"{info['bytes']} bytes")
    else:
        print(f"removed {loader.clear_cache()} file(s) from {loader.cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
