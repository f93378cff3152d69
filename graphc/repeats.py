"""Stretches of a driver's body that repeat, outlined: one function each,
called once per repeat.

A model written with a Python loop (an RNN over its time steps) traces into
a graph that repeats the step's nodes, and `run` repeats their statements: a
16-step LSTM's `run` held about 2400 lines, and Numba typed and lowered each
one, and LLVM optimized it (20-25 s of its first call; 9.2 s outlined).
Statements that repeat, the same code but for the names of their buffers
and the integer constants that pick the step (`np.uintp(3)`, a slice's
start), become one function of the first repeat's code, `<prefix>_part<k>`;
each repeat is a call of it with its own names. What later statements read
it returns, or, for views of the workspace (`alloc.carve`, `alloc.reshape`
of names the repeat does not assign), the caller makes them again; views
the caller made it reads, the part makes itself from their offsets. The
calls cost little (outlined against unrolled, in one process, interleaved:
the LSTM's step 982 against 964 us, a 25-step RNN's 274 against 282).

A repeat must be the first one's code renamed: a name it assigns one to one,
names it only reads as they come (two workspace offsets may be one in another
repeat). Names the code reads before it assigns them, or that exist before
it, are parameters; only names assigned at a statement's top level (not in
a loop or branch) are handed to later code. Its error messages must name
the same lines of the user's code (the part raises the first repeat's).
Other constants (a float that changes a step) keep the stretch unrolled.
"""
from __future__ import annotations

import builtins
import io
import keyword
import heapq
import re
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from graphc import errors

# A part has at least this many statements, and outlining a stretch must
# take at least MIN_SAVED statements out of the driver: a part is a function
# Numba compiles (0.6-1.1 s for an LSTM step's), which a few repeats do not
# pay back. A tanh RNN, cold first calls with parts against without:
# 6 steps 3.8-4.0 / 3.7-4.1 s, 10 steps 4.3 / 5.2-5.3 s. Small models (W1-W5,
# a handful of identical layers) keep their drivers as they were.
MIN_STATEMENTS = 8
MIN_SAVED = 100
# stretches _repeats checks at most (each a pass over its tokens)
_MAX_TRIED = 2000
# constants that may differ between repeats: typed integers' values
_VARYING_CALLS = {"uintp", "intp", "int64"}
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_BUILTIN = set(dir(builtins)) | set(keyword.kwlist)


@dataclass
class _Statement:
    lines: list[str]        # as in the driver, indent included
    tokens: list            # (kind, text): kind "L" a local name, "N" a number, "T" other
    targets: set            # local names its top level assigns
    nested_targets: set     # local names assigned inside its blocks (loops, branches)
    shape: tuple = ()       # its tokens with names and numbers as their kinds only
    strings: list = None    # its string literals
    opaque: bool = False    # binds names in ways not followed here (a comprehension, `with`)


@dataclass
class _Plan:
    params: list[tuple[str, tuple]]     # (the part's name, the name or number each repeat passes)
    results: list[tuple[str, tuple]]    # what the part returns, likewise
    renamed: dict[int, str]             # token positions the part's code names otherwise
    views: list[int]                    # statements (in a repeat) the caller runs again after it
    remade: list[str]                   # the part's first lines: views it makes of its parameters


def outline(lines: list[str], indent: int, global_names: set, prefix: str,
            decorator: str, prologue: list[str],
            same_line=lambda a, b: a == b, parts=None) -> tuple[list[str], list[str]]:
    """(functions, lines): the driver body `lines` (statements at `indent`
    spaces) with its repeated stretches replaced by calls of `functions`
    (sources, each under `decorator`, its body starting with `prologue`).
    `global_names`: the module's names (kernels, imports), never renamed.
    `same_line(a, b)`: whether error marks `(at node a)` and `(at node b)`
    name one source line (graphc.errors.at_node): repeats whose messages
    differ only so share the first's. `parts`: the names of the parts an
    earlier outline of the module defined, by their code (outline adds its
    own); a stretch with the same code calls that part rather than define
    one: `train_epoch` repeats `run`'s step, whose parts Numba would
    otherwise compile twice."""
    groups = _groups(lines, indent)
    # names, numbers and comments aside, a first test that every trace of a
    # model makes: 0.3 ms where tokenizing W2's driver took 7
    rough = [hash(tuple(_NUMBERED.sub("#", line.split("#", 1)[0]) for line in g))
             for g in groups]
    if not _candidates(rough):
        return [], lines
    statements = _statements(groups, indent, global_names | _BUILTIN)
    if statements is None:
        return [], lines
    uses = _Uses(statements)
    functions, out, done, view_rows = [], [], 0, set()
    by_source = {} if parts is None else parts
    for start, period, count, plan in sorted(_repeats(statements, uses, same_line),
                                             key=lambda c: c[0]):
        out += [line for s in statements[done:start] for line in s.lines]
        calls, views = _outlined(statements, start, period, count, plan, indent, prologue,
                                 decorator, prefix, functions, by_source)
        view_rows.update(len(out) + k for k in views)
        out += calls
        done = start + period * count
    out += [line for s in statements[done:] for line in s.lines]
    return functions, _without_unread(out, view_rows)


