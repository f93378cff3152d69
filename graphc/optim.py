"""Optimizers as graph-level update rules (PyTorch's definitions and defaults).

One difference from PyTorch: moment buffers flush subnormal entries to zero
(see `_below_normal`), so a long run's stored state does not slow every
step down. The flush moves a parameter by at most about 1e-28 * lr a step
in float32 (Adam at its defaults).

`update` is ordinary NumPy code over the parameter leaves, traced into the
same graph as the forward and backward passes, so the update is fused into
the compiled step instead of running as a Python loop over parameters.
Hyperparameters are Python floats (weakly typed), so a float32 model's
update stays float32. A learning rate may also be a schedule: a function
of the count of steps taken before this one (a 0-d int64 array), written
in NumPy, traced into the update as optax's are, e.g. a warmup
`lambda t: 1e-3 * np.minimum(1.0, (t + 1) / 100)`; its value is cast to
each parameter's dtype. (Its values are not checked at run time: one
below 0 steps uphill, where a constant lr must be >= 0.)
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from graphc import errors


class Optimizer:
    """Base class: `slots` names the per-parameter state (moment buffers).

    Settings are read-only once made: they are compiled into every step
    traced with the optimizer, so `opt.lr = 0.01` afterwards took effect only
    in steps traced later (a new batch shape), and the step ran with both
    rates depending on its input shapes. A new optimizer gives new settings."""

    slots: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__

        @functools.wraps(init)
        def init_then_freeze(self, *args, **kw):
            init(self, *args, **kw)
            if type(self).__init__ is init_then_freeze:    # the outermost __init__ only
                object.__setattr__(self, "_frozen", True)
        cls.__init__ = init_then_freeze

    def __setattr__(self, name, value):
        self._refuse_change(name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._refuse_change(name)
        object.__delattr__(self, name)

    def _refuse_change(self, name):
        if self.__dict__.get("_frozen"):
            raise errors.GraphcValueError(
                f"{type(self).__name__}.{name} cannot change: an optimizer's settings are "
                f"compiled into the steps that use it; make a new optimizer (and "
                f"compile_step) for new settings")

    def init(self, leaves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Zero moment buffers, one per parameter leaf, per slot."""
        return {name: [np.zeros_like(p) for p in leaves] for name in self.slots}

    def update(self, params, grads, slots, count):
        """New (params, slots) from lists of leaves; `count` is the 0-d step number
        before this step (0 on the first). Traced: write it with NumPy ops."""
        raise NotImplementedError

    def rate(self, count, dtype):
        """This step's learning rate for parameters of `dtype`: `lr`, or a
        schedule's `lr(count)` in that dtype (a float64 value would promote a
        float32 model's update)."""
        if not callable(self.lr):
            return self.lr
        value = self.lr(count)
        if isinstance(value, (bool, str)) or not (isinstance(value, (int, float)) or (
                hasattr(value, "astype") and np.shape(value) == ())):
            code = getattr(self.lr, "__code__", None)
            where = f" (at {code.co_filename}:{code.co_firstlineno})" if code else ""
            what = (f"an array of shape {value.shape}" if hasattr(value, "shape")
                    else f"a {type(value).__name__}")
            raise errors.GraphcValueError(
                f"the learning-rate schedule returned {what}; it must return one number (a "
                f"Python float or a 0-d array) for the step count it is given{where}")
        return value.astype(dtype) if hasattr(value, "astype") else value

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "_frozen")
        return f"{type(self).__name__}({fields})"


def _below_normal(x):
    """Where x is zero or subnormal (|x| < the dtype's smallest normal number).

    Moment buffers flush such entries to zero. A buffer entry whose gradient
    has become exactly zero (a dead ReLU unit's weights) decays as beta * m,
    and with beta > 0.5 it never reaches zero: beta times the smallest
    subnormal rounds back to it. Arithmetic on subnormals takes a microcode
    assist on Intel CPUs (about 100 cycles), so every later step ran slower:
    the demo's 64-128-10 MLP with Adam went from 32 to 60 us a step after
    1,000 steps. This keeps dead units' buffers out of the subnormal range.
    A live gradient below about 1e-19 (float32) still leaves Adam's v
    subnormal, and a step's own intermediates can be, as in NumPy and PyTorch.
    Each optimizer bounds what the flush changes.
    """
    return np.abs(x) < float(np.finfo(x.dtype).tiny)


