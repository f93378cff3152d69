"""Random numbers drawn while a function is traced.

A NumPy draw inside a traced function (`np.random.standard_normal(shape)`
for a VAE's noise, `rng.random(shape) > p` for dropout) runs once, while
graphc traces, and its result becomes a constant of the graph: every later
call of the compiled function would reuse the same noise, silently. graphc
refuses that instead, as soon as the trace ends.

It compares the states of the generators the function can reach before and
after tracing: NumPy's global one (np.random.*), and the Generator and
RandomState objects in the globals and closures of the traced function and of
the functions it wraps (graphc's transforms close over the user's function),
their default arguments, and the objects of bound methods (self.rng).
A generator made inside the function from a fixed seed draws the same numbers
on every call in NumPy too, so it is not a concern (and is not seen).
"""
from __future__ import annotations

import functools
import types

import numpy as np

from graphc import errors

_GENERATORS = (np.random.Generator, np.random.RandomState)


def _state(generator) -> bytes:
    bits = generator.bit_generator if isinstance(generator, np.random.Generator) \
        else generator._bit_generator
    return repr(_hashable(bits.state)).encode()


def _hashable(value):
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in sorted(value.items()))
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value


def _functions(fn, limit: int = 16) -> tuple[list[types.FunctionType], list]:
    """fn and the functions it wraps: __wrapped__, partials, bound methods, and
    the functions in its closure cells (a transform's wrapper holds the user's);
    and the objects of the bound methods among them (self)."""
    found, owners, todo, seen = [], [], [fn], set()
    while todo and len(found) < limit:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        if isinstance(f, functools.partial):
            todo.append(f.func)
        elif isinstance(f, types.MethodType):
            todo.append(f.__func__)
            owners.append(f.__self__)
        elif isinstance(f, types.FunctionType):
            found.append(f)
            todo += [c.cell_contents for c in f.__closure__ or () if _filled(c)
                     and callable(c.cell_contents)]
        wrapped = getattr(f, "__wrapped__", None)
        if wrapped is not None:
            todo.append(wrapped)
    return found, owners


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:      # a cell not assigned yet
        return False
    return True


def _reachable(fn) -> dict[int, tuple[str, object]]:
    """id -> (name, generator) for the generators `fn` can reach."""
    reach = {id(np.random.mtrand._rand): ("NumPy's global generator (np.random.*)",
                                          np.random.mtrand._rand)}
    functions, owners = _functions(fn)
    for owner in owners:        # a method's object: self.rng
        for name, value in getattr(owner, "__dict__", {}).items():
            if isinstance(value, _GENERATORS):
                reach.setdefault(id(value), (f"self.{name}", value))
    for f in functions:
        code = f.__code__
        positional = code.co_varnames[:code.co_argcount]
        defaults = f.__defaults__ or ()
        names = list(f.__globals__.items()) + [
            (name, c.cell_contents) for name, c in zip(code.co_freevars, f.__closure__ or ())
            if _filled(c)] + list(zip(positional[len(positional) - len(defaults):], defaults)) + \
            list((f.__kwdefaults__ or {}).items())
        for name, value in names:
            if isinstance(value, _GENERATORS):
                reach.setdefault(id(value), (name, value))
    return reach


class Draws:
    """A snapshot of the generators `fn` can reach; `check()` raises if one
    of them has drawn since."""

    def __init__(self, fn):
        self.fn = fn
        self.generators = _reachable(fn)
        self.before = {key: _state(g) for key, (_, g) in self.generators.items()}

    def check(self) -> None:
        drawn = [name for key, (name, g) in self.generators.items()
                 if _state(g) != self.before[key]]
        if drawn:
            users = [f.__code__ for f in _functions(self.fn)[0]
                     if not errors.is_internal(f.__code__.co_filename)]
            where = errors.at(f"{users[0].co_filename}:{users[0].co_firstlineno}" if users else None)
            raise errors.UnsupportedOpError(
                f"the traced function draws random numbers from {' and '.join(drawn)}{where}: "
                f"they would be drawn once, while tracing, and every call would reuse them. "
                f"Draw them outside and pass them in as an argument "
                f"(noise = rng.standard_normal(shape); step(params, x, noise))")
