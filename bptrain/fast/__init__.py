"""The fast engine: the core's computations in preallocated buffers, fused BLAS calls and tuned threads.

Only for speed: it computes what :mod:`bptrain.core` computes (the tests hold them equal). The engine is
:class:`bptrain.fast.engine.FastEngine`, reached through :mod:`bptrain.engines`.
"""
