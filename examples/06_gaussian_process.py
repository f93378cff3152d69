"""Fitting a Gaussian process's hyperparameters by gradient descent.

A GP models noisy samples y of a smooth function with the covariance
K = s^2 exp(-(x_i - x_j)^2 / (2 l^2)) + n^2 I. Its negative log marginal
likelihood, 0.5 y^T K^-1 y + log|K|^(1/2) + const, is a loss of three
parameters (log l, log s, log n). graphc takes its three partial
derivatives through the Cholesky factor L (log|K|^(1/2) is the sum of
log diag L) and np.linalg.solve, and Adam walks downhill. The fitted GP's
mean then predicts the function at points it never saw.
"""
import numpy as np

import graphc as gc

rng = np.random.default_rng(0)
x = np.sort(rng.uniform(-3, 3, 40))
y = np.sin(2 * x) + 0.1 * rng.normal(size=x.size)
x_test = np.linspace(-2.5, 2.5, 50)


def covariance(params, a, b):
    lengthscale, signal = np.exp(params["log_lengthscale"]), np.exp(params["log_signal"])
    return signal ** 2 * np.exp(-(a[:, None] - b[None, :]) ** 2 / (2 * lengthscale ** 2))


def negative_log_likelihood(params, x, y):
    K = covariance(params, x, x) + np.exp(2 * params["log_noise"]) * np.eye(x.size)
    L = np.linalg.cholesky(K)
    alpha = np.linalg.solve(K, y)
    return 0.5 * y @ alpha + np.sum(np.log(np.diagonal(L))) + 0.5 * x.size * np.log(2 * np.pi)


def predict(params, x, y, x_new):
    K = covariance(params, x, x) + np.exp(2 * params["log_noise"]) * np.eye(x.size)
    return covariance(params, x_new, x) @ np.linalg.solve(K, y)


params = {"log_lengthscale": np.array(0.0), "log_signal": np.array(0.0),
          "log_noise": np.array(-1.0)}
gc.check_grad(negative_log_likelihood, params, x, y)     # the chain rule against central differences
print(f"start: negative log likelihood {negative_log_likelihood(params, x, y):.3f}")

step = gc.compile_step(negative_log_likelihood, gc.optim.Adam(lr=0.05))
for k in range(300):
    step(params, x, y)
print(f"after 300 Adam steps: negative log likelihood {negative_log_likelihood(params, x, y):.3f}")
print("lengthscale {:.2f}, signal {:.2f}, noise {:.3f} (the data's noise: 0.1)".format(
    *(float(np.exp(params[k])) for k in ("log_lengthscale", "log_signal", "log_noise"))))
error = np.max(np.abs(predict(params, x, y, x_test) - np.sin(2 * x_test)))   # plain NumPy
print(f"largest error of the mean against sin(2x) at 50 new points: {error:.3f}")
