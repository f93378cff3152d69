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
their default arguments, and the objects of bound methods (self.rng);
and one step further: in the modules, objects, classes, containers and
functions those hold (a dropout layer's self.rng, a helper module's rng).
A generator made inside the function from a fixed seed draws the same numbers
on every call in NumPy too, so it is not a concern (and is not seen); one
made there without a seed is not seen either.

While other threads run (a data loader, a notebook kernel's), a change of
NumPy's or Python's global generator may be theirs: then graphc warns
instead of raising.
"""
from __future__ import annotations

import functools
import random
import sys
import threading
import types
import warnings

import numpy as np

from graphc import errors

_GENERATORS = (np.random.Generator, np.random.RandomState, random.Random)


def _state(generator):
    """A value that compares equal while the generator has not drawn."""
    if isinstance(generator, random.Random):
        return generator.getstate()
    bits = generator.bit_generator if isinstance(generator, np.random.Generator) \
        else generator._bit_generator
    return _hashable(bits.state)


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
    """id -> (name, generator) for the generators `fn` can reach: NumPy's and
    Python's global ones; in the globals, closures and default arguments of
    fn and the functions it wraps, and of a method's object; and one step
    further, in the modules, objects, classes, containers and functions
    those hold (a dropout layer's self.rng, a helper module's rng)."""
    reach = {id(np.random.mtrand._rand): ("NumPy's global generator (np.random.*)",
                                          np.random.mtrand._rand),
             id(random._inst): ("Python's random module", random._inst)}
    functions, owners = _functions(fn)
    named = [(f"self.{name}", value) for owner in owners
             for name, value in getattr(owner, "__dict__", {}).items()]
    for f in functions:
        named += _names_of(f)
    for name, value in named:       # direct names first: they name a generator best
        if isinstance(value, _GENERATORS):
            reach.setdefault(id(value), (name, value))
    seen = set()
    for name, value in named:
        if id(value) in seen:
            continue
        seen.add(id(value))
        for inner_name, inner in _held(value):
            if isinstance(inner, _GENERATORS):
                reach.setdefault(id(inner), (f"{name}.{inner_name}", inner))
    return reach


def _names_of(f) -> list[tuple[str, object]]:
    """The names a function reads from outside: globals, closure cells, defaults."""
    code = f.__code__
    positional = code.co_varnames[:code.co_argcount]
    defaults = f.__defaults__ or ()
    return list(f.__globals__.items()) + [
        (name, c.cell_contents) for name, c in zip(code.co_freevars, f.__closure__ or ())
        if _filled(c)] + list(zip(positional[len(positional) - len(defaults):], defaults)) + \
        list((f.__kwdefaults__ or {}).items())


def _held(value) -> list[tuple[str, object]]:
    """What a module, function, object, class or small container holds."""
    if isinstance(value, types.FunctionType):
        return [] if errors.is_internal(value.__code__.co_filename) else _names_of(value)
    if isinstance(value, types.ModuleType) and value.__name__.partition(".")[0] in _LIBRARIES:
        return []       # NumPy's, SciPy's, the standard library's: no user's generator there
    if isinstance(value, dict):
        return [(repr(k), v) for k, v in list(value.items())[:_CONTAINER_LIMIT]]
    if isinstance(value, (list, tuple)):
        return [(f"[{k}]", v) for k, v in enumerate(value[:_CONTAINER_LIMIT])]
    attributes = getattr(value, "__dict__", None)
    return list(attributes.items()) if isinstance(attributes, (dict, types.MappingProxyType)) \
        else []


_CONTAINER_LIMIT = 64
_LIBRARIES = {"numpy", "scipy", "numba", "graphc", "networkx", *sys.stdlib_module_names}




class Draws:
    """A snapshot of the generators a function can reach, taken before it is
    traced; `check()` after the trace raises if one of them has drawn since.
    Other threads may draw from the same generators meanwhile (a data loader
    shuffling with np.random): then it warns instead of raising."""

    def __init__(self, fn):
        self.fn = fn
        self.generators = _reachable(fn)
        self.before = {key: _state(g) for key, (_, g) in self.generators.items()}

    def check(self) -> None:
        drawn = [name for key, (name, g) in self.generators.items()
                 if _state(g) != self.before[key]]
        if not drawn:
            return
        users = [f.__code__ for f in _functions(self.fn)[0]
                 if not errors.is_internal(f.__code__.co_filename)]
        line = (users[0].co_filename, users[0].co_firstlineno) if users else ("<unknown>", 0)
        where = errors.at(f"{line[0]}:{line[1]}" if users else None)
        message = (f"the traced function draws random numbers from {' and '.join(drawn)}{where}: "
                   f"they would be drawn once, while tracing, and every call would reuse them. "
                   f"Draw them outside and pass them in as an argument "
                   f"(noise = rng.standard_normal(shape); step(params, x, noise))")
        # NumPy's and Python's global generators are the ones other threads (a
        # data loader, a notebook's) draw from meanwhile: for them alone, a warning
        shared = {id(np.random.mtrand._rand), id(random._inst)}
        if threading.active_count() > 1 and all(
                key in shared for key, (name, _) in self.generators.items() if name in drawn):
            warnings.warn_explicit(f"graphc: {message}; or did another thread draw from it "
                                   f"meanwhile?", RuntimeWarning, *line)
        else:
            raise errors.UnsupportedOpError(message)