def _without_unread(lines: list[str], view_rows: set[int]) -> list[str]:
    """`lines` less the views the caller made again (`view_rows`, their
    indices) that no line reads. A repeat's views are made again for the
    statements after it that read them, as the driver was before outlining;
    when those are the next repeat, now a call passed their offsets, nothing
    reads them (273 of the 518 views in a 16-step LSTM's `run`, each typed and
    lowered by Numba before LLVM drops it). A view that only a dropped view
    read is dropped too. Names are counted in the whole text, comments and
    strings too, which can only keep a view: one regular expression (1 ms
    for an LSTM's driver, where the token scan took 30 ms in every process)."""
    if not view_rows:
        return lines
    reads = Counter(_IDENTIFIER.findall("\n".join(lines)))
    made = {_IDENTIFIER.search(lines[k]).group(): k for k in view_rows}  # `name = alloc...`
    dropped, stack = set(), [name for name in made if reads[name] == 1]
    while stack:
        k = made[stack.pop()]
        dropped.add(k)
        for name in _IDENTIFIER.findall(lines[k])[1:]:
            reads[name] -= 1
            if reads[name] == 1 and name in made and made[name] not in dropped:
                stack.append(name)
    return [line for k, line in enumerate(lines) if k not in dropped]


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_NUMBERED = re.compile(r"\b\w*\d\w*\b")      # v12, ws_o3, k4_n0, 64


class _Uses:
    """The first and last statement that mentions each local name, and the
    statements that assign it."""

    def __init__(self, statements):
        self.first, self.last, self.made_by = {}, {}, defaultdict(list)
        for i, s in enumerate(statements):
            for kind, text in s.tokens:
                if kind == "L":
                    self.first.setdefault(text, i)
                    self.last[text] = i
            for name in s.targets | s.nested_targets:
                self.made_by[name].append(i)

    def stable(self, name: str, before: int) -> bool:
        """Whether `name` holds one value from before statement `before` on."""
        made = self.made_by.get(name, ())
        return len(made) == 0 or len(made) == 1 and made[0] < before


_CONTINUED = re.compile(r"(else|elif|except|finally)\b")     # a clause of the statement before


def _groups(lines, indent) -> list[list[str]]:
    """The body's top-level statements, each as its lines."""
    pad = " " * indent
    groups: list[list[str]] = []
    for physical in (part for line in lines for part in line.split("\n")):
        code = physical.strip()
        top = physical.startswith(pad) and not physical.startswith(pad + " ")
        if top and code and not code.startswith("#") and not _CONTINUED.match(code):
            groups.append([physical])
        elif groups:
            groups[-1].append(physical)
        else:
            groups.append([physical])     # comments before the first statement
    return groups


# How each statement's code reads, by (the module's names, its text without
# its indent): `run`'s body and train_epoch's step are mostly the same
# statements (a 16-step LSTM's 1,800 each). Read-only once made. About 3 KB
# an entry (the LSTM's: 5.2 MB): at most 5,000 kept, then all dropped.
_READ: dict = {}
_READ_MAX = 5_000
_NAMES: dict = {}


def _statements(groups, indent, global_names):
    """The statements with their tokens; None if one does not tokenize on its own."""
    names = frozenset(global_names)
    names = _NAMES.setdefault(names, names)     # one object: equal keys compare by identity
    statements = []
    for group in groups:
        key = (names, _dedented(group, indent))
        read = _READ.get(key)
        if read is None:
            raw = _text_tokens(key[1])
            if raw is None:
                return None
            s = _classified(group, raw, global_names)
            shape = tuple(t if k == "T" else _message(t) if k == "S" else k for k, t in s.tokens)
            read = (s.tokens, s.targets, s.nested_targets, shape,
                    [t for k, t in s.tokens if k == "S"], s.opaque)
            if len(_READ) >= _READ_MAX:
                _READ.clear()
                _NAMES.clear()
            _READ[key] = read
        statements.append(_Statement(group, *read))
    return statements


