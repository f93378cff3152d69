"""The IR: a static graph of primitive ops held in a networkx.DiGraph.

A `Node` keeps its operands in order on itself (`x*x` has inputs `(x, x)`);
graph edges only record dependency, because a DiGraph has no parallel edges
and no argument order. Inserting a node equal to an existing one (same op,
params and inputs) returns the existing one: common-subexpression
elimination for free.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from graphc import errors

_SHORT_DTYPE = {
    "float32": "f32", "float64": "f64", "bool": "bool",
    "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
}


def type_str(shape, dtype) -> str:
    """`f32[128,256]`: the printed type of a value."""
    return f"{_SHORT_DTYPE[np.dtype(dtype).name]}[{','.join(map(str, shape))}]"


class ConstValue:
    """A constant array as a node parameter: hashable by value, printable."""

    __slots__ = ("array", "_key")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, order="C")
        self.array.setflags(write=False)
        digest = hashlib.sha1(self.array.tobytes()).hexdigest()
        self._key = (self.array.dtype.str, self.array.shape, digest)

    def __hash__(self):
        return hash(self._key)

    def __reduce__(self):       # pickled (graphc.stored_lowerings): read-only again when read
        return ConstValue, (self.array,)

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __repr__(self):
        if self.array.ndim == 0:
            return str(self.array[()])     # shortest repr in the constant's own dtype
        if self.array.size <= 4:
            return np.array2string(self.array, separator=",").replace("\n", "")
        return f"<{type_str(self.array.shape, self.array.dtype)}>"


@dataclass(frozen=True)
class Node:
    id: int
    op: str
    inputs: tuple[int, ...]
    params: tuple[tuple[str, Any], ...]   # sorted (name, value) pairs, hashable
    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool = False                    # a Python scalar: never promotes float32
    loc: str = "<unknown>"                # the user's file:line at trace time

    @property
    def p(self) -> dict:
        return dict(self.params)

    @property
    def type(self) -> str:
        return type_str(self.shape, self.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _fmt_param(value) -> str:
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, tuple):
        return "(" + ",".join(_fmt_param(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


class Graph:
    """A computational graph: `inputs` and `outputs` are lists of node ids."""

    def __init__(self):
        self.nx = nx.DiGraph()
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.meta: dict = {}          # pytree structures and the like, for the caller
        self.groups: list[tuple[int, ...]] | None = None   # fused kernels (passes/fuse.py)
        # Each node's networkx attribute dict (the same objects), by id in id
        # order (insertion order: ids only grow): passes and codegen look
        # nodes up tens of thousands of times a compile, and a dict is several
        # times faster than networkx's node view (a new batch size's re-trace
        # is timed).
        self._attrs: dict[int, dict] = {}
        self._cse: dict = {}
        self._next_id = 0

    # -- construction --------------------------------------------------------
    def add(self, op: str, inputs, params: dict, shape, dtype, weak=False, loc="<unknown>") -> Node:
        params_t, inputs, dtype = tuple(sorted(params.items())), tuple(inputs), np.dtype(dtype)
        key = (op, inputs, params_t, dtype, bool(weak)) if op != "input" else None
        if key is not None and key in self._cse:
            return self.node(self._cse[key])
        node = Node(self._next_id, op, inputs, params_t, tuple(map(int, shape)), dtype, bool(weak),
                    loc)
        self._next_id += 1
        self._insert(node)
        if key is not None:
            self._cse[key] = node.id
        return node

    def _insert(self, node: Node) -> None:
        self.nx.add_node(node.id, node=node)
        self._attrs[node.id] = self.nx.nodes[node.id]
        for i in node.inputs:
            self.nx.add_edge(i, node.id)
        if node.op == "input":
            self.inputs.append(node.id)

    @property
    def next_id(self) -> int:
        """The id the next node added will get (ids only grow)."""
        return self._next_id

    def add_input(self, shape, dtype, weak=False, loc="<unknown>") -> Node:
        return self.add("input", (), {"index": len(self.inputs)}, shape, dtype, weak, loc)

    def keep_role(self, nid: int, role: str) -> None:
        """Give node `nid` the role `role` unless it has one already."""
        self._attrs[nid].setdefault("role", role)

    def role(self, nid: int) -> str:
        """"forward", "backward" or "update": which part of a training step made the node."""
        return self._attrs[nid].get("role", "forward")

    def subgraph(self, keep) -> "Graph":
        """A new graph with the nodes in `keep` (ids, inputs and outputs preserved)."""
        keep = set(keep) | set(self.inputs) | set(self.outputs)
        return self._copy([node for node in self.topo() if node.id in keep])

    def relocated(self, new_loc: dict) -> "Graph":
        """A copy whose nodes name the source lines `new_loc` maps theirs to
        (the same code traced from other lines: graphc.lowering)."""
        g = self.mapped(lambda n: dataclasses.replace(n, loc=new_loc.get(n.loc, n.loc)))
        g.groups = self.groups
        return g

    def mapped(self, change) -> "Graph":
        """A copy whose nodes are `change(node)`: the same ids and inputs, with
        this graph's roles, inputs, outputs and meta."""
        return self._copy([change(n) for n in self.topo()])

    def _copy(self, kept: list[Node]) -> "Graph":
        """A new graph of these nodes (in id order) with this one's roles,
        inputs, outputs and meta."""
        g = Graph()
        # networkx's bulk adds: a third of the time of one add per node and edge
        g.nx.add_nodes_from((n.id, {"node": n, "role": self.role(n.id)}) for n in kept)
        g.nx.add_edges_from((i, n.id) for n in kept for i in n.inputs)
        g._attrs = dict(g.nx.nodes(data=True))      # the attribute dicts themselves
        g._cse = {(n.op, n.inputs, n.params, n.dtype, n.weak): n.id
                  for n in kept if n.op != "input"}
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.meta = dict(self.meta)
        g._next_id = self._next_id
        return g

    # -- access --------------------------------------------------------------
    def node(self, nid: int) -> Node:
        return self._attrs[nid]["node"]

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def topo(self) -> list[Node]:
        """Nodes in a deterministic topological order: by id.

        A node's id is its creation order and its inputs exist before it, so
        every edge runs from a lower id to a higher one (`verify` checks it)
        and id order is the lexicographical topological order, without
        networkx's heap walk (this is called often, and compile time counts
        when a new batch size is traced). `_attrs` holds them in that order:
        `add` inserts in id order, and `subgraph` in this one.
        """
        return [attrs["node"] for attrs in self._attrs.values()]

    def users(self, nid: int) -> list[int]:
        return sorted(self.nx.successors(nid))

    # -- printing ------------------------------------------------------------
    def names(self) -> dict[int, str]:
        """Stable printed names `%0, %1, ...` in topological order."""
        return {n.id: f"%{k}" for k, n in enumerate(self.topo())}

    def __str__(self) -> str:
        names = self.names()
        lines = []
        for n in self.topo():
            args = " ".join(names[i] for i in n.inputs)
            # reductions print NumPy's keyword (sum %3 axis=(1,)), as the listing's contract
            params = " ".join(f"{'axis' if k == 'axes' else k}={_fmt_param(v)}"
                              for k, v in n.params if k != "value")
            if n.op == "const":
                params = repr(n.p["value"])
            if n.op == "input":
                params = str(n.p["index"])
            rhs = " ".join(s for s in (n.op, args, params) if s)
            lines.append(f"{names[n.id]}:{n.type} = {rhs}")
        lines.append("return " + " ".join(names[i] for i in self.outputs))
        for k, members in enumerate(self.groups or []):
            if len(members) > 1:
                ops = " ".join(self.node(m).op for m in members)
                lines.append(f"fused {k}: {' '.join(names[m] for m in members)}  [{ops}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<graphc.Graph with {len(self)} nodes>"

    _COLORS = {"forward": "#cfe2f3", "backward": "#f4cccc", "update": "#d9ead3"}

    def to_dot(self) -> str:
        """Graphviz DOT text.

        Forward, backward and optimizer-update nodes are filled blue, red and
        green; inputs (named by their pytree path) and constants are boxes;
        outputs are double-circled; fused kernels are clusters labelled with
        their ops.
        """
        names = self.names()
        in_tree = self.meta.get("in_tree")
        from graphc import pytree
        input_names = pytree.leaf_paths(in_tree) if in_tree is not None else []
        out = ["digraph graphc {", "  rankdir=TB;",
               '  node [fontname="monospace", fontsize=10, style=filled];']

        def line(n):
            label = f"{names[n.id]} {n.op}\\n{n.type}"
            if n.op == "input":
                k = n.p["index"]
                label = f"{input_names[k] if k < len(input_names) else 'input ' + str(k)}\\n{n.type}"
                return f'  n{n.id} [label="{label}", shape=box, fillcolor="#fff2cc"];'
            if n.op == "const":
                return f'  n{n.id} [label="{names[n.id]} {n.p["value"]!r}", shape=box, fillcolor="#eeeeee"];'
            extra = ", peripheries=2" if n.id in self.outputs else ""
            return (f'  n{n.id} [label="{label}", shape=ellipse, '
                    f'fillcolor="{self._COLORS[self.role(n.id)]}"{extra}];')

        grouped = set()
        for k, members in enumerate(self.groups or []):
            if len(members) < 2:
                continue
            ops = " ".join(self.node(m).op for m in members)
            out.append(f"  subgraph cluster_{k} {{")
            out.append(f'    label="kernel {k}: {ops}"; style=rounded; color="#999999";')
            out += ["  " + line(self.node(m)) for m in members]
            out.append("  }")
            grouped.update(members)
        out += [line(n) for n in self.topo() if n.id not in grouped]
        for a, b in sorted(self.nx.edges):
            out.append(f"  n{a} -> n{b};")
        out.append("}")
        return "\n".join(out)

    def render(self, path) -> str:
        """Write the picture of this graph to `path` (.svg, .png or .pdf) with Graphviz."""
        import shutil
        import subprocess
        path = str(path)
        fmt = path.rsplit(".", 1)[-1].lower() if "." in path else "svg"
        if fmt not in ("svg", "png", "pdf"):
            raise errors.GraphcValueError(f"render: unknown picture format {fmt!r}; use .svg, .png or .pdf")
        dot = shutil.which("dot")
        if dot is None:
            raise errors.RenderError(
                "render needs Graphviz's `dot` program, which is not installed: install it "
                "with `apt-get install graphviz`, `brew install graphviz` or `conda install "
                "graphviz`, or use graph.to_dot() and render the text elsewhere")
        subprocess.run([dot, f"-T{fmt}", "-o", path], input=self.to_dot(), text=True,
                       check=True, capture_output=True)
        return path

    # -- checking ------------------------------------------------------------
    def verify(self) -> None:
        """Re-check every node's shape and dtype, acyclicity and bound inputs."""
        from graphc import ops

        if not nx.is_directed_acyclic_graph(self.nx):
            raise errors.GraphcError("graph has a cycle")
        for n in self.topo():
            for i in n.inputs:
                if i not in self.nx:
                    raise errors.GraphcError(f"node {n.id} ({n.op}) uses unbound input {i}")
            if set(self.nx.predecessors(n.id)) != set(n.inputs):
                raise errors.GraphcError(f"node {n.id} ({n.op}): edges do not match its inputs")
            if any(i >= n.id for i in n.inputs):
                raise errors.GraphcError(f"node {n.id} ({n.op}) uses a later node: ids must "
                                         f"follow creation order")
            if n.op in ("input", "const"):
                continue
            avals = [self.node(i) for i in n.inputs]
            shape, dtype = ops.OPS[n.op].infer(avals, n.p)
            if tuple(shape) != n.shape or np.dtype(dtype) != n.dtype:
                raise errors.GraphcError(
                    f"node {n.id} ({n.op}) is typed {n.type} but its inputs give "
                    f"{type_str(shape, dtype)}")
        for o in self.outputs:
            if o not in self.nx:
                raise errors.GraphcError(f"output {o} is not in the graph")
