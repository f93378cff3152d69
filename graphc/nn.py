"""Neural-network functions, composed from primitives (PyTorch conventions).

Each is plain NumPy-style code on tracers or arrays, so its gradient and
fusion come from the primitives. Stability comes from the formulation:
softplus and logsumexp subtract the maximum before exponentiating.
"""
from __future__ import annotations

import math

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp
from graphc import prims as P
from graphc.tracing import aval_of


def relu(x):
    """max(x, 0), with gradient 0 at 0 (as PyTorch and JAX), and nan for nan
    (as np.maximum): the test is x <= 0, which nan fails."""
    return fnp.where(fnp.less_equal(x, 0), 0, x)


def _magnitude(x):
    """|x| with gradient sign(x), and 1 at 0 (abs has 0 there): the smooth
    function written with it (softplus) keeps its slope at 0."""
    return fnp.where(fnp.greater_equal(x, 0), x, fnp.negative(x))


def sigmoid(x):
    """1 / (1 + exp(-x)), the `sigmoid` primitive: 1 / (1 + e) for x >= 0 and
    e / (1 + e) below, with e = exp(-|x|) <= 1, so no overflow and full
    relative accuracy in the left tail; its gradient s(x) s(-x) is 1/4 at 0
    and accurate in both tails (ops._sigmoid_vjp). (1 / (1 + np.exp(-x))
    written by hand compiles to the same primitive: passes/simplify.py.)"""
    return P.sigmoid(fnp._as_float_or_float64(x))


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): finite for any x. Both
    kinks are written so that their slopes at 0 are 1 and -1/2 (relu and abs
    have 0 there), which add up to softplus'(0) = sigmoid(0) = 1/2."""
    x = fnp._as_float_or_float64(x)
    positive_part = fnp.where(fnp.greater_equal(x, 0), x, 0)
    return fnp.add(positive_part, fnp.log1p(fnp.exp(fnp.negative(_magnitude(x)))))


