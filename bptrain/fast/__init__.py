"""The fast engine: the core's computations in preallocated buffers, fused BLAS calls and tuned threads.

Everything here exists only for speed, computes what :mod:`bptrain.core`
computes, and is proven equal to it in the tests. The engine is
:class:`bptrain.fast.engine.FastEngine`, reached through :mod:`bptrain.engines`.
"""
