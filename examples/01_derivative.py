"""The derivative is the rate of change: the slope of the cost at a point.

cost(q) = 0.5 q^2 + 3 q + 10 has derivative q + 3, so at q = 4 the cost
rises by 7 per unit of q. gc.grad computes it exactly; a finite difference
approaches it as the step shrinks.
"""
import graphc as gc


def cost(q):
    return 0.5 * q ** 2 + 3 * q + 10


slope = gc.grad(cost)
print(f"d cost / dq at q=4: {float(slope(4.0))}  (by hand: q + 3 = 7)")
for h in (1.0, 0.1, 0.001):
    rate = (cost(4.0 + h) - cost(4.0)) / h
    print(f"  (cost(4+h) - cost(4)) / h with h={h:<6}: {rate:.6f}")
for q in (-3.0, 0.0, 2.0):
    print(f"slope at q={q:>4}: {float(slope(q)):+.1f}")