def gelu(x, approximate=False):
    """x * Phi(x); `approximate=True` is the tanh form."""
    if approximate:
        inner = fnp.multiply(math.sqrt(2 / math.pi),
                             fnp.add(x, fnp.multiply(0.044715, fnp.power(x, 3))))
        return fnp.multiply(fnp.multiply(x, 0.5), fnp.add(fnp.tanh(inner), 1))
    return fnp.multiply(fnp.multiply(x, 0.5), fnp.add(fnp.erf(fnp.multiply(x, 1 / math.sqrt(2))), 1))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x), axis)) (SciPy's signature), stable for large |x|."""
    x = fnp._as_float_or_float64(x)
    axes = fnp.normalize_axes(axis, fnp.ndim(x), "logsumexp")
    if _over_nothing(x, axes):      # the log of an empty sum: -inf, as SciPy
        # (softmax and log_softmax over an empty axis raise, as SciPy's)
        out = fnp.log(fnp.sum(fnp.exp(x), axis=axes, keepdims=True))
    else:
        peak = P.stop_gradient(fnp.max(x, axis=axes, keepdims=True))
        # A row of -inf (or inf) has no finite peak to subtract: use 0 there, as SciPy does.
        peak = fnp.where(fnp.less(fnp.absolute(peak), np.inf), peak, 0)
        total = fnp.sum(fnp.exp(fnp.subtract(x, peak)), axis=axes, keepdims=True)
        out = fnp.add(fnp.log(total), peak)
    return out if keepdims else fnp.squeeze(out, axis=axes) if axes else out


def log_softmax(x, axis=-1):
    """x - logsumexp(x, axis). Over the last axis it is one primitive: one
    kernel, and a gradient without the max."""
    x = fnp._as_float(x)
    ndim = fnp.ndim(x)
    if ndim and fnp.normalize_axes(axis, ndim, "log_softmax") == (ndim - 1,):
        return P.log_softmax(x, ndim - 1)       # its shape rule rejects an empty axis
    return fnp.subtract(x, logsumexp(x, axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along `axis`. Over the last axis it is
    one primitive: one kernel, and a gradient without the max."""
    x = fnp._as_float(x)
    ndim = fnp.ndim(x)
    if ndim and fnp.normalize_axes(axis, ndim, "softmax") == (ndim - 1,):
        return P.softmax(x, ndim - 1, finite_peak=False)      # a row of -inf: nan, as SciPy
    shifted = fnp.subtract(x, P.stop_gradient(fnp.max(x, axis=axis, keepdims=True)))
    e = fnp.exp(shifted)
    return fnp.true_divide(e, fnp.sum(e, axis=axis, keepdims=True))


def _over_nothing(x, axes) -> bool:
    """Whether a reduction of x over `axes` sums no element (an axis of size 0)."""
    shape = fnp.shape(x)
    return any(shape[a] == 0 for a in axes)


def _check_labels(labels, num_classes, fn):
    dtype = aval_of(labels)[1]
    if dtype.kind not in "iu":
        raise errors.GraphcTypeError(f"{fn}: labels must be an integer array, got {dtype}"
                                     f"{errors.at(errors.user_location())}")
    return P.index_check(labels if not isinstance(labels, (list, int)) else np.asarray(labels),
                         num_classes, allow_negative=False, what=f"{fn} label")


def one_hot(labels, num_classes, dtype=np.float32):
    """`(..., num_classes)` with a 1 at each label; labels must lie in [0, num_classes)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise errors.GraphcValueError(f"one_hot: num_classes must be a Python int >= 1, got "
                                      f"{num_classes!r}{errors.at(errors.user_location())}")
    checked = _check_labels(labels, num_classes, "one_hot")
    classes = np.arange(num_classes, dtype=np.int64)
    return fnp.astype(fnp.equal(fnp.expand_dims(checked, -1), classes), dtype)


def cross_entropy(logits, labels, weight=None, ignore_index=None, reduction="mean",
                  label_smoothing=0.0):
    """-log softmax(logits)[label], averaged over the batch; logits (N, C),
    labels (N,) in [0, C). PyTorch's options: `weight` per class (the mean is
    then over the labels' weights), `ignore_index` (a label that adds nothing;
    None here by default, so that every label out of range raises, where
    PyTorch's -100 is ignored), `reduction` ("mean", "sum" or "none": the
    (N,) losses) and `label_smoothing` (eps: the target is (1 - eps) at the
    label and eps / C everywhere). Float `labels` of the logits' shape are
    class probabilities, as in PyTorch."""
    shape = aval_of(logits)[0]
    if reduction not in ("mean", "sum", "none"):
        raise errors.GraphcValueError(f"cross_entropy: reduction is 'mean', 'sum' or 'none', "
                                      f"not {reduction!r}{errors.at(errors.user_location())}")
    if isinstance(label_smoothing, np.ndarray) and label_smoothing.ndim == 0:
        label_smoothing = label_smoothing.item()
    if not (isinstance(label_smoothing, (int, float, np.floating, np.integer))
            and 0.0 <= label_smoothing <= 1.0):
        raise errors.GraphcValueError(f"cross_entropy: label_smoothing must be a number in "
                                      f"[0, 1], got {label_smoothing!r}"
                                      f"{errors.at(errors.user_location())}")
    # float labels of the logits' shape are probabilities (others: refused as not integers)
    soft = tuple(aval_of(labels)[0]) == tuple(shape) and len(shape) == 2
    if soft and aval_of(labels)[1].kind != "f":
        raise errors.GraphcTypeError(f"cross_entropy: labels of the logits' shape {tuple(shape)} "
                                     f"are class probabilities, a float array, not "
                                     f"{aval_of(labels)[1]}{errors.at(errors.user_location())}")
    if soft and ignore_index is not None:
        raise errors.GraphcValueError(f"cross_entropy: ignore_index is for class indices, not "
                                      f"class probabilities{errors.at(errors.user_location())}")
    if len(shape) != 2 or tuple(aval_of(labels)[0]) != (tuple(shape) if soft else (shape[0],)):
        raise errors.ShapeError(f"cross_entropy: expected logits (N, C) and labels (N,) (or "
                                f"class probabilities (N, C)), got {tuple(shape)} and "
                                f"{tuple(aval_of(labels)[0])}{errors.at(errors.user_location())}")
    if (weight is None and ignore_index is None and reduction == "mean" and not label_smoothing
            and not soft):
        # the plain mean: one pick a row (the benchmarks' losses fuse it with the softmax)
        checked = _check_labels(labels, shape[1], "cross_entropy")
        picked = fnp.getitem(log_softmax(logits, axis=-1), (np.arange(shape[0]), checked))
        return fnp.negative(fnp.mean(picked))
    logp = log_softmax(logits, axis=-1)
    n, classes = shape
    if weight is not None:
        weight = fnp.astype(fnp._as_array(weight), aval_of(logp)[1])
        if tuple(aval_of(weight)[0]) != (classes,):
            raise errors.ShapeError(f"cross_entropy: weight has one entry per class ({classes},), "
                                    f"got {tuple(aval_of(weight)[0])}"
                                    f"{errors.at(errors.user_location())}")
    weighted = logp if weight is None else fnp.multiply(logp, weight)
    # each row's cross-entropy with the smoothed target spread evenly over all classes
    spread = fnp.negative(fnp.sum(weighted, axis=1))
    if soft:
        labels = fnp.astype(labels, aval_of(logp)[1])       # (as weight: the logits' type)
        target = labels if not label_smoothing else fnp.add(
            fnp.multiply(labels, 1.0 - label_smoothing), label_smoothing / classes)
        losses = fnp.negative(fnp.sum(fnp.multiply(weighted, target), axis=1))
        return _reduced(losses, reduction, float(n))
    kept = None
    if ignore_index is not None:
        kept = fnp.not_equal(labels, ignore_index)
        labels = fnp.where(kept, labels, 0)
    checked = _check_labels(labels, classes, "cross_entropy")
    rows = np.arange(n)
    picked = fnp.negative(fnp.getitem(weighted, (rows, checked)))
    scale = np.ones((), aval_of(logp)[1]) if weight is None else fnp.getitem(weight, checked)
    if kept is not None:
        zero = np.zeros((), aval_of(logp)[1])
        picked, spread = fnp.where(kept, picked, zero), fnp.where(kept, spread, zero)
        scale = fnp.where(kept, scale, zero)
    losses = picked if not label_smoothing else fnp.add(
        fnp.multiply(picked, 1.0 - label_smoothing),
        fnp.multiply(spread, label_smoothing / classes))
    # PyTorch's mean: over the weights of the labels counted (their number unweighted)
    total = fnp.sum(fnp.broadcast_to(scale, (n,))) if reduction == "mean" else None
    return _reduced(losses, reduction, total)


def _reduced(losses, reduction, total):
    if reduction == "none":
        return losses
    summed = fnp.sum(losses)
    return summed if reduction == "sum" else fnp.true_divide(summed, total)


def mse(pred, target):
    """Mean over all elements of (pred - target)**2."""
    return fnp.mean(fnp.square(fnp.subtract(pred, target)))
