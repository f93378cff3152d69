"""graphc's error types: each is a GraphcError *and* the matching built-in type.

Errors name the user's own source line. `user_location()` finds it by walking
the stack to the first frame that belongs neither to graphc nor to NumPy.
"""
from __future__ import annotations

import functools
import os
import re
import sys

import numpy as np

_GRAPHC_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNELS_DIR = os.path.join(os.path.dirname(_GRAPHC_DIR), "kernels")
_SKIP_PREFIXES = (_GRAPHC_DIR + os.sep, _KERNELS_DIR + os.sep)   # not graphc_examples/
_SKIP_MODULES = ("numpy", "contextlib", "functools", "scipy")


class GraphcError(Exception):
    """Base class of every error graphc raises."""


class CacheWarning(UserWarning):
    """The compile cache could not be used as configured; graphc carried on without it."""


class TracerError(GraphcError, TypeError):
    """Python control flow or float()/bool()/int() on a traced value."""


class ShapeError(GraphcError, ValueError):
    """Incompatible shapes at trace time."""


class UnsupportedOpError(GraphcError, NotImplementedError):
    """A NumPy function or argument that graphc does not support."""


class UnsupportedMethodError(UnsupportedOpError, AttributeError):
    """An ndarray method or attribute that traced arrays do not have (an
    AttributeError too, so hasattr() stays False)."""


class GraphcTypeError(GraphcError, TypeError):
    """Wrong dtypes, non-scalar losses, mismatched parameter pytrees."""


class GraphcIndexError(GraphcError, IndexError):
    """An index or label out of range, detected before any write."""


class GraphcValueError(GraphcError, ValueError):
    """An invalid argument value (for example an optimizer setting)."""


class GraphcLinAlgError(GraphcError, np.linalg.LinAlgError):
    """LAPACK refused a matrix (singular, not positive definite): NumPy's
    LinAlgError, so code catching that catches this."""


class GraphcOverflowError(GraphcError, OverflowError):
    """A Python integer argument outside the integer type NumPy converts it to."""


class RenderError(GraphcError, RuntimeError):
    """Drawing a graph needs Graphviz's `dot`, which is missing."""


# What compiled code raises (index checks, codegen.raises_in_loop, the
# int_range_check op) and NumPy raises in the interpreter -> graphc's type
_FROM_NATIVE = {IndexError: GraphcIndexError, np.linalg.LinAlgError: GraphcLinAlgError,
                ValueError: GraphcValueError,
                OverflowError: GraphcOverflowError}
NATIVE_ERRORS = tuple(_FROM_NATIVE)


def from_native(e: Exception, suffix: str = "", graph=None) -> GraphcError:
    """The GraphcError for `e`, one of NATIVE_ERRORS, with its message and
    `suffix`; node marks in the message (at_node) name `graph`'s source lines."""
    ours = next(t for native, t in _FROM_NATIVE.items() if isinstance(e, native))
    message = str(e) if graph is None else with_locations(str(e), graph)
    return ours(f"{message}{suffix}")


def is_internal(filename: str) -> bool:
    if filename.startswith("<"):        # <string>, <stdin>, a notebook cell: the user's
        return filename.startswith("<frozen")
    if filename[:1] != os.sep:          # relative to the current directory, which may change
        return _is_internal_path(os.path.abspath(filename))
    return _is_internal_path(filename)


@functools.lru_cache(maxsize=4096)
def _is_internal_path(path: str) -> bool:
    # cached: every traced op asks for the frames above it (a third of a
    # small model's re-trace went to abspath and these tests)
    path = os.path.normpath(path)
    if path.startswith(_SKIP_PREFIXES):
        return True
    return f"{os.sep}site-packages{os.sep}numpy{os.sep}" in path or any(
        f"{os.sep}{m}{os.sep}" in path and "site-packages" in path for m in _SKIP_MODULES)


def user_location() -> str:
    """`file:line` of the innermost stack frame that is the user's code."""
    frame = sys._getframe(1)
    while frame is not None:
        if not is_internal(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def users_stacklevel() -> int:
    """The `stacklevel` that attributes a warning, warned by the function
    calling this one, to the innermost frame of the user's code (a fixed one
    lands inside graphc when the call came by another path)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and is_internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def outermost_call_into(package: str) -> str | None:
    """The name of the outermost function of `package` (a library such as
    scipy) on the caller's stack, if the call came through it."""
    frame, found = sys._getframe(1), None
    while frame is not None:
        if f"{os.sep}{package}{os.sep}" in frame.f_code.co_filename:
            found = frame.f_code.co_name
        frame = frame.f_back
    return found


def name_users_line(e: GraphcError) -> None:
    """Give `e`, raised while tracing, the user's line if its message names
    none: the innermost frame of its traceback that is the user's code. Ops
    that check their arguments name it themselves; this covers the checks
    that do not (an axis given twice, np.stack of unequal shapes, ...)."""
    _name_line(e, lambda: users_line_in(e.__traceback__))


def name_callers_line(e: GraphcError) -> None:
    """Give `e` the line of the user's code calling into graphc, if its
    message names none (a step's checks of its params and state)."""
    _name_line(e, user_location)


def _name_line(e: GraphcError, location) -> None:
    """Append `location()`'s line to e's message, unless it names one already."""
    if e.args and isinstance(e.args[0], str) and " (at " not in e.args[0]:
        e.args = (e.args[0] + at(location()),) + e.args[1:]


def users_line_in(tb) -> str | None:
    """`file:line` of the innermost frame of traceback `tb` that is the user's code."""
    loc = None
    while tb is not None:
        if not is_internal(tb.tb_frame.f_code.co_filename):
            loc = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return loc


def users_error(kind: type, message: str) -> GraphcError:
    """A `kind` error whose message ends with the user's line (raise it)."""
    return kind(f"{message}{at(user_location())}")


def refuse(kind: type, message: str):
    """Raise users_error(kind, message): a NumPy call graphc cannot trace as written."""
    raise users_error(kind, message)


def at(loc: str | None) -> str:
    """A message suffix pointing at a user's source line."""
    return f" (at {loc})" if loc and loc != "<unknown>" else ""


# Compiled code names the node whose check failed, not the user's line: a
# module whose text held file:line was a new module, compiled anew (seconds),
# whenever the loss moved in its file or a notebook cell ran again. The line
# is put back when the error reaches Python (from_native) or is exported.
NODE_MARK = re.compile(r" \(at node (\d+)\)")     # at_node's mark; graphc.repeats reads it too


def at_node(node) -> str:
    """A message suffix for compiled code: `node`'s mark, which with_locations
    turns into at(node.loc)."""
    return f" (at node {node.id})"


def with_locations(text: str, graph, in_literals: bool = False) -> str:
    """`text` with each at_node mark replaced by the line of that node of
    `graph`; `in_literals`: the marks are inside string literals of source
    code, so quotes and backslashes in file names are escaped."""
    def located(mark):
        node_id = int(mark.group(1))
        if node_id not in graph.nx:       # never hide the error itself: drop the mark
            return ""
        suffix = at(graph.node(node_id).loc)
        if in_literals:     # backslashes, newlines, non-ASCII, then either quote
            suffix = suffix.encode("unicode_escape").decode("ascii")
            suffix = suffix.replace("'", "\\'").replace('"', '\\"')
        return suffix
    return NODE_MARK.sub(located, text)
