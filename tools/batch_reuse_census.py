"""How many random programs compile one module for every batch size?

    OMP_NUM_THREADS=1 python tools/batch_reuse_census.py [--seeds 0-799] [--json out.jsonl]

Each program (`make(seed)`) reads x of shape (n, T, D) and runs a random
chain of merges and splits of axes (some written with -1), size-1 axes
added and removed, transposes, reductions with and without keepdims,
broadcasts, softmax, slices, concatenations, einsum, batched and dense
products, and residuals; T, D and the heads H are drawn small, so they
collide with the batch. Code writes sizes as `n*...`, so a program runs at
any n. Its value (and gradient, for a scalar) is lowered with gc.jit at
batches 1-6 and 8 (no compile: `lower().source`), and the batch sizes
sharing one generated `run` are grouped: every batch from 2 to 8 should
share one (batch 1 is a broadcast pattern of its own). Prints the count of
programs with one module for batches 2-8, and with --json each program's
groups. Compare trees by running it with PYTHONPATH set to another tree.
It was written to measure graphc/dims.py's naming of axes; the compiled
results' correctness is tests/test_random_shapes.py's and
tests/test_shape_reuse.py's.
"""
import argparse
import json
import random
from math import prod


def tok_code(t):
    return "n" if t == "n" else str(t)


def axis_code(ax):
    if not ax:
        return "1"
    return "*".join(tok_code(t) for t in ax)


def axis_val(ax, n):
    return prod(n if t == "n" else t for t in ax) if ax else 1