def _dedented(group, indent) -> str:
    return "\n".join(line[indent:] for line in group) + "\n"


def _tokens(group, indent):
    return _text_tokens(_dedented(group, indent))


def _text_tokens(text):
    scanned = _scanned(text)
    if scanned is not None:
        return scanned
    try:
        return [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in _SKIPPED]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


# One token of generated code. The `tokenize` module (pure Python) took 0.14 s
# of a 16-step LSTM's 0.39 s in outline; this scan, 0.03 s. What it is not sure
# it reads as `tokenize` does (a tab, a backslash, a string's prefix or triple
# quotes, a number such as 0x1f, 1_000 or 06, `!`, a carriage return, a digit
# other than 0-9) goes to `tokenize`.
_LEXEME = re.compile(r"""
    (?P<space>[ ]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<op>\.\.\.|\*\*=|//=|>>=|<<=|->|:=|[-+*/%@&|^<>=!]=|\*\*|//|<<|>>|[-+*/%@&|^~<>()\[\]{}:;,.=])
""", re.X)
_KIND = {"name": tokenize.NAME, "number": tokenize.NUMBER, "string": tokenize.STRING,
         "op": tokenize.OP}
_QUOTES = ("'", '"')


def _scanned(text):
    """`tokenize`'s tokens of `text` less _SKIPPED's kinds, or None where
    this scan is not sure of them (then `tokenize` reads it)."""
    out, levels, depth = [], [0], 0
    rows = text.split("\n")
    if rows[-1] == "":
        rows.pop()
    for row, line in enumerate(rows, 1):
        if depth == 0:      # a logical line's indentation (blank and comment lines have none)
            code = line.lstrip(" ")
            col = len(line) - len(code)
            if code and code[0] != "#":
                if col > levels[-1]:
                    levels.append(col)
                    out.append(tokenize.TokenInfo(tokenize.INDENT, line[:col], (row, 0),
                                                  (row, col), line))
                while col < levels[-1]:
                    levels.pop()
                    out.append(tokenize.TokenInfo(tokenize.DEDENT, "", (row, col), (row, col),
                                                  line))
                if col != levels[-1]:
                    return None
        pos, end, code = 0, len(line), False
        while pos < end:
            m = _LEXEME.match(line, pos)
            if m is None:
                return None
            kind, lexeme, stop = m.lastgroup, m.group(), m.end()
            if kind in _KIND:
                after = line[stop:stop + 1]
                if after and (kind == "name" and after in _QUOTES
                              or kind == "number" and (after.isalnum() or after in "._")
                              or kind == "string" and after in _QUOTES) or (
                        kind == "number" and lexeme[:1] == "0" and lexeme[1:2].isdigit()):
                    return None
                if kind == "op" and lexeme in "([{":
                    depth += 1
                elif kind == "op" and lexeme in ")]}":
                    depth -= 1
                    if depth < 0:
                        return None
                out.append(tokenize.TokenInfo(_KIND[kind], lexeme, (row, pos), (row, stop), line))
                code = True
            pos = stop
        if code and depth == 0:
            out.append(tokenize.TokenInfo(tokenize.NEWLINE, "\n", (row, end), (row, end + 1), line))
    if depth != 0:
        return None
    out += [tokenize.TokenInfo(tokenize.DEDENT, "", (len(rows) + 1, 0), (len(rows) + 1, 0), "")
            for _ in levels[1:]]
    return out


def _message(text: str) -> str:
    """A string as repeats must agree on it but for its error marks' nodes
    (then _same_messages decides)."""
    return errors.NODE_MARK.sub(" (at node)", text)


def _same_messages(a: str, b: str, same_line) -> bool:
    """Whether strings `a` and `b` (equal but for their marks' nodes) name
    the same source lines: then a part may raise `a` for both."""
    return a == b or all(same_line(int(x), int(y)) for x, y in
                         zip(errors.NODE_MARK.findall(a), errors.NODE_MARK.findall(b)))


