"""Partial derivatives and the gradient of a function of several variables.

f(x, y) = x^2 y + 3 y. Holding y fixed, df/dx = 2xy; holding x fixed,
df/dy = x^2 + 3. The gradient collects the partials into one vector, which
points uphill, the direction of steepest increase.
"""
import numpy as np

import graphc as gc


def f(x, y):
    return x ** 2 * y + 3 * y


x, y = 2.0, 5.0
print(f"df/dx at (2, 5) = {float(gc.grad(f, argnums=0)(x, y))}  (2xy = {2 * x * y})")
print(f"df/dy at (2, 5) = {float(gc.grad(f, argnums=1)(x, y))}  (x^2 + 3 = {x ** 2 + 3})")
dx, dy = gc.grad(f, argnums=(0, 1))(x, y)
print(f"gradient at (2, 5) = ({float(dx)}, {float(dy)})")


def bowl(v):                       # one vector argument: the gradient is a vector
    return np.sum(np.array([1.0, 4.0]) * v ** 2)


v = np.array([1.0, 1.0])
print(f"gradient of x^2 + 4y^2 at (1, 1) = {gc.grad(bowl)(v)}")
print("hessian (second partials):\n", gc.hessian(bowl)(v))
