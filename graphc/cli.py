"""The `graphc` command: demo, bench, cache."""
from __future__ import annotations

import argparse
import shutil
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # the harness owns its options (and its --help); argparse's REMAINDER would
        # swallow or reject options that come before the first positional word
        from graphc.benchmarks import harness
        return harness.main(argv[1:]) or 0
    parser = argparse.ArgumentParser(prog="graphc", description="graphc: a JIT compiler for NumPy "
                                     "training code")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train an MLP on the shipped digits data set")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--plot", metavar="PATH", help="save the loss curve as a PNG")
    demo.add_argument("--no-progress", action="store_true")
    bench = sub.add_parser("bench", help="run the benchmark harness against NumPy",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    cache = sub.add_parser("cache", help="show or empty the compile cache")
    cache.add_argument("action", choices=["info", "clear"])
    args = parser.parse_args(argv)

    if args.command == "demo":
        from graphc import demo as demo_module
        demo_module.run(epochs=args.epochs, plot=args.plot, progress=not args.no_progress)
    elif args.command == "cache":
        from graphc import runtime
        directory = runtime.cache_dir()
        files = list(directory.glob("graphc_*.py")) if directory.exists() else []
        if args.action == "info":
            size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) \
                if directory.exists() else 0
            print(f"cache directory: {directory}\nmodules: {len(files)}\nsize: {size / 1e6:.1f} MB")
        else:
            if directory.exists():
                shutil.rmtree(directory)
            print(f"removed {len(files)} cached modules from {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
