"""The fast engine: the core's computations in preallocated buffers, fused BLAS calls and tuned threads.

Everything here exists only for speed, computes what :mod:`bptrain.core`
computes, and is proven equal to it in the tests.
"""

from .engine import FastEngine

__all__ = ["FastEngine"]