# statements that bind names otherwise than `a, b = ...`, `for a in ...`
_OPAQUE = {"lambda", "with", "global", "nonlocal", "del", "import", ":=", "try", "def", "class"}
_ASSIGN = {"=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=", "^=", "@=", "<<=", ">>="}
_OPEN, _CLOSE = {"(", "[", "{"}, {")", "]", "}"}


def _classified(group, raw, global_names) -> _Statement:
    depth, depths = 0, []
    for tok in raw:
        if tok.string in _CLOSE:
            depth -= 1
        depths.append(depth)
        if tok.string in _OPEN:
            depth += 1
    tokens, targets, nested, line, level, previous = [], set(), set(), [], 0, None
    opaque = False
    for j, tok in enumerate(raw):
        if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            tokens.append(("T", tokenize.tok_name[tok.type]))
            if tok.type == tokenize.NEWLINE:
                opaque = _assigned(line, targets if level == 0 else nested, nested) or opaque
                line = []
            level += {tokenize.INDENT: 1, tokenize.DEDENT: -1}.get(tok.type, 0)
            previous = None
            continue
        text = tok.string
        keyword_argument = (depths[j] > 0 and j + 1 < len(raw) and raw[j + 1].string == "=")
        if (tok.type == tokenize.NAME and text not in global_names and previous != "."
                and not keyword.iskeyword(text) and not keyword_argument):
            kind = "L"
        elif tok.type == tokenize.NUMBER:
            kind = "N"
        elif tok.type == tokenize.STRING:
            kind = "S"
        else:
            kind = "T"
        tokens.append((kind, text))
        line.append((kind, text, depths[j]))
        opaque = opaque or text in _OPAQUE or (text == "for" and depths[j] > 0)
        previous = text
    return _Statement(group, tokens, targets, nested, opaque=opaque)


def _assigned(line, where, nested) -> bool:
    """Add the names a logical line assigns (`a, b = ...`, `a += ...`) to
    `where`, a `for` loop's variables to `nested`; True when it binds names
    otherwise (`a = b = ...`, `(a, b) = ...`, a builtin's name as a local):
    the statement is opaque."""
    if not line:
        return False
    texts = [t for _, t, _ in line]
    if texts[0] == "for" and "in" in texts:
        variables = line[1:texts.index("in")]
        nested.update(t for k, t, _ in variables if k == "L")
        return not all(k == "L" or t == "," for k, t, _ in variables)
    for j, (kind, text, depth) in enumerate(line):
        if depth == 0 and kind == "T" and text in _ASSIGN:
            # after a one-line `if ...:`, `for ...:` the assignment is conditional
            colon = max((i for i, (_, t, d) in enumerate(line[:j]) if t == ":" and d == 0),
                        default=-1)
            lhs = line[colon + 1:j]
            if any(t in _ASSIGN and d == 0 for _, t, d in line[j + 1:]):
                return True         # a = b = ...
            if lhs and all(k == "L" or t == "," for k, t, _ in lhs):
                (where if colon < 0 else nested).update(t for k, t, _ in lhs if k == "L")
                return False
            # a store into an item or attribute (x[i] = ..., x.a = ...) binds no
            # name; with more targets (x[0], y = ...) it may
            return not (len(lhs) > 1 and lhs[0][0] == "L" and lhs[1][1] in ("[", ".")
                        and not any(t == "," and d == 0 for _, t, d in lhs))
    return False


def _candidates(sigs: list[int]) -> list[tuple[int, int, int, int]]:
    """(saved, start, period, count) for each longest run of `count` equal
    blocks of `period` statement signatures saving MIN_SAVED statements or
    more, the most saved first."""
    return sorted(_runs(sigs, _periods(sigs)), key=lambda c: (-c[0], c[1]))


