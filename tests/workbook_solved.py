"""A solved workbook (tests only: no solution ships in the package). The tests make each mistake of the
catalogue from it by replacing one line (tests/test_exercises.py)."""

import numpy as np


def sigmoid(Z):
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_prime(A):
    return A * (1 - A)


def softmax(Z):
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(Z_L, Y):
    top = Z_L.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(Z_L - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - np.sum(Y * Z_L, axis=1)))


def forward(X, Ws, bs):
    Zs, As = [], [X]
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        Z = As[-1] @ W + b
        Zs.append(Z)
        As.append(softmax(Z) if l == len(Ws) else sigmoid(Z))
    return Zs, As


def output_delta(A_L, Y):
    return (A_L - Y) / len(Y)


def layer_gradients(A_prev, Delta):
    return A_prev.T @ Delta, Delta.sum(axis=0)


def delta_below(Delta, W, A_below):
    return (Delta @ W.T) * sigmoid_prime(A_below)


def backward(Zs, As, Y, Ws):
    L = len(Ws)
    dWs, dbs = [None] * L, [None] * L
    Delta = output_delta(As[-1], Y)
    for l in range(L - 1, -1, -1):
        dWs[l], dbs[l] = layer_gradients(As[l], Delta)
        if l > 0:
            Delta = delta_below(Delta, Ws[l], As[l])
    return dWs, dbs


def sgd_step(Ws, bs, dWs, dbs, lr):
    return [W - lr * dW for W, dW in zip(Ws, dWs)], [b - lr * db for b, db in zip(bs, dbs)]


def momentum_step(Ws, bs, dWs, dbs, vWs, vbs, lr, mu):
    vWs = [mu * v + lr * dW for v, dW in zip(vWs, dWs)]
    vbs = [mu * v + lr * db for v, db in zip(vbs, dbs)]
    return [W - v for W, v in zip(Ws, vWs)], [b - v for b, v in zip(bs, vbs)], vWs, vbs


def rel_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f, x, eps=1e-5):
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        kept = x[index]
        x[index] = kept + eps
        up = f(x)
        x[index] = kept - eps
        down = f(x)
        x[index] = kept
        grad[index] = (up - down) / (2 * eps)
    return grad