def factor_pairs(v):
    return [(a, v // a) for a in range(2, v) if v % a == 0]


class Gen:
    def __init__(self, rng, T, D, H):
        self.r = rng
        self.T, self.D, self.H = T, D, H
        self.lines = []
        self.params = {}      # name -> shape
        self.shape = [["n"], [T] if T != 1 else [], [D]]   # [] means size-1 axis
        self.k = 0

    def P(self, shape):
        name = f"w{len(self.params)}"
        self.params[name] = tuple(shape)
        return f"p['{name}']"

    def emit(self, line):
        self.lines.append(line)

    def reshape(self, new, minus_one=True):
        codes = [axis_code(a) for a in new]
        if minus_one and self.r.random() < 0.3:
            # -1 for the axis holding n
            for i, a in enumerate(new):
                if "n" in a:
                    codes[i] = "-1"
                    break
        self.emit(f"h = h.reshape({', '.join(codes)}{',' if len(codes)==1 else ''})")
        self.shape = new

    # ---- ops ----
    def op_factor(self):
        # split a literal token into two factors (no code)
        cands = [(i, j) for i, a in enumerate(self.shape) for j, t in enumerate(a)
                 if t != "n" and factor_pairs(t)]
        if not cands: return False
        i, j = self.r.choice(cands)
        a, b = self.r.choice(factor_pairs(self.shape[i][j]))
        self.shape[i] = self.shape[i][:j] + [a, b] + self.shape[i][j+1:]
        return None   # no code; not an op by itself

    def op_merge(self):
        if len(self.shape) < 2: return False
        i = self.r.randrange(len(self.shape) - 1)
        k = self.r.choice([2, 2, 3]) if len(self.shape) - i >= 3 else 2
        new = self.shape[:i] + [sum(self.shape[i:i+k], [])] + self.shape[i+k:]
        self.reshape(new)
        return True

    def op_split(self):
        if self.r.random() < 0.6: self.op_factor()
        cands = [i for i, a in enumerate(self.shape) if len(a) >= 2]
        if not cands: return False
        i = self.r.choice(cands)
        a = self.shape[i]
        cut = sorted(self.r.sample(range(1, len(a)), self.r.randint(1, len(a) - 1)))
        parts = [a[s:e] for s, e in zip([0] + cut, cut + [len(a)])]
        new = self.shape[:i] + parts + self.shape[i+1:]
        self.reshape(new)
        return True

    def op_regroup(self):
        # (a, b*c) -> (a*b, c) style: merge all then resplit differently
        if len(self.shape) < 2: return False
        self.op_factor()
        i = self.r.randrange(len(self.shape) - 1)
        toks = self.shape[i] + self.shape[i+1]
        if len(toks) < 2: return False
        c = self.r.randrange(1, len(toks))
        new = self.shape[:i] + [toks[:c], toks[c:]] + self.shape[i+2:]
        self.reshape(new)
        return True

    def op_unit(self):
        # insert or drop a size-1 axis
        ones = [i for i, a in enumerate(self.shape) if not a]
        if ones and self.r.random() < 0.5:
            i = self.r.choice(ones)
            if self.r.random() < 0.5:
                self.emit(f"h = np.squeeze(h, axis={i})")
                self.shape = self.shape[:i] + self.shape[i+1:]
            else:
                self.reshape(self.shape[:i] + self.shape[i+1:])
        else:
            i = self.r.randrange(len(self.shape) + 1)
            if self.r.random() < 0.5:
                self.emit(f"h = np.expand_dims(h, {i})")
                self.shape = self.shape[:i] + [[]] + self.shape[i:]
            else:
                self.reshape(self.shape[:i] + [[]] + self.shape[i:])
        return True

    def op_transpose(self):
        if len(self.shape) < 2: return False
        perm = list(range(len(self.shape)))
        self.r.shuffle(perm)
        self.emit(f"h = h.transpose({', '.join(map(str, perm))})")
        self.shape = [self.shape[p] for p in perm]
        return True

    def op_reduce_keep(self):
        if len(self.shape) < 2: return False
        ax = self.r.randrange(len(self.shape))
        kind = self.r.choice(["mean", "sum", "max"])
        comb = self.r.choice(["-", "*", "+"])
        red = (f"h.{kind}(axis={ax}, keepdims=True)" if kind != "max"
               else f"np.max(h, axis={ax}, keepdims=True)")
        self.emit(f"h = h {comb} {red}")
        return True

    def op_reduce_drop(self):
        if len(self.shape) < 3: return False
        ax = self.r.randrange(len(self.shape))
        kind = self.r.choice(["mean", "sum"])
        self.emit(f"h = h.{kind}(axis={ax})")
        self.shape = self.shape[:ax] + self.shape[ax+1:]
        return True

    def op_reduce_broadcast(self):
        # reduce then broadcast back via broadcast_to
        if len(self.shape) < 2: return False
        ax = self.r.randrange(len(self.shape))
        self.emit(f"h = np.broadcast_to(h.mean(axis={ax}, keepdims=True), h.shape) * 0.5"
                  f" + np.tanh(h)")
        return True

    def op_dense(self):
        last = self.shape[-1]
        v = axis_val(last, 1)
        if "n" in last or v == 1: return False
        out = self.r.choice([self.T, self.D, self.H, v])
        out = out if out > 1 else self.D
        w = self.P((v, out))
        self.emit(f"h = h @ {w}")
        self.shape = self.shape[:-1] + [[out]]
        return True

    def op_bias(self):
        v = axis_val(self.shape[-1], 1)
        if "n" in self.shape[-1]: return False
        b = self.P((v,))
        self.emit(f"h = np.tanh(h + {b})")
        return True

    def op_bmm(self):
        if len(self.shape) < 3: return False
        self.emit("h = np.tanh(h @ np.swapaxes(h, -1, -2)) * 0.5")
        self.shape = self.shape[:-1] + [self.shape[-2]]
        return True

    def op_softmax(self):
        ax = self.r.randrange(len(self.shape))
        self.emit(f"h = gc.nn.softmax(h, axis={ax})")
        return True

    def op_slice(self):
        cands = [i for i, a in enumerate(self.shape) if "n" not in a and axis_val(a, 1) > 1]
        if not cands: return False
        i = self.r.choice(cands)
        v = axis_val(self.shape[i], 1)
        idx = ", ".join([":"] * i + ["1:"])
        self.emit(f"h = h[{idx}]")
        self.shape[i] = [v - 1] if v - 1 != 1 else []
        return True

    def op_slice_broadcast(self):
        cands = [i for i, a in enumerate(self.shape) if axis_val(a, 2) > 1 and "n" not in a]
        if not cands: return False
        i = self.r.choice(cands)
        idx = ", ".join([":"] * i + [":1"])
        self.emit(f"h = h * h[{idx}]")
        return True

    def op_concat(self):
        ax = self.r.randrange(len(self.shape))
        self.emit(f"h = np.concatenate([h, np.tanh(h)], axis={ax})")
        self.shape[ax] = self.shape[ax] + [2]
        return True

    def op_einsum(self):
        r = len(self.shape)
        if r < 2 or r > 4: return False
        letters = "abcd"[:r]
        kind = self.r.choice(["diag", "gram"])
        if kind == "diag":
            keep = letters[:-1]
            self.emit(f"h = np.einsum('{letters},{letters}->{keep}', h, np.tanh(h))[..., None] * h")
        else:
            if r < 3: return False
            a = letters
            b = letters[:-2] + letters[-2] + "z"
            o = letters[:-2] + letters[-1] + "z"
            self.emit(f"h = np.einsum('{a},{b}->{o}', h, np.tanh(h))")
            self.shape = self.shape[:-2] + [self.shape[-1], self.shape[-1]]
        return True

    def op_x_residual(self):
        # add x back if shape totals match and last axis D: reshape to x's shape
        tot = [t for a in self.shape for t in a]
        if prod(t for t in tot if t != "n") != self.T * self.D or tot.count("n") != 1:
            return False
        self.emit(f"h = h.reshape(n, {self.T}, {self.D}) + x")
        self.shape = [["n"], [self.T] if self.T != 1 else [], [self.D]]
        return True

    OPS = ["op_merge", "op_merge", "op_split", "op_split", "op_split", "op_regroup",
           "op_unit", "op_transpose", "op_transpose", "op_reduce_keep", "op_reduce_drop",
           "op_reduce_broadcast", "op_dense", "op_dense", "op_bias", "op_bmm", "op_softmax",
           "op_slice", "op_slice_broadcast", "op_concat", "op_einsum", "op_x_residual"]

    def build(self, nops):
        self.emit("n = x.shape[0]")
        self.emit("h = x")
        done = 0
        tries = 0
        while done < nops and tries < 200:
            tries += 1
            op = self.r.choice(self.OPS)
            if getattr(self, op)():
                done += 1
                if sum(len(a) for a in self.shape) > 8 or len(self.shape) > 5:
                    # keep it small: merge everything but batch... just flatten trailing
                    self.reshape([self.shape[0], sum(self.shape[1:], [])])


def make(seed):
    r = random.Random(seed)
    T = r.choice([1, 2, 3, 4, 4, 6])
    H = r.choice([2, 3, 4])
    D = H * r.choice([1, 2, 3, 4])
    if D == 1: D = 2
    g = Gen(r, T, D, H)
    g.build(r.randint(2, 7))
    final = r.choice(["sq", "tanh", "out"])
    body = "\n".join("    " + l for l in g.lines)
    ret = {"sq": "    return np.sum(h ** 2) * 0.01",
           "tanh": "    return np.mean(np.tanh(h))",
           "out": "    return h"}[final]
    src = f"def fn(p, x):\n{body}\n{ret}\n"
    return dict(src=src, T=T, D=D, H=H, params=g.params, scalar=final != "out")



BATCHES = (1, 2, 3, 4, 5, 6, 8)


def groups(seed: int) -> list[list[int]]:
    """The batch sizes of BATCHES that share one generated `run`, in groups."""
    import numpy as np
    import graphc as gc
    m = make(seed)
    namespace = {"np": np, "gc": gc}
    exec(m["src"], namespace)
    fn = namespace["fn"]
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) * 0.5 for k, s in m["params"].items()}
    f = gc.jit(gc.value_and_grad(fn, argnums=(0, 1))) if m["scalar"] else gc.jit(fn)
    by_text = {}
    for n in BATCHES:
        source = f.lower(params, np.zeros((n, m["T"], m["D"]))).source
        by_text.setdefault(source[source.index("def run("):], []).append(n)
    return sorted(by_text.values())


def main(argv=None):
    import warnings
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-799", help="a range lo-hi (inclusive)")
    parser.add_argument("--json", help="write each program's groups here, a line each")
    args = parser.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    warnings.simplefilter("ignore")     # RecompileWarning: every batch is a new signature
    shared = 0
    out = open(args.json, "w") if args.json else None
    for seed in seeds:
        g = groups(seed)
        shared += sum(1 for group in g if set(group) - {1}) == 1
        if out:
            out.write(json.dumps([seed, g]) + "\n")
    print(f"{shared} of {len(seeds)} programs compile one module for batches 2-8")


if __name__ == "__main__":
    main()
