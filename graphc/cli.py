"""The `graphc` command line (also `python -m graphc`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a define-then-run gradient compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fit a cubic to sin(x): eager numpy vs compiled, with timings and the generated code")
    cache = sub.add_parser("cache", help="inspect or clear the on-disk cache of generated code")
    cache.add_argument("action", choices=["info", "clear"])
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo

        demo()
    elif args.command == "cache":
        from . import loader

        if args.action == "info":
            info = loader.cache_info()
            print(f"{info['path']}: {info['modules']} module(s), {info['files']} file(s), {info['bytes']} bytes")
        else:
            print(f"removed {loader.clear_cache()} file(s) from {loader.cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
