"""The algorithm, for a reader: the network, its forward and backward pass, the update rules, the loop.

NumPy and the standard library only. One training step is three files:
:mod:`.training` (the loop and the reference engine's step), :mod:`.network`
(forward, backward, loss) and :mod:`.optimizers` (the updates).
"""
