"""The `graphc` command: demo, bench, cache, warm."""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (epochs, threads), refused before any work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cache_megabytes(text: str) -> float:
    """argparse type: a finite number of megabytes > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text} "
                                         f"(`graphc cache clear` empties the cache)")
    return value


def output_path(text: str) -> str:
    """argparse type: a file to write at the end of a run, whose directory must
    exist now (not after minutes of training or benchmarking)."""
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{text}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: directory {directory} is not writable")
    return text


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
    demo.add_argument("--epochs", type=positive_int, default=30)
    demo.add_argument("--plot", metavar="PATH", type=output_path,
                      help="save the loss curve as a PNG")
    demo.add_argument("--no-progress", action="store_true")
    bench = sub.add_parser("bench", help="run the benchmark harness against NumPy",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    cache = sub.add_parser("cache", help="show, trim or empty the compile cache")
    cache.add_argument("action", choices=["info", "prune", "clear"],
                       help="prune: remove the entries used least recently until the cache "
                            "is within its bound (GRAPHC_CACHE_MAX_MB)")
    cache.add_argument("--max-mb", type=cache_megabytes, metavar="MB",
                       help="prune to this many megabytes instead of GRAPHC_CACHE_MAX_MB")
    warm = sub.add_parser("warm", help="compile graphc's kernels now instead of at the first "
                                       "model that uses each")
    warm.add_argument("families", nargs="*", metavar="FAMILY",
                      help="kernel families to compile (default: all)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from graphc import demo as demo_module
        demo_module.run(epochs=args.epochs, plot=args.plot, progress=not args.no_progress)
    elif args.command == "warm":
        from graphc import warm as warm_module
        unknown = [f for f in args.families if f not in warm_module.FAMILIES]
        if unknown:
            parser.error(f"unknown kernel families {unknown}; choose from "
                         f"{', '.join(warm_module.FAMILIES)}")
        warm_module.warm(args.families or None)
    elif args.command == "cache":
        if args.max_mb is not None and args.action != "prune":
            cache.error("--max-mb goes with `graphc cache prune`")
        _cache(args.action, args.max_mb)
    return 0


def _cache(action: str, max_mb: float | None) -> None:
    from graphc import cache_limit, code_files, runtime
    directory = runtime.cache_dir()
    found = cache_limit.entries(directory)
    if action == "info":
        limit = cache_limit.max_bytes()
        bound = "none" if limit is None else f"{limit / 1e6:g} MB"
        print(f"cache directory: {directory}\nmodules: {sum(e.is_module for e in found)}\n"
              f"size: {sum(e.size for e in found) / 1e6:.1f} MB\n"
              f"bound: {bound} (GRAPHC_CACHE_MAX_MB)")
        kernels = directory / code_files.KERNELS_FOLDER
        if kernels.is_dir():        # not bound: one copy per graphc version that exported
            size = sum(f.stat().st_size for f in kernels.rglob("*") if f.is_file())
            print(f"kernels exported steps share: {size / 1e6:.1f} MB ({kernels})")
    elif action == "prune":
        limit = cache_limit.max_bytes() if max_mb is None else int(max_mb * 1e6)
        if limit is None:
            print("the cache has no bound (GRAPHC_CACHE_MAX_MB=0): nothing pruned")
            return
        removed, freed, kept = cache_limit.prune(directory, limit)
        print(f"removed {_count(removed, 'entry', 'entries')} ({freed / 1e6:.1f} MB) from "
              f"{directory}; {kept / 1e6:.1f} MB kept (entries used in the last "
              f"{cache_limit.RECENT_SECONDS / 60:.0f} minutes are never removed)")
    else:
        removed = [e for e in found if cache_limit.remove_entry(e)[0]]   # (not one being loaded)
        modules = sum(e.is_module for e in removed)
        with contextlib.suppress(OSError):     # only if nothing else is in it
            (directory / "__pycache__").rmdir()
        print(f"removed {_count(modules, 'cached module', 'cached modules')} from {directory}")
        kernels = directory / code_files.KERNELS_FOLDER     # exported steps' (graphc/code_files.py)
        if kernels.is_dir() and not kernels.is_symlink():
            shutil.rmtree(kernels, ignore_errors=True)
            print(f"removed the kernels exported steps share ({kernels})")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


if __name__ == "__main__":
    sys.exit(main())