def _periods(sigs: list[int]) -> set[int]:
    """The periods worth trying: the gaps between the occurrences of a
    statement that is not among the most common (a carve of the same dtype,
    some every step); a loop's statement occurs once a step, up to
    n // MIN_STATEMENTS."""
    n = len(sigs)
    where = defaultdict(list)
    for i, s in enumerate(sigs):
        where[s].append(i)
    rare = max(256, n // MIN_STATEMENTS)
    periods = set()
    for places in where.values():
        if 2 <= len(places) <= rare:
            periods.update(b - a for a, b in zip(places, places[1:])
                           if MIN_STATEMENTS <= b - a <= n // 2)
    return periods


def _runs(sigs: list[int], periods) -> list[tuple[int, int, int, int]]:
    """_candidates' runs for these periods, unsorted. Statements i.. repeat
    with `period` `count` times when statement j equals statement j + period
    for every j in [i, i + period * (count - 1)): count - 1 is the run of
    such j from i in whole periods. (Array operations: a loop over every i
    and period took 24 ms of a 16-step LSTM's driver, four times a model.)"""
    n = len(sigs)
    codes = np.array([hash(s) for s in sigs], np.int64)
    index = np.arange(n)
    runs = []
    for period in periods:
        m = n - period
        equal = codes[:m] == codes[period:]
        next_unequal = np.minimum.accumulate(np.where(equal, m, index[:m])[::-1])[::-1]
        reps = np.ones(n, np.int64)
        reps[:m] += (next_unequal - index[:m]) // period
        saved = period * (reps - 1)
        first = np.ones(n, bool)        # not inside a longer run of the same period
        first[period:] = reps[:m] == 1
        runs += [(int(saved[i]), int(i), period, int(reps[i]))
                 for i in np.flatnonzero((saved >= MIN_SAVED) & first)]
    return runs


def _repeats(statements, uses, same_line) -> list[tuple]:
    """Non-overlapping (start, period, count, plan): `count` repeats of
    `period` statements, each the first renamed, the most statements saved
    first. A stretch that is not, from some repeat on (its first repeat
    makes what later ones take from before, two loops traced from other
    lines), is tried again as the stretches either side of that repeat."""
    heap = [(-saved, start, period, count)
            for saved, start, period, count in _candidates([hash(s.shape) for s in statements])]
    heapq.heapify(heap)
    chosen, tried = [], set()
    while heap and len(tried) < _MAX_TRIED:
        _, start, period, count = heapq.heappop(heap)
        end = start + period * count
        if (start, period, count) in tried or any(
                start < s + p * c and s < end for s, p, c, _ in chosen):
            continue
        tried.add((start, period, count))
        plan = _plan(statements, uses, start, period, count, same_line)
        if isinstance(plan, _Plan):
            chosen.append((start, period, count, plan))
        elif plan is not None:          # repeats [0, plan) and [plan, count) apart
            for sub in ((start, plan), (start + period * plan, count - plan)):
                if period * (sub[1] - 1) >= MIN_SAVED:
                    heapq.heappush(heap, (-period * (sub[1] - 1), sub[0], period, sub[1]))
    return chosen


def _plan(statements, uses, start, period, count, same_line=lambda a, b: a == b):
    """_planned, first for the first two repeats alone: most stretches that
    fail do at their second repeat, and a long one costs a pass over all
    its tokens (a 262-step RNN's candidates took 6 s so)."""
    if count > 2:
        probe = _planned(statements, uses, start, period, 2, same_line)
        if not isinstance(probe, _Plan):
            return probe
    return _planned(statements, uses, start, period, count, same_line)


def _planned(statements, uses, start, period, count, same_line):
    """The part's parameters and results; or the first repeat r > 0 that does
    not go with those before it (repeats [0, r) and [r, count) may each make
    a part), or None, when a repeat is not the first one renamed, a number
    differs that may not, a name is defined before some repeats but made by
    others, or an error names another line. A name a repeat assigns must be
    renamed one to one; one it only reads may differ from place to place
    (a workspace offset the first repeat reads twice, another repeat reads
    two of): each set of places with the same names in every repeat is a
    parameter of its own. Numbers that differ (`np.uintp(t)`) are too."""
    reps = [statements[start + r * period:start + (r + 1) * period] for r in range(count)]
    if any(s.shape != s0.shape for rep in reps[1:] for s, s0 in zip(rep, reps[0])):
        return None             # (their hashes met)
    if any(s.opaque for s in reps[0]):
        return None
    for r, rep in enumerate(reps[1:], 1):
        for s, s0 in zip(rep, reps[0]):
            if s.strings != s0.strings and not all(
                    _same_messages(a, b, same_line) for a, b in zip(s0.strings, s.strings)):
                return r        # the same code from another line of the user's
    tokens = [[t for s in rep for t in s.tokens] for rep in reps]
    first = tokens[0]
    renamed, groups = {}, {}            # (rep0's name, the names in every repeat) -> positions
    numbers = set()
    for k, (kind, text) in enumerate(first):
        column = tuple(tok[k][1] for tok in tokens)
        if kind == "N" and len(set(column)) > 1:
            if not (k >= 2 and first[k - 1] == ("T", "(") and first[k - 2][1] in _VARYING_CALLS):
                return next(r for r, value in enumerate(column) if value != text)
            renamed[k] = f"step__{len(numbers)}"       # generated names have no "__"
            numbers.add(k)
            groups[(renamed[k], column)] = [k]
        elif kind == "L":
            groups.setdefault((text, column), []).append(k)
    owned0 = set().union(*(s.targets | s.nested_targets for s in reps[0]))
    split = defaultdict(list)
    for (name, column), places in groups.items():
        split[name].append(places)
    for name, place_sets in split.items():
        if len(place_sets) > 1:
            if name in owned0:
                return None
            for j, places in enumerate(place_sets[1:], 1):
                renamed.update((k, f"{name}__{j}") for k in places)
    param_roles, result_roles = {}, set()
    for r in range(count):
        begin, end = start + r * period, start + (r + 1) * period
        assigned = set().union(*(s.targets for s in reps[r]))
        owned = assigned | set().union(*(s.nested_targets for s in reps[r]))
        sources = defaultdict(set)
        for (name0, column), places in groups.items():
            sources[column[r]].add(name0)
        for (name0, column), places in groups.items():
            role, name = places[0], column[r]
            if name in owned and len(sources[name]) > 1:
                return r or None        # two of the part's names are one the repeat assigns
            if role in numbers:
                param_roles[role] = True
                continue
            passed = name not in owned or uses.first[name] < begin
            if param_roles.setdefault(role, passed) != passed:
                return r        # defined before some repeats, made by others
            if name in owned and uses.last[name] >= end:
                if name not in assigned:
                    return r or None    # assigned only in a loop or branch: maybe not at all
                result_roles.add(role)

    views, made = _views(reps[0], owned0, {first[k][1] for k in result_roles})
    result_roles = {k for k in result_roles if first[k][1] not in made}

    def part_name(k):
        return renamed.get(k, first[k][1])

    def column(k):
        return tuple(tok[k][1] for tok in tokens)
    params = {}             # two numbers every repeat has equal are one parameter
    for k in sorted(k for k, p in param_roles.items() if p):
        name = params.setdefault(column(k), part_name(k))
        if k in numbers:
            renamed[k] = name
    remade = _remade_params(statements, uses, start, period, params, owned0, renamed)
    return _Plan([(name, col) for col, name in params.items()],
                 [(part_name(k), column(k)) for k in sorted(result_roles)], renamed, views, remade)


def _remade_params(statements, uses, start, period, params, owned, renamed) -> list[str]:
    """The lines that make, in the part, the array parameters every repeat
    passes as a workspace view made before it (`v = alloc.carve(ws, ws_o3,
    ws_shape1, np.float32)`, of names that hold one value): the part takes
    the view's offset and shape instead, few values, where each array is a
    struct of 7-9 that Numba and LLVM pass (an LSTM backward step's part
    took 23 arrays). `params` (column of names -> the part's name) loses
    those arrays and gains the views' names."""
    lines = []
    for col, name in list(params.items()):
        if name in owned or name in renamed.values():
            continue
        made = [uses.made_by.get(n, ()) for n in col]
        if any(len(m) != 1 or m[0] >= start + r * period for r, m in enumerate(made)):
            continue
        defs = [statements[m[0]] for m in made]
        if not all(_is_carve(d, uses, m[0]) and _same_but_names(d, defs[0])
                   for d, m in zip(defs, made)):
            continue
        places = [j for j, (kind, _) in enumerate(defs[0].tokens) if kind == "L" and j > 0]
        names = {}
        for j in places:
            view_col = tuple(d.tokens[j][1] for d in defs)
            names[j] = params.get(view_col) or params.setdefault(view_col, f"{name}__{j}")
        del params[col]
        first_line = defs[0].lines[0]
        line = _renamed_code(defs[:1], len(first_line) - len(first_line.lstrip()), names)[0]
        lines.append("    " + line.split("#", 1)[0].rstrip())
    return lines


def _is_carve(s, uses, at) -> bool:
    """Whether statement `s` (number `at`) is `name = alloc.carve(...)` of names
    that hold one value from before it on."""
    return _view_kind(s) == "carve" and all(
        uses.stable(text, at) for kind, text in s.tokens[5:] if kind == "L")


def _same_but_names(a, b) -> bool:
    """Whether statements `a` and `b` are the same code but for local names
    (their numbers too: a carve's shape may be written out, `(2, in3_shape1)`)."""
    return a.shape == b.shape and all(
        x == y for x, y in zip(a.tokens, b.tokens) if x[0] != "L")


def _view_kind(s) -> str | None:
    """"carve" or "reshape" when statement `s` is `name = alloc.carve(...)` or
    `name = alloc.reshape(...)` on one line (a view of memory, made anew cheaply;
    comment lines after it aside)."""
    t = s.tokens
    code = [line for line in s.lines if line.strip() and not line.lstrip().startswith("#")]
    if (len(code) == 1 and len(t) > 6 and t[0][0] == "L"
            and t[1:4] == [("T", "="), ("T", "alloc"), ("T", ".")]
            and t[4][1] in ("carve", "reshape")):
        return t[4][1]
    return None


def _views(rep, owned, wanted) -> tuple[list[int], set[str]]:
    """The repeat's statements `name = alloc.carve(...)` or `alloc.reshape(...)`
    that make the `wanted` names, and those they read, from names the repeat
    does not assign (the workspace, offsets, dims) or that such statements
    made; and the names they make. The caller makes these arrays again after
    the call (a view of the same memory, a few instructions) rather than
    take them back from the part: returned, each is a struct of 7-9 values
    that Numba and LLVM pass and unpack."""
    assigned = defaultdict(int)
    for s in rep:
        for name in s.targets | s.nested_targets:
            assigned[name] += 1
    views, made = {}, set()
    for i, s in enumerate(rep):
        t = s.tokens
        if (_view_kind(s) is not None and assigned[t[0][1]] == 1
                and all(text not in owned or text in made for kind, text in t[5:] if kind == "L")):
            views[t[0][1]] = i
            made.add(t[0][1])
    needed, stack = set(), [name for name in wanted if name in views]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack += [text for kind, text in rep[views[name]].tokens[1:]
                      if kind == "L" and text in views]
    return sorted(views[name] for name in needed), needed


def _outlined(statements, start, period, count, plan, indent, prologue, decorator, prefix,
              functions, by_source) -> tuple[list[str], list[int]]:
    """Add the part's function to `functions` (unless one with its code is
    in `by_source`) and return the driver's lines calling it, one a repeat, each
    followed by the views the caller makes again; and those views' indices."""
    pad = " " * indent
    reps = [statements[start + r * period:start + (r + 1) * period] for r in range(count)]
    params = [name for name, _ in plan.params]
    results = [name for name, _ in plan.results]
    body = prologue + plan.remade + ["    " + line if line.strip() else ""
                                     for line in _renamed_code(reps[0], indent, plan.renamed)]
    if results:
        body.append(f"    return {_tuple(results)}")
    key = (decorator, tuple(params), tuple(body))
    name = by_source.get(key)
    if name is None:
        name = by_source[key] = f"{prefix}_part{len(functions)}"
        functions.append("\n".join([decorator, f"def {name}({', '.join(params)}):"] + body))
    calls, views = [], []
    for r, rep in enumerate(reps):
        args = [col[r] for _, col in plan.params]
        lhs = f"{_tuple([col[r] for _, col in plan.results])} = " if plan.results else ""
        calls.append(f"{pad}{lhs}{name}({', '.join(args)})")
        views += range(len(calls), len(calls) + len(plan.views))
        calls += [rep[i].lines[0] for i in plan.views]
    return calls, views


def _tuple(names):
    return f"{', '.join(names)}{',' if len(names) == 1 else ''}"


def _renamed_code(rep, indent, renamed) -> list[str]:
    """The repeat's lines (indent removed) with the tokens at the positions
    of `renamed` (counted as _classified counts them) replaced."""
    lines, offset = [], 0
    for s in rep:
        rows = [line[indent:] for line in s.lines]
        edits = [(tok.start, tok.end, renamed[offset + k])
                 for k, tok in enumerate(_tokens(s.lines, indent)) if offset + k in renamed]
        for (r0, c0), (r1, c1), new in reversed(edits):
            rows[r0 - 1] = rows[r0 - 1][:c0] + new + rows[r0 - 1][c1:]
        lines += rows
        offset += len(s.tokens)
    return lines