def _check(name, value, low=0.0):
    real = isinstance(value, numbers.Real) or (     # (a Fraction too)
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf")
    if not real or isinstance(value, bool):
        raise errors.GraphcTypeError(f"invalid {name}: {value!r} is a {type(value).__name__}; "
                                     f"it must be a number (>= {low})")
    if not value >= low:
        raise errors.GraphcValueError(f"invalid {name}: {value!r} (must be >= {low})")


def _learning_rate(lr):
    """A float >= 0, or a schedule (a function of the step count) as it is."""
    if callable(lr):
        return lr
    _check("lr", lr)
    return float(lr)


class SGD(Optimizer):
    """p -= lr * g, with PyTorch's momentum, dampening, Nesterov and L2 weight decay.

    >>> import graphc as gc
    >>> gc.optim.SGD(lr=0.1, momentum=0.9, nesterov=True).slots
    ('momentum',)
    """

    def __init__(self, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        for name, v in [("momentum", momentum), ("weight_decay", weight_decay)]:
            _check(name, v)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise errors.GraphcValueError("Nesterov momentum requires a momentum > 0 and zero "
                                          "dampening")
        self.lr, self.momentum = _learning_rate(lr), float(momentum)
        self.dampening = float(dampening)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)
        self.slots = ("momentum",) if self.momentum else ()

    def update(self, params, grads, slots, count):
        new_params, new_bufs, rates = [], [], {}
        for k, (p, g) in enumerate(zip(params, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                old = slots["momentum"][k]
                # PyTorch: the first step's buffer is the gradient itself
                buf = np.where(count == 0, g, self.momentum * old + (1 - self.dampening) * g)
                # the flushed entries move p by at most lr * tiny / (1 - momentum) a step
                buf = np.where(_below_normal(buf), 0.0, buf)
                new_bufs.append(buf)
                g = g + self.momentum * buf if self.nesterov else buf
            if p.dtype not in rates:      # (traced once a dtype, as Adam's corrections)
                rates[p.dtype] = self.rate(count, p.dtype)
            new_params.append(p - rates[p.dtype] * g)
        return new_params, ({"momentum": new_bufs} if self.momentum else {})


class Adam(Optimizer):
    """Adam with bias correction; weight_decay is L2 added to the gradient (PyTorch's Adam)."""

    slots = ("m", "v")
    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise errors.GraphcTypeError(f"betas must be a pair of numbers (beta1, beta2), as "
                                         f"(0.9, 0.999); got {betas!r}") from None
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise errors.GraphcValueError(f"invalid betas {betas!r}: each must be in [0, 1)")
        self.lr, self.betas = _learning_rate(lr), (b1, b2)
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def update(self, params, grads, slots, count):
        b1, b2 = self.betas
        new_params, ms, vs = [], [], []
        corrections = {}    # the step's scalars, traced once a dtype rather than once a parameter
        for k, (p, g) in enumerate(zip(params, grads)):
            if p.dtype not in corrections:
                # PyTorch's arrangement: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps),
                # with bc = 1 - beta**t; times the scalar 1/sqrt(bc2): a division
                # per element costs more
                t = (count + 1).astype(p.dtype)
                lr = self.rate(count, p.dtype)
                corrections[p.dtype] = (lr, lr / (1 - b1 ** t), 1 / np.sqrt(1 - b2 ** t))
            lr, step_size, inv_sqrt_bc2 = corrections[p.dtype]
            if self.decoupled:
                p = p * (1 - lr * self.weight_decay)
            elif self.weight_decay:
                g = g + self.weight_decay * p
            m = b1 * slots["m"][k] + (1 - b1) * g
            v = b2 * slots["v"][k] + (1 - b2) * (g * g)
            tiny = np.finfo(p.dtype).tiny
            if float(np.asarray(self.eps, p.dtype)) >= np.sqrt(tiny):
                # Flushed m entries move p by at most lr/bc1 * tiny/((1 - b1) eps)
                # a step (about 1e-28 lr in float32 at the defaults). Where m is
                # zero this step's update is zero whatever v is, so v goes too.
                # With a smaller eps (0, or one that rounds to 0 in p's dtype)
                # m / sqrt(v) of subnormals is a full-size step: nothing is flushed.
                m = np.where(_below_normal(m), 0.0, m)
                v = np.where((m == 0) & _below_normal(v), 0.0, v)
            denom = np.sqrt(v) * inv_sqrt_bc2 + self.eps
            new_params.append(p - step_size * m / denom)
            ms.append(m)
            vs.append(v)
        return new_params, {"m": ms, "v": vs}


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step."""

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(lr, betas, eps, weight_decay)


class ClipGradNorm(Optimizer):
    """`optimizer` on gradients scaled down to a global norm of at most
    `max_norm`, as PyTorch's clip_grad_norm_ before optimizer.step(): all
    gradients times min(1, max_norm / (norm + 1e-6)), the norm over every
    gradient element together (norm_type 2, any p > 0, or inf for the largest |g|).
    Traced into the step with the update, so it costs no extra pass of Python.

    >>> import graphc as gc
    >>> gc.optim.ClipGradNorm(gc.optim.Adam(1e-3), max_norm=1.0).slots
    ('m', 'v')
    """

    def __init__(self, optimizer, max_norm, norm_type=2.0):
        if not isinstance(optimizer, Optimizer):
            raise errors.GraphcTypeError(f"ClipGradNorm wraps a gc.optim optimizer, got "
                                         f"{type(optimizer).__name__}")
        _check("max_norm", max_norm)
        norm_type = np.inf if norm_type == "inf" else norm_type      # (PyTorch's spelling too)
        if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or not (
                norm_type > 0):
            raise errors.GraphcValueError(f"ClipGradNorm: norm_type is a number > 0 or inf, "
                                          f"not {norm_type!r}")
        self.optimizer, self.max_norm = optimizer, float(max_norm)
        self.norm_type = float(norm_type)
        self.slots = optimizer.slots

    def init(self, leaves):
        return self.optimizer.init(leaves)

    def update(self, params, grads, slots, count):
        if not grads:
            return self.optimizer.update(params, grads, slots, count)
        if self.norm_type == np.inf:
            norm = functools.reduce(np.maximum, [np.max(np.abs(g), initial=0.0) for g in grads])
        elif self.norm_type == 2:
            norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        else:
            p = self.norm_type
            norm = sum(np.sum(np.abs(g) ** p) for g in grads) ** (1 / p)
        scale = np.minimum(self.max_norm / (norm + 1e-6), 1.0)
        clipped = [g * scale.astype(g.dtype) for g in grads]
        return self.optimizer.update(params, clipped, slots, count)
