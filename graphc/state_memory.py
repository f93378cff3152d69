"""Which batch arrays may share memory with a training step's state.

A step writes its state arrays (parameters and moment slots) in place, so a
batch array on their memory is copied first: the step reads the batch as it
was when called, as gc.grad and PyTorch do (read in place, a batch that is a
parameter itself gave a wrong update). NumPy only: exported steps
(graphc/export.py) carry this module's source.
"""
import numpy as np


def memory_root(a):
    """The object that owns `a`'s memory: the end of its chain of `.base`s."""
    while (base := getattr(a, "base", None)) is not None:
        a = base
    return a


def owns_alone(root) -> bool:
    """Whether `root`, the end of a chain of `.base`s, is an array: then it
    allocated its memory (or was made from a raw pointer, which nothing
    checks) and every other array on that memory leads to it through
    `.base`. Memory-mapped files and other buffers need not."""
    return type(root) is np.ndarray


class StateMemory:
    """The state arrays' memory: `may_alias` is the fast test of a batch
    array, by the arrays' memory owners; `unaliased` the exact one by address."""

    def __init__(self, state):
        self.state = state
        roots = [memory_root(leaf) for leaf in state]
        self.roots = {id(r) for r in roots}     # held by the state: ids stay unique
        self.all_owned = all(owns_alone(r) for r in roots)

    def may_alias(self, x) -> bool:
        root = memory_root(x)
        return id(root) in self.roots or not (self.all_owned or owns_alone(root))

    def unaliased(self, batch: list) -> list:
        """`batch` with a copy of each array sharing memory with a state array."""
        return [np.array(x) if isinstance(x, np.ndarray) and self.may_alias(x) and any(
                    np.may_share_memory(x, leaf) for leaf in self.state) else x
                for x in batch]
